"""The Celery application: ``celery -A config worker -B``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Reconciliation's tasks live in settlement's wing (still named settlement.tasks.*).
app.autodiscover_tasks(["settlement.reconciliation"])
