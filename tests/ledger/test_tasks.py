"""The ledger's beat tasks, run by a real Celery worker on the configured broker."""

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from config.celery import app
from ledger import services, tasks
from ledger.models import Hold
from ledger.selectors import account_balance
from tests.waiting import wait_until


def test_beat_runs_the_ledger_sweeps():
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"ledger.tasks.void_expired_holds", "ledger.tasks.seal_chain"} <= scheduled
    assert scheduled <= set(app.tasks)


@pytest.mark.django_db(transaction=True)
def test_worker_voids_expired_holds(make_account):
    line = make_account("credit", "credit", limit="debits")
    granted = make_account("credit", "debit")
    services.transfer(key="grant", debit=granted, credit=line, amount=10_000)
    expired = services.hold_create(
        key="h1",
        debit=line,
        credit=granted,
        amount=4_000,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    assert account_balance(line).available == 6_000

    with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        tasks.void_expired_holds.delay()
        assert wait_until(lambda: Hold.objects.get(pk=expired.id).status == "expired")

    assert account_balance(line).available == 10_000
