import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_wsgi_application()

# What is loaded by now lives as long as the process: moved out of the garbage collector's
# reach, a full collection during a request no longer walks it (and forked workers keep
# sharing its memory pages). A long stay's bill or settle then pays for its own objects only.
gc.collect()
gc.freeze()
