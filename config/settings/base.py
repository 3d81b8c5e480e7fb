"""Settings shared by every environment. Everything that differs comes from the environment.

Variables read here (all optional in development):
``DATABASE_URL``, ``CELERY_BROKER_URL``, ``INSURER_URL``, ``SMS_URL``, ``SMS_SIGN_NAME``,
``CREDIT_SCORE_URL``, ``CREDIT_SCORE_ID_KEY``, ``CREDIT_SCORE_PROVIDER``,
``ENROLMENT_DEFAULT_BANK``, ``DJANGO_SECRET_KEY``, ``FIELD_ENCRYPTION_KEY``, ``DJANGO_DEBUG``,
``DJANGO_ALLOWED_HOSTS``, ``DATABASE_CONN_MAX_AGE``, ``DATABASE_PREPARE_THRESHOLD``,
``DATABASE_SERVER_SIDE_BINDING``.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("DJANGO_VAR_DIR", BASE_DIR / "var"))

# Development defaults; config.settings.production refuses to start with them.
DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"  # noqa: S105
DEV_FIELD_ENCRYPTION_KEY = "dev-insecure-field-key-do-not-use-in-production"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
FIELD_ENCRYPTION_KEY = os.environ.get("FIELD_ENCRYPTION_KEY", DEV_FIELD_ENCRYPTION_KEY)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN on an intranet)
    "pgtrigger",
    "axes",
    "core",
    "ledger",
    "accounts",
    "settlement",
]

MIDDLEWARE = [
    "core.api_edge.ApiEdgeMiddleware",  # first: refuses NUL bytes, keeps /api/ errors JSON
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out sign-in (see AXES_* below)
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

if not os.environ.get("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        # A kept connection that PostgreSQL ended (a restart, an administrator) is replaced
        # before a request uses it, instead of failing that request.
        conn_health_checks=True,
    )
}
# Services own their transactions (CONVENTIONS.md): no implicit per-request transaction.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Parameters are bound by PostgreSQL, not spliced into the text, and a statement a
    # connection has run five times is prepared (psycopg's threshold; Django turns it off by
    # default) and not parsed and planned again: a 30-line settle spends 3-4 ms less.
    # DATABASE_PREPARE_THRESHOLD=off turns preparing off (a pooler that cannot track prepared
    # statements: see the README), DATABASE_SERVER_SIDE_BINDING=0 the binding.
    _threshold = os.environ.get("DATABASE_PREPARE_THRESHOLD", "5").strip().lower()
    if _threshold != "off" and not _threshold.isdigit():
        raise ImproperlyConfigured(
            f"DATABASE_PREPARE_THRESHOLD is a number of runs or off, not {_threshold!r}"
        )
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=env_bool("DATABASE_SERVER_SIDE_BINDING", True),
        prepare_threshold=None if _threshold == "off" else int(_threshold),
    )
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded database has a web server and a worker writing at once: a transaction
    # takes the write lock when it begins (a read lock upgraded mid-way fails at once with
    # "database is locked"), waits up to 20 s for it, and readers do not block the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out sign-in
    "django.contrib.auth.backends.ModelBackend",  # staff: user name and password
    "accounts.backends.SmsCodeBackend",  # patients: mobile number and SMS code
]
# Guessing: five failed sign-ins for one login from one address lock that pair out for 15
# minutes (a success clears the count): a staff user name and its passwords, a patient's
# mobile number (however it is spaced) and its SMS codes. By login and address, so that nobody
# can lock a cashier out from another machine.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "accounts.backends.sign_in_name"
AXES_LOCKOUT_CALLABLE = "settlement.web.pages.locked_out"
AXES_CLIENT_IP_CALLABLE = "accounts.backends.client_address"
# Behind a reverse proxy every request comes from the proxy: name it (comma-separated), so that
# the sign-in limits count the client's own address from X-Forwarded-For.
TRUSTED_PROXIES = frozenset(
    address.strip()
    for address in os.environ.get("DJANGO_TRUSTED_PROXIES", "").split(",")
    if address.strip()
)
# More wrong passwords while locked do not push the end of the lock further out.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Kept out of the failed attempts' stored form data: codes and personal data.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "phone", "code", "name", "id_number"]
AXES_DISABLE_ACCESS_LOG = True  # sign-ins that worked: the audit trail is ours
AXES_VERBOSE = False  # no banner on every start
LOGIN_URL = "web-login"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.StaffTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Treat first, pay later — hospital credit payment ledger",
    "DESCRIPTION": (
        "Staff API (`/api/v1/`) and signed partner API (`/api/partner/v1/`). Every POST that "
        "moves money or state needs an `Idempotency-Key` header (400 without one): a replay "
        "returns the first answer and changes nothing; the same key with another request is "
        "a 409. Errors are `{error: {code, message, fields}}`; money is yuan strings with two "
        "decimals."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name per choice set where several share a field name (status, kind).
    "ENUM_NAME_OVERRIDES": {
        "EncounterStatusEnum": "settlement.models.Encounter.Status",
        "EncounterKindEnum": "settlement.models.Encounter.Kind",
        "ClaimStatusEnum": "settlement.models.InsuranceClaim.Status",
        "BatchStatusEnum": "settlement.reconciliation.models.ReconBatch.Status",
        "ReconItemKindEnum": "settlement.reconciliation.models.ReconItem.Kind",
        "ReceivableStatusEnum": "settlement.models.Receivable.Status",
        "MovementKindEnum": "settlement.models.CreditMovement.Kind",
        "CreditLineStatusEnum": "accounts.serializers.LINE_STATUSES",
        "FamilyLinkStatusEnum": "accounts.models.FamilyLink.Status",
    },
}

# Celery. Without CELERY_BROKER_URL the embedded filesystem broker under var/ is used, so a
# first run needs no Redis; it is a one-host transport, so CI and production set Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
    for _folder in (_queue_dir, _processed_dir, VAR_DIR / "celery" / "control"):
        _folder.mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "ledger-void-expired-holds": {
        "task": "ledger.tasks.void_expired_holds",
        "schedule": 60.0,
    },
    "ledger-seal-chain": {
        "task": "ledger.tasks.seal_chain",
        "schedule": 60.0,
    },
    # Hourly, so a minor's link lapses within the hour of the 18th birthday; it is also
    # checked whenever a link is used.
    "accounts-lapse-family-links": {
        "task": "accounts.tasks.lapse_family_links",
        "schedule": 3600.0,
    },
    "accounts-purge-partner-nonces": {
        "task": "accounts.tasks.purge_partner_nonces",
        "schedule": 600.0,
    },
    # Each claim has its own backoff (next_attempt_at); this only looks for due ones.
    "settlement-retry-deferred-claims": {
        "task": "settlement.tasks.retry_deferred_claims",
        "schedule": 30.0,
    },
    # A settle whose process died (or whose database connection did) leaves the encounter
    # settling; once its five-minute lease lapses this finishes or undoes it.
    "settlement-recover-stalled-settlements": {
        "task": "settlement.tasks.recover_stalled_settlements",
        "schedule": 60.0,
    },
    "settlement-mark-overdue": {
        "task": "settlement.tasks.mark_overdue_receivables",
        "schedule": 3600.0,
    },
    "settlement-reconcile-insurer-yesterday": {
        "task": "settlement.tasks.reconcile_insurer_yesterday",
        "schedule": crontab(hour=2, minute=0),
    },
    "settlement-nightly-ledger-check": {
        "task": "settlement.tasks.nightly_ledger_check",
        "schedule": crontab(hour=3, minute=0),
    },
    "settlement-resume-stalled-recon-batches": {
        "task": "settlement.tasks.resume_stalled_recon_batches",
        "schedule": 60.0,
    },
    # The city platform recomputes scores monthly (as_of the 1st); a holder it cannot be asked
    # about is left as they are until the next month's run.
    "settlement-refresh-credit-scores": {
        "task": "settlement.tasks.refresh_credit_scores",
        "schedule": crontab(day_of_month="2", hour=4, minute=0),
    },
    "settlement-deliver-webhooks": {
        "task": "settlement.tasks.deliver_webhooks",
        "schedule": 30.0,
    },
    # Daily in the morning (Asia/Shanghai), when a text about a bill due in three days is
    # welcome; a day missed is made up the next (within three days of the due date).
    "settlement-notify-due-soon": {
        "task": "settlement.tasks.notify_due_soon",
        "schedule": crontab(hour=9, minute=0),
    },
    # Each message queued asks a worker at once; this picks up the retries and any a broker
    # outage lost.
    "accounts-deliver-sms": {
        "task": "accounts.tasks.deliver_sms",
        "schedule": 15.0,
    },
}
INSURER_TIMEOUT_SECONDS = float(os.environ.get("INSURER_TIMEOUT_SECONDS", "5"))

INSURER_URL = os.environ.get("INSURER_URL", "http://127.0.0.1:8765")

# The SMS gateway (API.md § Notices (SMS)); the default is the shipped simulator.
SMS_URL = os.environ.get("SMS_URL", "http://127.0.0.1:8766/")
# The registered signature a phone shows in brackets before each message.
SMS_SIGN_NAME = os.environ.get("SMS_SIGN_NAME", "信用就医")
SMS_TIMEOUT_SECONDS = float(os.environ.get("SMS_TIMEOUT_SECONDS", "5"))
# A patient's sign-in token for the city's app lasts this long (revocable before).
PATIENT_TOKEN_DAYS = int(os.environ.get("PATIENT_TOKEN_DAYS", "30"))

# The city credit-score platform (API.md § Credit-score provider); the default is the simulator.
CREDIT_SCORE_URL = os.environ.get("CREDIT_SCORE_URL", "http://127.0.0.1:8767")
CREDIT_SCORE_TIMEOUT_SECONDS = float(os.environ.get("CREDIT_SCORE_TIMEOUT_SECONDS", "5"))
# The key agreed with the city platform for the ID number's hash it is asked with
# (accounts.credit_score.client.citizen_hash); the development one suits the simulator.
CREDIT_SCORE_ID_KEY = os.environ.get("CREDIT_SCORE_ID_KEY", "development credit-score id key")
# What a line granted on the platform's score names as its score provider.
CREDIT_SCORE_PROVIDER = os.environ.get("CREDIT_SCORE_PROVIDER", "白鹭分")
# The bank a citizen enrols with when they name none: a partner's name. Unset, the only
# partner is the default; with several, the citizen must choose.
ENROLMENT_DEFAULT_BANK = os.environ.get("ENROLMENT_DEFAULT_BANK", "")

# The largest bank statement file accepted, upload or dropped file: a million lines of CSV are
# some 55 MB, of camt.053 some 800 MB.
RECON_UPLOAD_MAX_BYTES = int(os.environ.get("RECON_UPLOAD_MAX_MB", "1024")) * 2**20

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
