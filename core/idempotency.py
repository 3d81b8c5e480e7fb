"""Requests that must take effect once: an API call per ``Idempotency-Key``, a page's form per
its one-time token. The first run's answer is remembered; a replay gets it back.

The key is claimed in a transaction of its own, committed before the work starts, so that a
duplicate sent meanwhile finds it; the work is a service that owns its transaction (and takes
the key, so that its own postings happen once even if the answer is never remembered); the
answer is remembered after. No transaction is held open around the work: a service may talk to
another system between transactions of its own (settle does).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, connection
from django.utils import timezone

from core.db import again_if_disconnected
from core.models import IdempotentRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a duplicate waits for the answer of the request holding its key, in seconds: longer
# than a settle normally takes, shorter than a web worker's timeout (gunicorn's default is 30 s).
IN_FLIGHT_WAIT = 20.0
# An unanswered claim this old belongs to a process that died mid-request (a settle's lease is
# five minutes); the key is then free again.
ABANDONED_AFTER = timedelta(minutes=6)

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
    """Claim ``key`` for this request: the claim's id, or the request that holds the key
    already. A concurrent claim of the same key inside a transaction not yet committed makes
    this one wait for it, then find it held."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [scope, key, fingerprint])
        row = cursor.fetchone()
    if row is not None:
        return int(row[0])
    return _earlier(IdempotentRequest.objects.get(scope=scope, key=key))


def request_answered(*, claim: int, status_code: int, body: Any) -> None:
    """Remember the answer of the request that holds ``claim``, after its work committed (on a
    new connection if the one it had died meanwhile)."""
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


class KeyReused(Exception):
    """The key was used before with another request (another fingerprint)."""


class StillRunning(Exception):
    """The request holding the key has not answered yet (after waiting ``IN_FLIGHT_WAIT``)."""


def run_once(
    *,
    scope: str,
    key: str,
    fingerprint: str,
    work: Callable[[], T],
    remember: Callable[[T], tuple[int, Any]],
    replay: Callable[[int, Any], T],
) -> T:
    """Run ``work`` once per ``(scope, key)``: the first run's answer, as ``remember`` puts it
    (a status and a JSON body), is kept, and a replay gets ``replay`` of it instead of a second
    run. The same key with another ``fingerprint`` raises ``KeyReused``; a duplicate of a run
    still going after ``IN_FLIGHT_WAIT`` seconds raises ``StillRunning``.

    ``work`` that fails frees the key: the request may be sent again, and a duplicate waiting
    for the answer runs it itself. If the process dies after ``work`` committed and before the
    answer is kept, the key is taken over after ``ABANDONED_AFTER`` and ``work`` runs again:
    services take the key (or one derived from it) so that this second run moves nothing twice.
    """
    claim = request_begin(
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        wait=IN_FLIGHT_WAIT,
        abandoned_after=ABANDONED_AFTER,
    )
    if isinstance(claim, Earlier):
        if claim.fingerprint != fingerprint:
            raise KeyReused(key)
        if claim.status_code is None:
            raise StillRunning(key)
        return replay(claim.status_code, claim.body)
    try:
        answer = work()
    except BaseException:
        request_release(claim=claim)
        raise
    status_code, body = remember(answer)
    request_answered(claim=claim, status_code=status_code, body=body)
    return answer
