"""Reconciling bank statements: matching classes, a real worker, the same file twice, a bad file,
and a worker process killed mid-batch then run again."""

import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services.institutions import department_ensure, institution_ensure
from config.celery import app
from settlement.models import CreditMovement
from settlement.reconciliation.batches import batch_run
from settlement.reconciliation.models import ReconBatch, ReconFileChunk, ReconItem, ReconPaid
from settlement.selectors import bank_statement
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import INSURER_DOWN, charge_item, grant_line, statement_csv
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def paid_references(batch_id) -> set[str]:
    """The references of the items the batch recorded as paid (the set bits of its rows)."""
    ids = {
        row.block * ReconPaid.BLOCK + bit
        for row in ReconPaid.objects.filter(batch_id=batch_id)
        for bit in range(ReconPaid.BLOCK)
        if row.bits >> bit & 1
    }
    return set(CreditMovement.objects.filter(pk__in=ids).values_list("reference", flat=True))


def upload(client, partner, content: bytes, name: str = "statement.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/api/v1/reconciliation/bank-statements/",
        {"bank": partner.name, "file": SimpleUploadedFile(name, content)},
        format="multipart",
    )


@pytest.mark.django_db(transaction=True)
def test_upload_is_reconciled_by_a_real_worker_into_each_class(draws, staff_client):
    partner, (first, second, third) = draws
    finance = staff_client("finance")
    content = statement_csv(
        [
            ("B1", "100.00", first),  # matched
            ("B2", "200.01", second),  # amount mismatch
            ("B3", "50.00", "DRNOSUCHTHING"),  # unknown reference
            ("B4", "100.00", first),  # paid twice: duplicate
        ]
    )
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        answer = upload(finance, partner, content)
        assert answer.status_code == 202, answer.json()
        batch_id = answer.json()["batch"]["id"]
        assert wait_until(lambda: ReconBatch.objects.get(pk=batch_id).status == "done")

    body = finance.get(f"/api/v1/reconciliation/batches/{batch_id}/").json()
    assert body["status"] == "done"
    assert body["progress"] == {"done": 4, "total": 4}
    assert body["matched"] == 1
    assert body["counts"] == {
        "matched": 1,
        "covered": 0,
        "amount_mismatch": 1,
        "unknown_reference": 1,
        "duplicate": 1,
        "missing": 1,
        "problem": 0,
    }
    kinds = {(e["kind"], e["reference"]) for e in body["exceptions"]}
    assert kinds == {
        ("amount_mismatch", second),
        ("unknown_reference", "DRNOSUCHTHING"),
        ("duplicate", first),
        ("missing", third),
    }
    assert body["totals"]["missing"] == "300.00"

    again = upload(finance, partner, content, name="renamed.csv")
    assert again.status_code == 202
    assert again.json() == {"batch": {"id": batch_id, "status": "done"}, "duplicate": True}
    assert ReconBatch.objects.count() == 1
    assert ReconItem.objects.filter(batch_id=batch_id).count() == 4  # the exceptions
    assert paid_references(batch_id) == {first}

    exported = finance.get(f"/api/v1/reconciliation/batches/{batch_id}/export/")
    text = b"".join(exported.streaming_content).decode()
    assert text.splitlines()[0].startswith("kind,line,reference")
    assert len(text.splitlines()) == 6

    missing = ReconItem.objects.get(batch_id=batch_id, kind="missing")
    refused = finance.post(f"/api/v1/reconciliation/items/{missing.pk}/resolve/", {"comment": ""})
    assert refused.status_code == 400
    resolved = finance.post(
        f"/api/v1/reconciliation/items/{missing.pk}/resolve/",
        {"comment": "paid in tomorrow's transfer"},
    )
    assert resolved.status_code == 200 and resolved.json()["resolved"] is True
    assert (
        staff_client("cashier").get(f"/api/v1/reconciliation/batches/{batch_id}/").status_code
        == 403
    )


@pytest.mark.django_db
def test_a_daily_net_transfer_matches_all_the_days_draws(draws, staff_client):
    partner, references = draws
    statement = bank_statement(partner, timezone.localdate())
    assert statement["net_amount"] == "600.00"
    content = statement_csv([("N1", "600.00", statement["reference"])])
    answer = upload(staff_client("finance"), partner, content)
    batch = batch_run(answer.json()["batch"]["id"])
    # One statement line matched; the three draws it pays are covered, not counted again.
    assert (batch.counts["matched"], batch.counts["covered"]) == (1, 3)
    assert batch.totals["matched"] == 60_000
    assert batch.counts["missing"] == 0
    assert set(
        ReconItem.objects.filter(batch=batch, kind="covered").values_list("reference", flat=True)
    ) == set(references)
    # A later statement paying one of them again finds it already paid.
    later = upload(
        staff_client("finance"), partner, statement_csv([("N2", "100.00", references[0])])
    )
    assert batch_run(later.json()["batch"]["id"]).counts["duplicate"] == 1


@pytest.fixture
def ids_from(request, db) -> int:
    """Have the next draws take the ids ``request.param`` + 1, + 2, ... (indirect parameter)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('settlement_creditmovement', 'id'), %s)",
                [request.param],
            )
        else:
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = 'settlement_creditmovement'")
            cursor.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('settlement_creditmovement', %s)",
                [request.param],
            )
    return request.param


@pytest.mark.parametrize("ids_from", [64], indirect=True)
@pytest.mark.django_db
def test_a_daily_line_and_item_lines_of_one_file_pay_their_items_together(
    ids_from, draws, staff_client
):
    """The items a daily line covers and those paid by lines of their own go into the same
    bitmap rows of the batch."""
    partner, (first, second, third) = draws
    ids = dict(CreditMovement.objects.values_list("reference", "pk"))
    assert ids[first] // ReconPaid.BLOCK == ids[second] // ReconPaid.BLOCK  # one row
    yesterday = timezone.localdate() - timedelta(days=1)
    CreditMovement.objects.filter(reference=first).update(business_date=yesterday)
    daily = bank_statement(partner, yesterday)["reference"]
    content = statement_csv([("N1", "100.00", daily), ("B2", "200.00", second)])
    batch = batch_run(upload(staff_client("finance"), partner, content).json()["batch"]["id"])
    assert (batch.counts["matched"], batch.counts["covered"], batch.counts["missing"]) == (2, 1, 1)
    assert paid_references(batch.pk) == {first, second}
    assert ReconPaid.objects.filter(batch=batch).count() == 1
    again = statement_csv([("B7", "100.00", first), ("B8", "300.00", third)])
    later = batch_run(upload(staff_client("finance"), partner, again).json()["batch"]["id"])
    counts = later.counts
    assert (counts["duplicate"], counts["matched"], counts["missing"]) == (1, 1, 0)
    assert paid_references(later.pk) == {third}


@pytest.mark.parametrize("ids_from", [30, 2**31 + 30, 2**40 + 30], indirect=True)
@pytest.mark.django_db
def test_each_bank_pays_only_its_own_items_whatever_their_ids(
    ids_from, draws, make_partner, staff_client
):
    """The first draw is the top bit of its row and the next starts a row, at small and large
    ids; a second bank's draw shares a row's block with the first bank's."""
    partner, (first, second, third) = draws
    ids = dict(CreditMovement.objects.values_list("reference", "pk"))
    assert [ids[first], ids[second], ids[third]] == [ids_from + 1, ids_from + 2, ids_from + 3]
    assert ids[first] % ReconPaid.BLOCK == ReconPaid.BLOCK - 1
    other, _ = make_partner("另一家银行")
    CreditMovement.objects.filter(reference=second).update(partner=other)
    finance = staff_client("finance")

    def run(bank, rows):
        return batch_run(upload(finance, bank, statement_csv(rows)).json()["batch"]["id"])

    mine = run(partner, [("A1", "100.00", first), ("A3", "300.00", third)])
    theirs = run(other, [("B2", "200.00", second)])
    assert (mine.counts["matched"], mine.counts["missing"]) == (2, 0)
    assert (theirs.counts["matched"], theirs.counts["missing"]) == (1, 0)
    assert (paid_references(mine.pk), paid_references(theirs.pk)) == ({first, third}, {second})
    again = run(
        partner, [("A9", "100.00", first), ("A8", "200.00", second), ("A7", "300.00", third)]
    )
    assert (again.counts["duplicate"], again.counts["unknown_reference"]) == (2, 1)
    assert again.counts["matched"] == again.counts["missing"] == 0


def items_of(batch_id) -> list[tuple]:
    """A batch's results, in the export's order: its items and its matched item lines."""
    from settlement.reconciliation.api import _results

    return [
        (i.kind, i.position, i.reference, i.external_id, i.amount, i.expected, i.detail)
        for i in _results(ReconBatch.objects.get(pk=batch_id))
    ]


@pytest.mark.django_db
def test_each_line_is_judged_by_the_rules_whatever_the_order(draws, staff_client):
    partner, (first, second, third) = draws
    finance = staff_client("finance")
    daily = bank_statement(partner, timezone.localdate())["reference"]
    content = statement_csv(
        [
            ("B1", "200.01", second),  # the wrong amount first...
            ("B2", "200.00", second),  # ...then the right one: matched
            ("B3", "200.00", second),  # paid exactly again: already paid
            ("B2", "200.00", second),  # the same bank transaction again
            ("B4", "600.00", daily),  # the day's net, but the day has lines of its own
            ("B5", "-1.00", "DRNOSUCHTHING"),
            ("B6", "199.00", second),  # any amount, once the item is paid: already paid
        ]
    )
    batch_id = upload(finance, partner, content).json()["batch"]["id"]
    unfinished = finance.get(f"/api/v1/reconciliation/batches/{batch_id}/export/")
    assert len(b"".join(unfinished.streaming_content).splitlines()) == 1  # no line is matched yet
    batch = batch_run(batch_id)
    date = timezone.localdate().isoformat()
    assert [
        (kind, position, reference, detail)
        for kind, position, reference, *_, detail in items_of(batch.pk)
    ] == [
        ("amount_mismatch", 1, second, ""),
        ("duplicate", 3, second, "already paid"),
        ("duplicate", 4, second, "bank transaction seen before"),
        ("duplicate", 5, daily, "some of the day's items are paid on their own"),
        ("duplicate", 7, second, "already paid"),
        ("matched", 2, second, ""),
        *sorted(
            ("missing", 0, ref, f"drawn on {date}, not paid by the bank") for ref in (first, third)
        ),
        ("unknown_reference", 6, "DRNOSUCHTHING", ""),
    ]
    assert batch.totals["matched"] == 20_000 and batch.totals["missing"] == 40_000


@pytest.mark.django_db
def test_a_worker_whose_lease_was_taken_over_writes_nothing(draws, staff_client):
    from settlement.reconciliation.batches import _LeaseLost, _run_statement

    partner, (first, _, _) = draws
    content = statement_csv([("B1", "100.00", first)])
    batch_id = upload(staff_client("finance"), partner, content).json()["batch"]["id"]
    now = timezone.now()
    ReconBatch.objects.filter(pk=batch_id).update(  # a second worker holds it now
        status="running", started_at=now, lease_until=now + timedelta(minutes=5)
    )
    batch = ReconBatch.objects.get(pk=batch_id)
    stale = ReconBatch.objects.filter(  # the first worker's claim, from before its lease lapsed
        pk=batch_id, status="running", started_at=now - timedelta(minutes=6)
    )
    with pytest.raises(_LeaseLost):
        _run_statement(batch, stale)
    assert not ReconItem.objects.filter(batch_id=batch_id).exists()
    assert not ReconPaid.objects.filter(batch_id=batch_id).exists()
    assert ReconBatch.objects.get(pk=batch_id).status == "running"


@pytest.mark.django_db(transaction=True)
def test_payments_found_before_the_upgrade_still_count(draws, staff_client):
    """Migrations 0007 and 0008 carry the items earlier batches matched over as paid items, and
    queue again a batch the upgrade cut short."""
    from django.db.migrations.executor import MigrationExecutor

    partner, (first, second, _) = draws
    before = [("settlement", "0006_recon_set_based")]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("settlement")
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        batches = old_apps.get_model("settlement", "ReconBatch")
        items = old_apps.get_model("settlement", "ReconItem")
        old = batches.objects.create(
            source="bank_statement",
            partner_id=partner.pk,
            fingerprint="old",
            status="done",
            created_by="test",
            period_end=timezone.localdate(),
        )
        for position, reference in enumerate((first, second), start=1):
            items.objects.create(batch=old, position=position, kind="matched", reference=reference)
        cut_short = batches.objects.create(
            source="bank_statement",
            partner_id=partner.pk,
            fingerprint="cut",
            status="running",
            created_by="test",
        )
        items.objects.create(batch=cut_short, position=1, kind="matched", reference=first)
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert paid_references(old.pk) == {first, second}
    after = upload(staff_client("finance"), partner, statement_csv([("U1", "100.00", first)]))
    kind, position, reference, *_, detail = items_of(batch_run(after.json()["batch"]["id"]).pk)[0]
    assert (kind, position, reference, detail) == ("duplicate", 1, first, "already paid")
    paid_ids = set(
        CreditMovement.objects.filter(reference__in=[first, second]).values_list("pk", flat=True)
    )
    assert ReconPaid.objects.count() == len({pk // ReconPaid.BLOCK for pk in paid_ids})
    again = ReconBatch.objects.get(pk=cut_short.pk)
    assert again.status == "queued" and not again.items.exists()

    # Back to one row per paid item, and forward again.
    one_per_item = [("settlement", "0007_recon_paid")]
    executor = MigrationExecutor(connection)
    executor.migrate(one_per_item)
    try:
        rows = executor.loader.project_state(one_per_item).apps.get_model("settlement", "ReconPaid")
        assert set(rows.objects.values_list("movement_id", "batch_id")) == {
            (pk, old.pk) for pk in paid_ids
        }
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert paid_references(old.pk) == {first, second}


@pytest.mark.django_db
def test_a_plain_file_and_the_same_lines_in_another_shape_give_the_same_items(draws, staff_client):
    """On PostgreSQL the plain file is loaded by COPY and the other by the parser."""
    partner, (first, second, third) = draws
    finance = staff_client("finance")
    rows = [
        ("B1", "100.00", first),
        ("B2", "200.01", second),
        ("B3", "100.00", first),
        ("B1", "100.00", first),
        ("B4", "5.00", "UNKNOWN"),
    ]
    plain = statement_csv(rows)
    crlf = plain.replace(b"\n", b"\r\n")
    one = upload(finance, partner, plain).json()["batch"]["id"]
    assert ReconBatch.objects.get(pk=one).plain_csv
    first_items = items_of(batch_run(one).pk)
    ReconPaid.objects.all().delete()  # else the second file finds it all paid
    ReconBatch.objects.filter(pk=one).delete()
    two = upload(finance, partner, crlf).json()["batch"]["id"]
    assert not ReconBatch.objects.get(pk=two).plain_csv
    assert items_of(batch_run(two).pk) == first_items
    assert [kind for kind, *_ in first_items].count("duplicate") == 2


@pytest.mark.django_db
def test_a_bad_file_is_refused_and_leaves_no_batch(draws, staff_client, settings):
    partner, _ = draws
    finance = staff_client("finance")
    bad = b"bank_txn_id,value_date,amount,reference\nB1,2026-11-23,12.345,DR1\n"
    answer = upload(finance, partner, bad)
    assert answer.status_code == 400
    assert "file" in answer.json()["error"]["fields"]
    assert ReconBatch.objects.count() == 0
    assert not ReconFileChunk.objects.exists()
    unknown_bank = finance.post(
        "/api/v1/reconciliation/bank-statements/", {"bank": "nobody"}, format="multipart"
    )
    assert unknown_bank.status_code == 400


@pytest.mark.django_db
def test_a_file_over_the_size_limit_is_refused_and_leaves_nothing(draws, staff_client, settings):
    partner, (first, _, _) = draws
    content = statement_csv([(f"B{n}", "100.00", first) for n in range(100)])
    settings.RECON_UPLOAD_MAX_BYTES = len(content) - 1
    answer = upload(staff_client("finance"), partner, content)
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"]["file"] == ["the statement file is too large"]
    assert ReconBatch.objects.count() == 0
    assert not ReconFileChunk.objects.exists()
    settings.RECON_UPLOAD_MAX_BYTES = len(content)
    assert upload(staff_client("finance"), partner, content).status_code == 202


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_leaves_nothing_and_the_batch_runs_again(draws, staff_client):
    """The worker is held mid-batch by a lock another session keeps on the draws, then killed."""
    import psycopg

    partner, (first, second, third) = draws
    lines = 60_000
    rows = [(f"B{n}", "1.00", f"UNKNOWN{n}") for n in range(lines)]
    rows[10] = ("M1", "100.00", first)
    rows[-1] = ("M2", "200.00", second)
    answer = upload(staff_client("finance"), partner, statement_csv(rows))
    batch_id = answer.json()["batch"]["id"]

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": url}
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE settlement_creditmovement IN ACCESS EXCLUSIVE MODE")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); "
                "from settlement.reconciliation.batches import batch_run; "
                f"batch_run({batch_id!r})",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Every line staged, and the worker waiting for the draws to match them against.
            assert wait_until(
                lambda: ReconBatch.objects.get(pk=batch_id).progress_done == lines, 120
            )
            waiting = (  # for the draws, in this database
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
                " AND relation = 'settlement_creditmovement'::regclass"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            with psycopg.connect(url, autocommit=True) as watcher:
                assert wait_until(lambda: watcher.execute(waiting).fetchone()[0] == 1, 60)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        holder.rollback()
    stalled = ReconBatch.objects.get(pk=batch_id)
    assert stalled.status == "running" and stalled.progress_done == lines
    assert not ReconItem.objects.filter(batch_id=batch_id).exists()

    ReconBatch.objects.filter(pk=batch_id).update(lease_until=timezone.now())  # lease lapses
    batch = batch_run(batch_id)
    assert batch.status == "done"
    assert batch.counts["matched"] == 2
    assert batch.counts["unknown_reference"] == lines - 2
    assert batch.counts["missing"] == 1
    assert ReconItem.objects.filter(batch_id=batch_id).count() == lines - 1
    assert paid_references(batch_id) == {first, second}
    assert batch.progress_done == lines


@pytest.mark.django_db
def test_the_insurers_day_is_matched_with_the_claims_settled_here(make_person, staff_client, sim):
    from settlement.insurer.client import FeeLine, InsurerClient
    from settlement.models import Encounter, InsuranceClaim
    from settlement.reconciliation.batches import insurer_day_reconcile

    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(actor="test", institution=institution, code="IM", name="内科")
    today = timezone.localdate()
    for index in range(2):
        person = make_person(f"病人{index}", birth=date(1960 + index, 1, 1))
        encounter = encounter_admit(
            actor="test", person=person, department=department, kind="outpatient"
        )
        charges_post(
            key=uuid4().hex,
            actor="test",
            encounter_id=encounter.pk,
            items=[charge_item(50_000, insurance_class="A", service_date=today)],
        )
        with override_settings(INSURER_URL=sim.url):
            encounter_settle(actor="test", encounter_id=encounter.pk, channel="cash")
    assert InsuranceClaim.objects.filter(status="settled").count() == 2
    client = InsurerClient(base_url=sim.url)
    # Settled at the insurer for this hospital by someone else: no claim here.
    lines = [FeeLine("A", 30_000, "X", today)]
    client.settle("outpatient", "OTHER-HIS-1", "P999", lines, fixmedins_code="XMH1")
    # Settled for another institution: in its day, not this hospital's.
    second = institution_ensure(actor="test", code="XMH2", name="厦门市第二医院")
    client.settle("outpatient", "XMH2-HIS-1", "P998", lines, fixmedins_code="XMH2")
    # A claim here the insurer does not list.
    ghost = Encounter.objects.first()
    assert ghost is not None
    claim = InsuranceClaim.objects.get(encounter=ghost)
    InsuranceClaim.objects.filter(pk=claim.pk).update(setl_id="GHOST-1")

    batch = insurer_day_reconcile(day=today, institution=institution, client=client)
    assert batch.status == "done"
    assert batch.institution == institution
    assert (batch.counts["matched"], batch.counts["unknown_reference"]) == (1, 2)
    assert batch.counts["missing"] == 1
    missing = ReconItem.objects.get(batch=batch, kind="missing")
    assert missing.reference == "GHOST-1"
    # A done day stays.
    assert insurer_day_reconcile(day=today, institution=institution, client=client).pk == batch.pk

    theirs = insurer_day_reconcile(day=today, institution=second, client=client)
    assert theirs.pk != batch.pk and theirs.status == "done"
    assert [(i.kind, i.external_id) for i in theirs.items.all()] == [
        ("unknown_reference", "XMH2-HIS-1")
    ]


@pytest.mark.django_db
def test_the_nightly_ledger_check_is_kept_as_a_batch(draws):
    from settlement.reconciliation.batches import ledger_check_batch

    clean = ledger_check_batch()
    assert clean.status == "done" and clean.counts["problem"] == 0
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_balanceslot SET credits_posted = credits_posted + 1")
    broken = ledger_check_batch()
    assert broken.counts["problem"] > 0
    assert ReconItem.objects.filter(batch=broken, kind="problem").exists()


@pytest.mark.django_db
def test_one_ledger_check_at_a_time(draws):
    from django.db import IntegrityError, transaction

    from settlement.reconciliation.batches import ledger_check_batch, ledger_check_queue

    queued, created = ledger_check_queue(actor="test")
    assert created and queued.status == "queued"
    assert ledger_check_queue(actor="test") == (queued, False)
    with pytest.raises(IntegrityError), transaction.atomic():  # the database refuses a second
        ReconBatch.objects.create(source="ledger", fingerprint="second", created_by="test")
    nightly = ledger_check_batch()  # runs the one waiting instead of starting another
    assert nightly.pk == queued.pk and nightly.status == "done"
    assert ReconBatch.objects.filter(source="ledger").count() == 1
    assert ledger_check_queue(actor="test")[1]  # once it is done, a new one may be asked for


@pytest.mark.django_db
def test_resolving_a_mismatch_can_write_off_the_difference_through_the_ledger(draws, staff_client):
    from ledger.selectors import account_balance
    from ledger.services import chain_seal
    from ledger.verification import verify_ledger
    from settlement.services import house

    partner, (first, second, third) = draws
    finance = staff_client("finance")
    answer = upload(finance, partner, statement_csv([("B1", "199.50", second)]))
    batch = batch_run(answer.json()["batch"]["id"])
    mismatch = ReconItem.objects.get(batch=batch, kind="amount_mismatch")
    institution = CreditMovement.objects.get(reference=second).receivable.encounter.institution
    receivable = house.bank_receivable(institution, partner)
    before = account_balance(receivable).posted

    too_much = finance.post(
        f"/api/v1/reconciliation/items/{mismatch.pk}/resolve/",
        {"comment": "more than the difference", "adjust": "0.51"},
    )
    assert too_much.status_code == 400 and "adjust" in too_much.json()["error"]["fields"]
    resolved = finance.post(
        f"/api/v1/reconciliation/items/{mismatch.pk}/resolve/",
        {"comment": "bank fee deducted, agreed with the bank", "adjust": "0.50"},
    )
    assert resolved.status_code == 200, resolved.json()
    assert resolved.json()["adjustment_transaction"]
    assert account_balance(receivable).posted == before - 50
    # The answer was lost: the same request with its key is replayed, nothing posts again.
    key = resolved.wsgi_request.META["HTTP_IDEMPOTENCY_KEY"]
    replay = finance.post(
        f"/api/v1/reconciliation/items/{mismatch.pk}/resolve/",
        {"comment": "bank fee deducted, agreed with the bank", "adjust": "0.50"},
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert (replay.status_code, replay.json()) == (200, resolved.json())
    assert account_balance(receivable).posted == before - 50
    keyless = APIClient()
    keyless.credentials(HTTP_AUTHORIZATION=finance._credentials["HTTP_AUTHORIZATION"])
    refused_without_key = keyless.post(
        f"/api/v1/reconciliation/items/{mismatch.pk}/resolve/", {"comment": "no key"}
    )
    assert refused_without_key.status_code == 400
    again = finance.post(
        f"/api/v1/reconciliation/items/{mismatch.pk}/resolve/", {"comment": "twice"}
    )
    assert again.status_code == 409
    unknown = ReconItem.objects.create(
        batch=batch, position=99, kind="unknown_reference", reference="NOPE"
    )
    refused = finance.post(
        f"/api/v1/reconciliation/items/{unknown.pk}/resolve/", {"comment": "x", "adjust": "1.00"}
    )
    assert refused.status_code == 400 and "adjust" in refused.json()["error"]["fields"]
    chain_seal()
    assert verify_ledger().intact


@pytest.mark.django_db
def test_a_mismatch_answered_earlier_is_not_reported_missing_later(draws, staff_client):
    partner, (first, second, third) = draws
    finance = staff_client("finance")
    one = upload(finance, partner, statement_csv([("B1", "199.50", second)]))
    assert batch_run(one.json()["batch"]["id"]).counts["amount_mismatch"] == 1
    two = upload(finance, partner, statement_csv([("B2", "100.00", first)]))
    later = batch_run(two.json()["batch"]["id"])
    assert set(
        ReconItem.objects.filter(batch=later, kind="missing").values_list("reference", flat=True)
    ) == {third}


@pytest.mark.django_db
def test_statement_text_is_bounded_and_a_failed_file_may_be_sent_again(draws, staff_client):
    partner, (first, *_) = draws
    finance = staff_client("finance")
    too_long = upload(finance, partner, statement_csv([("B" * 65, "100.00", first)]))
    assert too_long.status_code == 400
    assert "64" in too_long.json()["error"]["message"]
    content = statement_csv([("B1", "100.00", first)])
    batch_id = upload(finance, partner, content).json()["batch"]["id"]
    ReconBatch.objects.filter(pk=batch_id).update(status="failed")
    again = upload(finance, partner, content)
    assert again.json()["duplicate"] is False
    assert again.json()["batch"]["id"] != batch_id


@pytest.mark.django_db
def test_the_export_never_lets_a_cell_run_as_a_formula(draws, staff_client):
    partner, _ = draws
    finance = staff_client("finance")
    answer = upload(finance, partner, statement_csv([("B1", "100.00", "=HYPERLINK(1)")]))
    batch_id = batch_run(answer.json()["batch"]["id"]).pk
    exported = finance.get(f"/api/v1/reconciliation/batches/{batch_id}/export/")
    text = b"".join(exported.streaming_content).decode()
    assert "'=HYPERLINK(1)" in text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"bank_txn_id,value_date,amount,reference\nB1,2026-11-23,12.345,DR1\n",
            "line 2: amount '12.345' is not an amount in yuan with at most two decimal places",
        ),
        (
            b"H|ICBC|20261123|1\nD|B1|20261123|100.00|DR1\nT|2|100.00\n",
            "line 3: trailer says 2 lines / \u00a5100.00, the file has 1 / \u00a5100.00",
        ),
        (
            b"bank_txn_id,value_date,amount,reference\nB1,2026-11-23,1.00,DR" + b"9" * 70 + b"\n",
            "line 1: reference must be at most 64 printable characters",
        ),
    ],
)
def test_the_api_says_a_refused_file_in_english_whatever_the_language(
    draws, staff_client, content, message
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    partner, _ = draws
    finance = staff_client("finance")
    for language in ("zh-hans", "en"):
        answer = finance.post(
            "/api/v1/reconciliation/bank-statements/",
            {"bank": partner.name, "file": SimpleUploadedFile("s.txt", content)},
            format="multipart",
            HTTP_ACCEPT_LANGUAGE=language,
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == message
        assert answer.json()["error"]["fields"] == {"file": [message]}
    assert ReconBatch.objects.count() == 0


@pytest.mark.django_db
def test_one_statement_at_two_institutions_matches_each_its_own(draws, make_person, staff_client):
    """The bank sends both hospitals one file with both's draws: each hospital's batch pays
    its own items only; the other's lines are unknown references there, and neither batch
    is seen by the other hospital's finance (404)."""
    partner, (first, second, third) = draws  # the first hospital's
    other = institution_ensure(actor="test", code="XMH2", name="厦门市第二医院")
    ward = department_ensure(
        actor="test", institution=other, code="IM", name="内科", default_deposit=0
    )
    person = make_person("病人九", birth=date(1980, 1, 1))
    grant_line(partner, person)
    stay = encounter_admit(actor="test", person=person, department=ward, kind="outpatient")
    charges_post(key=uuid4().hex, actor="test", encounter_id=stay.pk, items=[charge_item(40_000)])
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=stay.pk)
    theirs = CreditMovement.objects.get(institution=other).reference
    content = statement_csv(
        [
            ("B1", "100.00", first),
            ("B2", "200.00", second),
            ("B3", "300.00", third),
            ("B4", "400.00", theirs),
        ]
    )
    home_finance, other_finance = staff_client("finance"), staff_client("finance", other)
    mine_id = upload(home_finance, partner, content).json()["batch"]["id"]
    their_id = upload(other_finance, partner, content).json()["batch"]["id"]
    assert mine_id != their_id  # the same file, a batch for each institution
    mine, their_batch = batch_run(mine_id), batch_run(their_id)

    assert (mine.counts["matched"], mine.counts["unknown_reference"]) == (3, 1)
    assert (their_batch.counts["matched"], their_batch.counts["unknown_reference"]) == (1, 3)
    assert mine.counts["missing"] == their_batch.counts["missing"] == 0
    assert paid_references(mine_id) == {first, second, third}
    assert paid_references(their_id) == {theirs}
    unknown = ReconItem.objects.get(batch_id=mine_id, kind="unknown_reference")
    assert unknown.reference == theirs

    for batch_id, stranger in ((mine_id, other_finance), (their_id, home_finance)):
        assert stranger.get(f"/api/v1/reconciliation/batches/{batch_id}/").status_code == 404
        export = f"/api/v1/reconciliation/batches/{batch_id}/export/"
        assert stranger.get(export).status_code == 404
    item = ReconItem.objects.filter(batch_id=their_id).exclude(kind="matched").first()
    resolve = home_finance.post(
        f"/api/v1/reconciliation/items/{item.pk}/resolve/", {"comment": "not ours"}
    )
    assert resolve.status_code == 404
    assert home_finance.get(f"/api/v1/reconciliation/batches/{mine_id}/").json()["institution"] == (
        "XMH1"
    )

    platform = staff_client("platform")
    for batch_id in (mine_id, their_id):
        assert platform.get(f"/api/v1/reconciliation/batches/{batch_id}/").status_code == 200
    unnamed = upload(platform, partner, content)
    assert unnamed.status_code == 400 and "institution" in unnamed.json()["error"]["fields"]
    named = platform.post(
        "/api/v1/reconciliation/bank-statements/",
        {"bank": partner.name, "institution": "XMH2", "file": SimpleUploadedFile("s.csv", content)},
        format="multipart",
    )
    assert named.status_code == 202
    assert named.json() == {"batch": {"id": their_id, "status": "done"}, "duplicate": True}
