"""``ledger_bench`` runs end to end and leaves the ledger intact (its figures are not checked:
speed is measured by running the command, never by a test)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ledger.models import ChainQueue
from ledger.verification import verify_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_bench_posts_one_by_one_and_in_batches_and_the_ledger_stays_intact():
    out = StringIO()
    call_command(
        "ledger_bench", "--transfers", "30", "--clients", "1,2", "--batch", "10", stdout=out
    )
    text = out.getvalue()
    assert "| clients | batch | services /s |" in text
    assert "| 1 | 10 |" in text and "| 2 | 10 |" in text
    assert "batch/one" in text
    assert not ChainQueue.objects.exists()  # each run was sealed after it
    report = verify_ledger()
    assert report.intact, report.problems


def test_bench_refuses_a_database_not_named_for_benches_or_tests(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "NAME", "hospital")
    with pytest.raises(CommandError, match="'hospital' is not named as a bench or test"):
        call_command("ledger_bench", "--transfers", "30", stdout=StringIO())
    # --i-know passes the guard: the next check (the arguments) is what refuses this one.
    with pytest.raises(CommandError, match="must be at least 1"):
        call_command("ledger_bench", "--transfers", "0", "--i-know", stdout=StringIO())
