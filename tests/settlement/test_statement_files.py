"""Statement files kept in the database: stored whole as they are uploaded, read back in
pieces by the worker and the export, a lost piece failing the batch, and migration 0010
carrying the files of existing batches off the disk."""

import hashlib
import io
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from settlement.exceptions import SettlementInputError
from settlement.reconciliation import files as statement_files
from settlement.reconciliation.batches import batch_run, statement_batch_create
from settlement.reconciliation.files import (
    StatementFileLost,
    statement_file_open,
    statement_file_read,
)
from settlement.reconciliation.models import ReconBatch, ReconFileChunk, ReconItem
from tests.factories import home_institution, statement_csv

KINDS = {
    "matched": 1,
    "covered": 0,
    "amount_mismatch": 1,
    "unknown_reference": 1,
    "duplicate": 1,
    "missing": 1,
    "problem": 0,
}


def four_lines(references: list[str]) -> bytes:
    first, second, _ = references
    return statement_csv(
        [
            ("B1", "100.00", first),  # matched
            ("B2", "200.01", second),  # amount mismatch
            ("B3", "50.00", "DRNOSUCHTHING"),  # unknown reference
            ("B4", "100.00", first),  # paid twice: duplicate
        ]
    )


def uploaded(partner, content: bytes) -> ReconBatch:
    batch, created = statement_batch_create(
        actor="test",
        institution=home_institution(),
        partner=partner,
        stream=io.BytesIO(content),
        file_name="statement.csv",
        enqueue=False,
    )
    assert created
    return batch


def exported_lines(batch: ReconBatch) -> list[tuple[int, str]]:
    from settlement.reconciliation.api import _results

    return [(item.position, item.kind) for item in _results(batch) if item.position]


@pytest.mark.django_db
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"], ids=["plain", "crlf"])
def test_a_file_stored_in_many_pieces_is_read_back_whole_and_reconciled(
    draws, monkeypatch, line_end
):
    """A CRLF file is not of the plain shape: its check parses it again from the stored
    pieces, and its batch stages it through the parser rather than COPY."""
    partner, references = draws
    content = four_lines(references).replace(b"\n", line_end)
    monkeypatch.setattr(statement_files, "CHUNK", 16)  # every line across two pieces or more
    batch = uploaded(partner, content)

    pieces = ReconFileChunk.objects.filter(batch=batch).order_by("seq")
    assert list(pieces.values_list("seq", flat=True)) == list(range(-(-len(content) // 16)))
    assert b"".join(bytes(piece.data) for piece in pieces) == content
    assert batch.file_size == len(content)
    assert batch.plain_csv is (line_end == b"\n")
    digest = hashlib.sha256(content).hexdigest()
    assert batch.fingerprint == f"{batch.institution_id}:{partner.pk}:{digest}"
    assert statement_file_open(batch).read() == content

    batch = batch_run(batch.pk)
    assert batch.status == "done", batch.error
    assert batch.counts == KINDS
    # The export, by kind: the matched line is read again from the stored file.
    assert exported_lines(batch) == [
        (2, "amount_mismatch"),
        (4, "duplicate"),
        (1, "matched"),
        (3, "unknown_reference"),
    ]


@pytest.mark.django_db
def test_a_daily_file_in_pieces_is_parsed_back_from_the_database(draws, monkeypatch):
    partner, (first, second, third) = draws
    day = timezone.localdate().strftime("%Y%m%d")
    daily = (
        f"H|{partner.pk}|{day}|1\n"
        f"D|T1|{day}|100.00|{first}\n"
        f"D|T2|{day}|200.00|{second}\n"
        f"T|2|300.00\n"
    ).encode()
    monkeypatch.setattr(statement_files, "CHUNK", 7)
    batch = batch_run(uploaded(partner, daily).pk)
    assert batch.status == "done", batch.error
    assert (batch.counts["matched"], batch.counts["missing"]) == (2, 1)
    assert ReconItem.objects.get(batch=batch, kind="missing").reference == third


@pytest.mark.django_db
def test_a_refused_upload_stores_nothing(draws, settings, monkeypatch):
    partner, references = draws
    content = four_lines(references)
    monkeypatch.setattr(statement_files, "CHUNK", 16)  # refused with pieces written already
    settings.RECON_UPLOAD_MAX_BYTES = len(content) - 1
    with pytest.raises(SettlementInputError, match="too large"):
        uploaded(partner, content)
    settings.RECON_UPLOAD_MAX_BYTES = 2**20
    with pytest.raises(SettlementInputError, match="amount"):
        uploaded(partner, content.replace(b"200.01", b"200.011"))
    assert not ReconBatch.objects.exists()
    assert not ReconFileChunk.objects.exists()


@pytest.mark.django_db
def test_the_same_file_again_stores_no_second_copy(draws):
    partner, references = draws
    batch = uploaded(partner, four_lines(references))
    again, created = statement_batch_create(
        actor="test",
        institution=home_institution(),
        partner=partner,
        stream=io.BytesIO(four_lines(references)),
        file_name="again.csv",
    )
    assert (again.pk, created) == (batch.pk, False)
    assert set(ReconFileChunk.objects.values_list("batch_id", flat=True)) == {batch.pk}


@pytest.mark.django_db
def test_a_batch_whose_stored_file_lost_a_piece_fails_and_says_so(draws, monkeypatch):
    partner, references = draws
    monkeypatch.setattr(statement_files, "CHUNK", 32)
    batch = uploaded(partner, four_lines(references))
    ReconFileChunk.objects.filter(batch=batch, seq=2).delete()
    with pytest.raises(StatementFileLost, match="no piece 2"):
        batch_run(batch.pk)
    batch.refresh_from_db()
    assert batch.status == "failed"
    assert "StatementFileLost" in batch.error
    assert not ReconItem.objects.filter(batch=batch).exists()


@pytest.mark.django_db(transaction=True)
def test_migration_0010_moves_existing_files_into_the_database(tmp_path, settings):
    """Back to before 0010, a batch whose file is on disk as the old code kept it; forward
    again, the file is in the database; without the file the migration stops, naming it.
    Going back once more writes the file under VAR_DIR/statements again."""
    content = b"bank_txn_id,value_date,amount,reference\nB1,2026-11-23,1.00,DR1\n"
    path = tmp_path / "statements" / "abc.csv"
    path.parent.mkdir()
    path.write_bytes(content)
    before = [("settlement", "0009_one_ledger_check_at_a_time")]
    after = [("settlement", "0010_recon_file_chunks")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps.get_model("settlement", "ReconBatch")
        kept, lost = uuid.uuid4(), uuid.uuid4()
        old.objects.create(
            id=kept,
            source="bank_statement",
            fingerprint="1:abc",
            file_format="csv",
            file_path=str(path),
            status="done",
            created_by="test",
        )
        old.objects.create(
            id=lost,
            source="bank_statement",
            fingerprint="1:def",
            file_format="csv",
            file_path=str(tmp_path / "statements" / "def.csv"),
            status="queued",
            created_by="test",
        )
        executor = MigrationExecutor(connection)
        with pytest.raises(RuntimeError, match=f"{lost}: .*def.csv"):
            executor.migrate(after)
        old.objects.filter(pk=lost).update(status="failed")  # nothing reads its file again
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps.get_model("settlement", "ReconBatch")
        moved = new.objects.get(pk=kept)
        assert moved.file_size == len(content)
        assert statement_file_read(kept, moved.file_size).read() == content
        assert new.objects.get(pk=lost).file_size == 0

        path.unlink()
        settings.VAR_DIR = tmp_path / "var"
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        back = old.objects.get(pk=kept).file_path
        assert back == str(tmp_path / "var" / "statements" / "abc.csv")
        assert Path(back).read_bytes() == content
    finally:
        call_command("migrate", verbosity=0)  # every app to its latest, whatever happened
    assert statement_file_open(ReconBatch.objects.get(pk=kept)).read() == content
