"""Requests that must take effect once: an API call per ``Idempotency-Key``, a page's form per
its one-time token. The first run's answer is remembered; a replay gets it back."""

from dataclasses import dataclass
from typing import Any

from django.db import connection

from accounts.models import IdempotentRequest

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
    """Remember the answer of the request that holds ``claim`` (in the same transaction)."""
    IdempotentRequest.objects.filter(pk=claim).update(status_code=status_code, body=body)


def request_earlier(*, scope: str, key: str) -> Earlier | None:
    """The request that used ``key`` before, if one did."""
    found = IdempotentRequest.objects.filter(scope=scope, key=key).first()
    return None if found is None else _earlier(found)


def request_record(*, scope: str, key: str, fingerprint: str, status_code: int, body: Any) -> None:
    """Remember a request's answer after the fact (for work that commits on its own); a
    concurrent duplicate that recorded first keeps its answer."""
    IdempotentRequest.objects.get_or_create(
        scope=scope,
        key=key,
        defaults={"fingerprint": fingerprint, "status_code": status_code, "body": body},
    )


def _earlier(row: IdempotentRequest) -> Earlier:
    return Earlier(row.fingerprint, row.status_code, row.body)
