"""What the benchmark commands share."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from django.test.utils import override_settings


@contextmanager
def as_in_production() -> Iterator[None]:
    """A benchmark's timed run (``with``) in the state a production web process is in:
    ``DEBUG`` off (with it on, the local default, Django keeps every query in a log and renders
    templates in debug mode) and what is loaded so far frozen out of the garbage collector's
    reach, as ``config.wsgi`` does once the application is loaded."""
    gc.collect()
    gc.freeze()
    try:
        with override_settings(DEBUG=False):
            yield
    finally:
        gc.unfreeze()
