"""Settings for the django-hordak peer process: hordak, its dependencies and one database."""

import os

import dj_database_url

SECRET_KEY = "hordak-peer-bench-only"  # noqa: S105 - the peer process serves nothing
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mptt",
    "hordak",
]
DATABASES = {"default": dj_database_url.parse(os.environ["HORDAK_PEER_DATABASE_URL"])}
DEFAULT_CURRENCY = "CNY"
HORDAK_CURRENCIES = ["CNY"]
CURRENCIES = ["CNY"]
