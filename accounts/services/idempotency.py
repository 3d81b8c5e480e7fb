"""Requests that must take effect once: an API call per ``Idempotency-Key``, a page's form per
its one-time token. The first run's answer is remembered; a replay gets it back."""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connection
from django.utils import timezone

from accounts.models import IdempotentRequest
from core.db import again_if_disconnected

logger = logging.getLogger(__name__)

_CLAIM_SQL = (
    'INSERT INTO "accounts_idempotentrequest" ("scope", "key", "fingerprint", "created_at")'
    " VALUES (%s, %s, %s, CURRENT_TIMESTAMP)"
    ' ON CONFLICT ("scope", "key") DO NOTHING RETURNING "id"'
)


@dataclass(frozen=True)
class Earlier:
    """What the first request with a key was, and what it answered (``None``: not yet)."""

    fingerprint: str
    status_code: int | None
    body: Any


def request_claim(*, scope: str, key: str, fingerprint: str) -> int | Earlier:
    """Claim ``key`` for this request, inside the transaction that will act on it: the claim's
    id, or the request that holds the key already. A concurrent claim of the same key waits
    for this transaction and then finds it held."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [scope, key, fingerprint])
        row = cursor.fetchone()
    if row is not None:
        return int(row[0])
    return _earlier(IdempotentRequest.objects.get(scope=scope, key=key))


def request_answered(*, claim: int, status_code: int, body: Any) -> None:
    """Remember the answer of the request that holds ``claim`` (in the same transaction, or
    after work that committed on its own: then on a new connection if the one it had died)."""
    again_if_disconnected(
        lambda: IdempotentRequest.objects.filter(pk=claim).update(
            status_code=status_code, body=body
        )
    )


def request_begin(
    *, scope: str, key: str, fingerprint: str, wait: float, abandoned_after: timedelta
) -> int | Earlier:
    """Claim ``key`` for work that commits in steps of its own: the claim commits at once, so
    that a duplicate sent while the work runs finds it. The claim's id, or the request holding
    the key: answered, another request (another fingerprint), or still running after waiting
    up to ``wait`` seconds for its answer (``status_code`` ``None``).

    A claim left unanswered for longer than ``abandoned_after`` belongs to a process that died
    mid-request; it is taken over. Call outside any transaction, or the claim stays invisible
    to duplicates until it commits.
    """
    deadline = time.monotonic() + wait
    pause = 0.02
    while True:
        claimed = request_claim(scope=scope, key=key, fingerprint=fingerprint)
        if not isinstance(claimed, Earlier):
            return claimed
        if claimed.status_code is not None or claimed.fingerprint != fingerprint:
            return claimed
        if IdempotentRequest.objects.filter(
            scope=scope,
            key=key,
            status_code__isnull=True,
            created_at__lt=timezone.now() - abandoned_after,
        ).delete()[0]:
            logger.warning("idempotency key %s %s: abandoned claim taken over", scope, key)
            continue
        if time.monotonic() >= deadline:
            return claimed
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def request_release(*, claim: int) -> None:
    """Give up an unanswered claim (the work failed), so the key can be sent again and a
    duplicate waiting for the answer runs the request itself.

    The work may have failed because the database connection died: the release then runs on a
    new connection, and if the database cannot be reached the claim is taken over once
    abandoned.
    """
    try:
        again_if_disconnected(
            lambda: IdempotentRequest.objects.filter(pk=claim, status_code__isnull=True).delete()
        )
    except DatabaseError:
        logger.exception("idempotency claim %s could not be released", claim)


def _earlier(row: IdempotentRequest) -> Earlier:
    return Earlier(row.fingerprint, row.status_code, row.body)
