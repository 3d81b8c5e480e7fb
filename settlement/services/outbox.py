"""Webhooks to banks through a transactional outbox, delivered at least once by Celery.

An event is written in the transaction of the change it reports, so it exists exactly when
the change does. Delivery signs the body like a partner request (``accounts.signing``) with the
partner's newest key; a 2xx marks it delivered, anything else retries with exponential backoff.
The event ``id`` lets the bank drop duplicates.
"""

import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from django.db import transaction
from django.utils import timezone

from accounts import crypto, signing
from accounts.models import Partner, PartnerKey

from ..models import OutboxEvent

logger = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5
MAX_BACKOFF = timedelta(hours=1)


def event_record(*, partner: Partner, type: str, data: dict[str, Any]) -> OutboxEvent:
    """Queue a webhook; call inside the transaction of the change."""
    event = OutboxEvent.objects.create(partner=partner, type=type, data=data)
    transaction.on_commit(_deliver_soon, robust=True)
    return event


def _deliver_soon() -> None:
    # By name: the task module imports the services, not the other way round.
    current_app.send_task("settlement.tasks.deliver_webhooks")


def event_body(event: OutboxEvent) -> bytes:
    return json.dumps(
        {
            "id": str(event.pk),
            "type": event.type,
            "created_at": event.created_at.isoformat(),
            "data": event.data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=10 * 2 ** min(attempts, 20)), MAX_BACKOFF)


def outbox_deliver(*, now: datetime | None = None, batch: int = 50) -> int:
    """Send due events; returns how many were delivered. Safe to run concurrently."""
    delivered = 0
    now = now or timezone.now()
    for _ in range(batch):
        with transaction.atomic():
            event = (
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .select_related("partner")
                .filter(delivered_at__isnull=True, next_attempt_at__lte=now)
                .order_by("next_attempt_at", "created_at")
                .first()
            )
            if event is None:
                return delivered
            error = _send(event)
            event.attempts += 1
            if error is None:
                event.delivered_at = timezone.now()
                event.last_error = ""
                delivered += 1
            else:
                event.last_error = error[:2000]
                event.next_attempt_at = timezone.now() + backoff(event.attempts)
            event.save(update_fields=["attempts", "delivered_at", "last_error", "next_attempt_at"])
    return delivered


def _send(event: OutboxEvent) -> str | None:
    url = event.partner.webhook_url
    if not url:
        return "the partner has no webhook URL"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return "the webhook URL must be http or https"
    key = (
        PartnerKey.objects.filter(partner=event.partner, revoked_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    if key is None:
        return "the partner has no active key to sign with"
    body = event_body(event)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    timestamp, nonce = str(int(timezone.now().timestamp())), secrets.token_hex(12)
    secret = crypto.decrypt(key.secret_encrypted)
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Partner-Key": key.key_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": signing.sign(secret, "POST", path, timestamp, nonce, body),
            "X-Event-Id": str(event.pk),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            if 200 <= response.status < 300:
                return None
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return f"{type(error).__name__}: {error}"
