"""Settings for the test suite (pytest-django)."""

import os

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Each test opens its own connections; persistent ones would outlive the test database.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not shared-cache memory, so a worker thread and the test can both write
    # (shared cache answers "table is locked" at once instead of waiting).
    # One file per run: two runs on one checkout must not share it. Django deletes it after.
    _test_db = VAR_DIR / f"test-db-{os.getpid()}.sqlite3"  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(_test_db)}  # noqa: F405

# The embedded broker gets a folder of its own per test run, so a `make run` worker on the same
# checkout never takes the suite's tasks (CI sets CELERY_BROKER_URL to its own Redis database).
if CELERY_BROKER_URL.startswith("filesystem://"):  # noqa: F405
    import tempfile

    _broker_dir = tempfile.mkdtemp(prefix="ledger-test-broker-")
    CELERY_BROKER_TRANSPORT_OPTIONS = {  # noqa: F405
        "data_folder_in": _broker_dir,
        "data_folder_out": _broker_dir,
        "control_folder": _broker_dir,
        "store_processed": False,
    }
