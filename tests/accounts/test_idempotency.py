"""Idempotent POSTs whose handler commits in steps of its own (settle): a duplicate sent while
the first runs waits for its answer, within a bound, and a failed first run frees the key.

Threads on PostgreSQL, each with its own connection; the order is set by events, not sleeps.
"""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from core import idempotency
from core.api import idempotent, request_fingerprint
from core.api_errors import Conflict, InProgress
from core.models import IdempotentRequest

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SCOPE = "staff:test"
PATH = "/api/v1/encounters/00000000-0000-0000-0000-000000000001/settle/"


def post(key: str, body: dict[str, Any] | None = None) -> Request:
    raw = APIRequestFactory().post(PATH, body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    return Request(raw, parsers=[JSONParser()])


def answer(n: int):
    return lambda: Response({"n": n}, status=201)


class First(threading.Thread):
    """The first request: claims the key, then its handler waits for ``go`` before it answers
    (or fails, with ``fail``)."""

    def __init__(self, key: str, fail: bool = False) -> None:
        super().__init__()
        self.key, self.fail = key, fail
        self.started, self.go = threading.Event(), threading.Event()
        self.result: Any = None

    def handler(self) -> Response:
        self.started.set()
        assert self.go.wait(timeout=60)
        if self.fail:
            raise RuntimeError("the insurer went away")
        return Response({"n": 1}, status=201)

    def run(self) -> None:
        from django.db import connection

        try:
            self.result = idempotent(post(self.key), SCOPE, self.handler)
        except Exception as error:  # asserted on by the test
            self.result = error
        finally:
            connection.close()


def test_a_duplicate_waits_no_longer_than_the_bound_then_gets_in_progress(monkeypatch):
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT", 0.3)
    first = First("key-bound")
    first.start()
    assert first.started.wait(timeout=30)

    # The first is still running (it waits for go): the duplicate gives up after the bound.
    with pytest.raises(InProgress) as raised:
        idempotent(post("key-bound"), SCOPE, answer(2))
    assert (raised.value.status_code, raised.value.default_code) == (409, "in_progress")
    # Another request with the key in flight is refused at once, as after it answered.
    with pytest.raises(Conflict) as other:
        idempotent(post("key-bound", {"channel": "cash"}), SCOPE, answer(3))
    assert other.value.default_code == "conflict"

    first.go.set()
    first.join(timeout=30)
    assert first.result.data == {"n": 1}, first.result
    replay = idempotent(post("key-bound"), SCOPE, answer(4))
    assert (replay.status_code, replay.data) == (201, {"n": 1})
    assert IdempotentRequest.objects.get(scope=SCOPE, key="key-bound").body == {"n": 1}


def test_a_failed_first_run_frees_the_key_and_the_waiting_duplicate_runs_itself():
    first = First("key-fails", fail=True)
    first.start()
    assert first.started.wait(timeout=30)
    second: dict[str, Any] = {}

    def duplicate() -> None:
        from django.db import connection

        try:
            second["answer"] = idempotent(post("key-fails"), SCOPE, answer(2))
        finally:
            connection.close()

    waiting = threading.Thread(target=duplicate)
    waiting.start()
    first.go.set()
    first.join(timeout=30)
    waiting.join(timeout=30)

    assert isinstance(first.result, RuntimeError)
    assert second["answer"].data == {"n": 2}
    replay = idempotent(post("key-fails"), SCOPE, answer(5))
    assert replay.data == {"n": 2}
    assert IdempotentRequest.objects.filter(scope=SCOPE, key="key-fails").count() == 1


def test_a_claim_abandoned_by_a_dead_process_is_taken_over():
    # A web process died mid-request: its claim never got an answer, and is old.
    claim = IdempotentRequest.objects.create(
        scope=SCOPE,
        key="key-dead",
        fingerprint=request_fingerprint(post("key-dead")),
        created_at=timezone.now() - idempotency.ABANDONED_AFTER - timedelta(seconds=1),
    )

    taken = idempotent(post("key-dead"), SCOPE, answer(6))

    assert taken.data == {"n": 6}
    row = IdempotentRequest.objects.get(scope=SCOPE, key="key-dead")
    assert (row.pk != claim.pk, row.status_code, row.body) == (True, 201, {"n": 6})
