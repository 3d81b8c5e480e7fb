"""``GET /healthz`` for load balancers: 200 when the database and the broker answer, else 503."""

from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from kombu import Connection

# A load balancer probes every few seconds: a dead dependency must not hold the probe long.
BROKER_TIMEOUT_SECONDS = 2


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        # A connection the server dropped is replaced on the next request.
        connection.close_if_unusable_or_obsolete()
        return False


def broker_ok() -> bool:
    options: dict[str, Any] = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    options.setdefault("socket_connect_timeout", BROKER_TIMEOUT_SECONDS)
    options.setdefault("socket_timeout", BROKER_TIMEOUT_SECONDS)
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=BROKER_TIMEOUT_SECONDS,
            transport_options=options,
        ) as broker:
            broker.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
            )
            broker.default_channel  # noqa: B018 - opening a channel talks to the broker
        return True
    except Exception:
        return False


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": "ok" if database_ok() else "unavailable",
        "broker": "ok" if broker_ok() else "unavailable",
    }
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )
