"""``scale_bench`` builds a small city with COPY, the ledger history it loads is proved by
``verify_ledger``, and every timed figure is printed beside its target (the figures themselves
are read at full size on a quiet machine, not asserted here)."""

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum

from accounts.models import CreditLine, Institution, Person
from ledger import services as ledger_services
from ledger.models import ChainLink, Entry, Hold, IdempotencyRecord, Transaction
from ledger.verification import verify_ledger
from settlement.bench import scale_data
from settlement.models import Charge, Encounter, Receipt, Settlement

pytestmark = [pytest.mark.postgres]

SIZES = {"citizens": 2000, "institutions": 5, "encounters": 3000, "lines": 30_000}


def _schema() -> set[tuple[str, ...]]:
    """The loaded tables' indexes, constraints and enabled triggers, as PostgreSQL prints them."""
    tables = list(scale_data.TABLES)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'index', indexdef FROM pg_indexes WHERE tablename = ANY(%s)"
            " UNION ALL SELECT 'constraint', conrelid::regclass::text || conname"
            " || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = ANY(%s::regclass[])"
            " UNION ALL SELECT 'trigger', tgrelid::regclass::text || tgname || tgenabled::text"
            " FROM pg_trigger WHERE tgrelid = ANY(%s::regclass[]) AND NOT tgisinternal",
            [tables, tables, tables],
        )
        return set(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_scale_bench_builds_the_sizes_asked_and_the_ledger_verifies():
    schema = _schema()
    out = io.StringIO()
    call_command("scale_bench", runs=5, seed=3, stdout=out, **SIZES)
    # What the load set aside (keys, indexes, foreign keys, triggers) is all back as it was.
    assert _schema() == schema
    assert any(kind == "index" for kind, _ in schema) and any(
        kind == "trigger" for kind, _ in schema
    )
    text = out.getvalue()

    rows = {
        match["label"].strip(): (float(match["p50"]), float(match["p99"]), int(match["target"]))
        for match in re.finditer(
            r"^(?P<label>(admission|settle|bill|partner line|patient list) \(.*?\))\s+"
            r"(?P<p50>[\d.]+)\s+(?P<p99>[\d.]+)\s+(?P<target>\d+)\s+(yes|NO)$",
            text,
            re.MULTILINE,
        )
    }
    assert [label.split(" (")[0] for label in rows] == [
        "admission",
        "settle",
        "bill",
        "partner line",
        "patient list",
    ], text
    assert all(0 < p50 <= p99 and target == 150 for p50, p99, target in rows.values()), text
    assert re.search(r"^build total [\d.]+ s \(target 900 s\)", text, re.MULTILINE), text
    assert re.search(r"^  settlement_charge\s+30,000 rows", text, re.MULTILINE), text
    assert re.search(r"^verify_ledger: .* in [\d.]+ s: intact$", text, re.MULTILINE), text

    # The counts asked for: the bulk's encounters have no admission key (the timed admissions,
    # sent through the API, do).
    assert Institution.objects.filter(code__startswith="SCALE").count() == 5
    assert Person.objects.count() == 2000
    assert CreditLine.objects.count() == 2000
    assert Encounter.objects.filter(admission_key__isnull=True).count() == 3000
    assert Encounter.objects.filter(admission_key__isnull=False).count() == 6
    assert Charge.objects.count() == 30_000
    settled = Encounter.objects.filter(status__startswith="settled").count()
    assert 0 < Encounter.objects.filter(status="open").count() < settled
    assert Settlement.objects.count() == Receipt.objects.count() == settled
    # The ledger history is real: one link per transaction, each charge posting carries its
    # lines' total, and the whole ledger verifies.
    assert ChainLink.objects.count() == Transaction.objects.count() > 3000
    assert IdempotencyRecord.objects.count() >= Transaction.objects.count()
    assert Hold.objects.filter(status="pending").exists()
    charged = Entry.objects.filter(transaction__description="charges", amount__gt=0).aggregate(
        total=Sum("amount")
    )["total"]
    assert charged == Charge.objects.aggregate(total=Sum("amount"))["total"]
    report = verify_ledger()
    assert report.intact, report.problems


@pytest.mark.django_db(transaction=True)
def test_scale_bench_refuses_a_database_holding_other_data(make_person):
    make_person()
    with pytest.raises(CommandError, match="database of its own"):
        call_command("scale_bench", runs=1, stdout=io.StringIO(), **SIZES)
    with pytest.raises(CommandError, match="no scale_bench data set"):
        call_command("scale_bench", runs=1, reuse=True, stdout=io.StringIO())


def test_the_written_out_request_hash_is_the_posting_services():
    legs = [(12, 30_000), (3, -29_000), (7, -1_000)]
    ordered = "[" + ",".join(f"[{a},{b}]" for a, b in sorted(legs)) + "]"
    assert scale_data._transfer_hash(ordered, "encounter:x", "charges") == (
        ledger_services._request_hash(
            "transaction_post", legs=sorted(legs), reference="encounter:x", description="charges"
        )
    )
