"""Reconciliation (对账): bank statements, the insurer's daily list and the ledger's own checks.

A statement file is recognised by its hash and checked whole at upload, so a bad file makes no
batch. A worker then runs the batch: it stages the file's lines in the database and matches them
all at once (``matching`` holds the rules), writing the results and the totals in one
transaction with the status ``done``. A worker killed mid-batch leaves no results; once its
lease lapses the batch is run again from the file, and a rerun gives the same result. The file
is kept in the database (``files``), so the worker may be on any host.
"""

import logging
import uuid
from datetime import date, datetime, time, timedelta
from typing import IO, Any, BinaryIO
from uuid import UUID

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy, pgettext_lazy

from accounts.models import Institution, Partner
from accounts.services.audit import audit_record

from ..exceptions import EncounterStateError, SettlementInputError
from ..models import CreditMovement
from .files import (
    StatementFileTooLarge,
    StatementFileWriter,
    statement_file_read,
    statement_file_tee,
)
from .matching import statement_classify, statement_stage, statement_unstage
from .models import ReconBatch, ReconItem
from .statements import (
    HEAD_SIZE,
    StatementFormatError,
    StatementLine,
    at_line,
    detect_format,
    parse_statement,
    scan_plain_csv,
)

PAID = [ReconItem.Kind.MATCHED, ReconItem.Kind.COVERED]
TEXT_LIMIT = 64
LEASE = timedelta(minutes=5)  # renewed by a statement batch at each block it stages
# The ledger's checks report no progress as they go: a lease that outlasts the longest check,
# so that a live run is not taken for a dead one and started again.
LEDGER_LEASE = timedelta(hours=2)

logger = logging.getLogger(__name__)


def partner_named(bank: str) -> Partner | None:
    """A bank partner by id or by name."""
    bank = bank.strip()
    if bank.isdigit():
        found = Partner.objects.filter(pk=int(bank)).first()
        if found is not None:
            return found
    return Partner.objects.filter(name=bank).first()


# --- creating batches -------------------------------------------------------------------------


def statement_batch_create(
    *,
    actor: str,
    institution: Institution,
    partner: Partner,
    stream: IO[bytes],
    file_name: str,
    enqueue: bool = True,
) -> tuple[ReconBatch, bool]:
    """Check a statement file whole and queue a batch for it; ``False`` if it was seen before.

    The batch is ``institution``'s: its lines are matched against that institution's draws
    and reversals only, and the same file uploaded by another institution is a batch of its
    own.

    The file is stored in the database as it is read (``files``), hashed and checked
    to the end, in one transaction with its batch: a malformed file (or a daily file whose
    trailer disagrees) is refused and leaves nothing behind, and so is a file larger than
    ``RECON_UPLOAD_MAX_BYTES``, as soon as it is. Every host reaches the stored file; none
    keeps a copy on its disk.
    """
    batch_id = uuid.uuid4()
    raced = False
    with transaction.atomic(durable=True):
        try:
            with StatementFileWriter(batch_id, limit=settings.RECON_UPLOAD_MAX_BYTES) as writer:
                fmt, plain, (lines, first, last) = _check_upload(stream, writer)
        except StatementFileTooLarge:
            raise SettlementInputError(
                gettext_lazy("the statement file is too large"), field="file"
            ) from None
        except StatementFormatError as error:
            raise SettlementInputError(
                # The parser's message names the line at fault, translated as it is shown: in
                # the page's language on a page, in English in the API.
                pgettext_lazy("statement file refused", "%(detail)s"),
                field="file",
                params={"detail": error.message},
            ) from None
        if not lines:
            raise SettlementInputError(gettext_lazy("the statement has no lines"), field="file")
        fingerprint = f"{institution.pk}:{partner.pk}:{writer.hexdigest()}"
        existing = ReconBatch.objects.filter(
            source=ReconBatch.Source.BANK_STATEMENT, fingerprint=fingerprint
        ).first()
        if existing is not None and existing.status == ReconBatch.Status.FAILED:
            existing.delete()  # a file whose run failed may be sent again; its results go with it
            existing = None
        if existing is not None:
            transaction.set_rollback(True)  # its batch keeps the file already: forget this copy
            return existing, False
        try:
            with transaction.atomic():
                batch = ReconBatch.objects.create(
                    id=batch_id,
                    source=ReconBatch.Source.BANK_STATEMENT,
                    partner=partner,
                    institution=institution,
                    period_start=first,
                    period_end=last,
                    fingerprint=fingerprint,
                    file_name=file_name[:200],
                    file_format=fmt,
                    file_size=writer.size,
                    plain_csv=plain,
                    progress_total=lines,
                    created_by=actor,
                )
                audit_record(
                    actor=actor,
                    action="recon.statement_upload",
                    obj=batch,
                    changes={"file": file_name[:200], "format": fmt, "lines": lines},
                )
        except IntegrityError:  # the same file uploaded concurrently, and committed first
            transaction.set_rollback(True)
            raced = True
        else:
            if enqueue:  # else the caller runs batch_run itself
                transaction.on_commit(lambda: _enqueue(batch.pk), robust=True)
    if raced:
        return ReconBatch.objects.get(
            source=ReconBatch.Source.BANK_STATEMENT, fingerprint=fingerprint
        ), False
    return batch, True


def _check_upload(
    stream: IO[bytes], writer: StatementFileWriter
) -> tuple[str, bool, tuple[int, date | None, date | None]]:
    """Read the upload once, storing it with ``writer`` on the way, and check it to the end.

    Return its format, whether it has the plain CSV shape (which PostgreSQL may ``COPY``) and
    its number of lines with its first and last value date. A CSV file found not to be plain
    part of the way through is parsed again from the start, as stored.
    """
    incoming = statement_file_tee(stream, writer)
    fmt = detect_format(incoming.peek(HEAD_SIZE)[:HEAD_SIZE])
    plain = scan_plain_csv(incoming) if fmt == "csv" else None
    if plain is not None:
        counted: tuple[int, date | None, date | None] = (
            plain.lines,
            plain.first_date,
            plain.last_date,
        )
    elif fmt != "csv":
        counted = _check_parsed(incoming, fmt)
    while incoming.read(1 << 20):  # the rest, if the check did not need it, is stored too
        pass
    writer.close()
    if fmt == "csv" and plain is None:
        counted = _check_parsed(statement_file_read(writer.batch_id, writer.size), fmt)
    return fmt, plain is not None, counted


def _check_parsed(stream: BinaryIO, fmt: str) -> tuple[int, date | None, date | None]:
    """Parse a statement to the end: its number of lines and its first and last value date."""
    lines, first, last = 0, None, None
    for line in parse_statement(stream, fmt):
        _check_text(line)
        lines += 1
        first = min(first or line.value_date, line.value_date)
        last = max(last or line.value_date, line.value_date)
    return lines, first, last


def _check_text(line: StatementLine) -> None:
    for name, value in (("bank_txn_id", line.bank_txn_id), ("reference", line.reference)):
        if len(value) > TEXT_LIMIT or not value.isprintable():
            raise at_line(
                line.line_no,
                gettext_lazy("%(name)s must be at most %(limit)s printable characters"),
                {"name": name, "limit": TEXT_LIMIT},
            )


def _enqueue(batch_id: object) -> None:
    # By name: the task module imports the services, not the other way round.
    current_app.send_task("settlement.tasks.run_recon_batch", args=[str(batch_id)])


# --- running batches --------------------------------------------------------------------------


class _LeaseLost(Exception):
    """Another worker took the batch over (this one's lease lapsed): leave the batch to it."""


def batch_run(batch_id: UUID | str) -> ReconBatch:
    """Run a batch (again, if its worker died); safe to call again, and concurrently (a lease
    decides)."""
    now = timezone.now()
    is_ledger = ReconBatch.objects.filter(pk=batch_id, source=ReconBatch.Source.LEDGER).exists()
    taken = (
        ReconBatch.objects.filter(pk=batch_id)
        .filter(
            Q(status=ReconBatch.Status.QUEUED)
            | Q(status=ReconBatch.Status.RUNNING, lease_until__lt=now)
        )
        .update(
            status=ReconBatch.Status.RUNNING,
            lease_until=now + (LEDGER_LEASE if is_ledger else LEASE),
            started_at=now,
        )
    )
    batch = ReconBatch.objects.get(pk=batch_id)
    if not taken:
        return batch
    # This run's claim: a worker that takes the batch over after the lease lapsed writes its own
    # start time, and from then on this run may not write the batch's progress or results.
    mine = ReconBatch.objects.filter(pk=batch.pk, status=ReconBatch.Status.RUNNING, started_at=now)
    try:
        if batch.source == ReconBatch.Source.BANK_STATEMENT:
            _run_statement(batch, mine)
        elif batch.source == ReconBatch.Source.LEDGER:
            _run_ledger_check(batch, mine)
        else:
            _finish(batch)
    except _LeaseLost:
        pass
    except Exception as error:
        mine.update(
            status=ReconBatch.Status.FAILED,
            error=f"{type(error).__name__}: {error}"[:2000],
            lease_until=None,
            finished_at=timezone.now(),
        )
        raise
    batch.refresh_from_db()
    return batch


def batches_resume_stalled() -> int:
    """Queue again the batches whose worker died (lease expired) or that never started."""
    now = timezone.now()
    stalled = ReconBatch.objects.filter(
        Q(status=ReconBatch.Status.RUNNING, lease_until__lt=now)
        | Q(status=ReconBatch.Status.QUEUED, created_at__lt=now - timedelta(minutes=2))
    ).values_list("pk", flat=True)
    count = 0
    for batch_id in stalled:
        _enqueue(batch_id)
        count += 1
    return count


def _run_statement(batch: ReconBatch, mine: QuerySet[ReconBatch]) -> None:
    def progress(lines: int) -> None:
        renewed = mine.update(
            progress_done=min(lines, batch.progress_total), lease_until=timezone.now() + LEASE
        )
        if not renewed:
            raise _LeaseLost

    try:
        statement_stage(batch, progress)
        with transaction.atomic():
            # Held to the commit: a worker taking the batch over now waits, then finds it done.
            if not mine.select_for_update().exists():
                raise _LeaseLost
            matched = statement_classify(batch)
            _finish(batch, matched=matched)
    finally:
        statement_unstage()


def _finish(batch: ReconBatch, *, matched: tuple[int, int] = (0, 0)) -> None:
    """Count the batch's results by kind and mark it done. ``matched`` adds the lines matched
    without a result row of their own (a statement's matched item lines): count and fen."""
    rows = (
        ReconItem.objects.filter(batch=batch)
        .values("kind")
        .annotate(n=Count("pk"), amount=Sum("amount"), expected=Sum("expected"))
    )
    counts = {kind: 0 for kind in ReconItem.Kind.values}
    totals: dict[str, int] = {}
    for row in rows:
        counts[row["kind"]] = row["n"]
        totals[row["kind"]] = int(
            row["amount"] if row["amount"] is not None else row["expected"] or 0
        )
    if matched[0]:
        counts[ReconItem.Kind.MATCHED] += matched[0]
        totals[ReconItem.Kind.MATCHED] = totals.get(ReconItem.Kind.MATCHED, 0) + matched[1]
    ReconBatch.objects.filter(pk=batch.pk).update(
        status=ReconBatch.Status.DONE,
        counts=counts,
        totals=totals,
        progress_done=batch.progress_total,
        lease_until=None,
        finished_at=timezone.now(),
        error="",
    )


# --- resolving exceptions ---------------------------------------------------------------------


@transaction.atomic(durable=True)
def item_resolve(*, actor: str, item_id: int, comment: str, adjust: int | None = None) -> ReconItem:
    """Finance closes an exception with a required comment; audited.

    ``adjust`` (fen, for a line about a known draw) moves money where it must: a positive
    amount takes that much off the hospital's receivable from the bank into reconciliation
    differences (the bank will not pay it), a negative one puts it back.
    """
    comment = (comment or "").strip()
    if not comment:
        raise SettlementInputError(
            gettext_lazy("a comment saying how it was resolved is required"), field="comment"
        )
    item = ReconItem.objects.select_for_update().get(pk=item_id)
    if item.kind in PAID:
        raise EncounterStateError(gettext_lazy("a matched line is not an exception"))
    if item.resolved_at is not None:
        raise EncounterStateError(gettext_lazy("the exception is already resolved"))
    if adjust:
        item.adjustment_transaction_id = _adjust(item, adjust)
    item.resolved_at, item.resolved_by, item.resolution_comment = timezone.now(), actor, comment
    item.save(
        update_fields=[
            "resolved_at",
            "resolved_by",
            "resolution_comment",
            "adjustment_transaction_id",
        ]
    )
    audit_record(
        actor=actor,
        action="recon.resolve",
        obj=item,
        changes={
            "kind": item.kind,
            "reference": item.reference,
            "comment": comment,
            "adjust": adjust,
        },
    )
    return item


def _adjust(item: ReconItem, amount: int) -> UUID:
    from ledger import services as ledger
    from ledger.models import Ledger, Side

    from ..services import house

    movement = (
        CreditMovement.objects.select_related("receivable__encounter__institution", "partner")
        .filter(
            reference=item.reference,
            partner_id=item.batch.partner_id or 0,
            institution_id=item.batch.institution_id or 0,
        )
        .first()
    )
    movable = (ReconItem.Kind.AMOUNT_MISMATCH, ReconItem.Kind.MISSING)
    if (
        movement is None
        or item.batch.source != ReconBatch.Source.BANK_STATEMENT
        or item.kind not in movable
    ):
        raise SettlementInputError(
            gettext_lazy("only a mismatch or a missing payment of this bank's draw can move money"),
            field="adjust",
        )
    difference = (item.expected or 0) - (item.amount or 0)
    if abs(amount) > abs(difference):
        raise SettlementInputError(
            gettext_lazy(
                "the adjustment cannot exceed the difference between the ledger and the bank"
            ),
            field="adjust",
        )
    institution = movement.receivable.encounter.institution
    differences = ledger.account_create(
        code=f"money:inst:{institution.pk}:recon-differences",
        name=f"{institution.code} reconciliation differences",
        ledger=Ledger.MONEY,
        normal_side=Side.DEBIT,
    )
    receivable = house.bank_receivable(institution, movement.partner)
    debit, credit = (differences, receivable) if amount > 0 else (receivable, differences)
    return ledger.transfer(
        key=f"recon-item:{item.pk}:adjust",
        debit=debit,
        credit=credit,
        amount=abs(amount),
        reference=f"recon:{item.batch_id}",
        description=f"reconciliation adjustment for {item.reference}",
    ).pk


# --- the insurer's day ------------------------------------------------------------------------


def insurer_days_reconcile(*, day: date, client: Any = None) -> dict[str, str]:
    """The insurer's day at every institution, one batch each: their statuses by code. One
    institution's failure (the insurer down) does not stop the others'."""
    statuses = {}
    for institution in Institution.objects.order_by("code"):
        try:
            statuses[institution.code] = insurer_day_reconcile(
                day=day, institution=institution, client=client
            ).status
        except Exception:  # kept on the failed batch; asking for the day again runs it again
            logger.exception("the insurer's day %s at %s failed", day, institution.code)
            statuses[institution.code] = ReconBatch.Status.FAILED
    return statuses


def insurer_day_reconcile(*, day: date, institution: Institution, client: Any = None) -> ReconBatch:
    """Match the insurer's settlements of ``day`` at ``institution`` (3201 totals, 3202
    detail, asked for its ``fixmedins_code``) with the claims it settled there that day. A
    finished day is returned as it is; a failed one is run again."""
    from ..insurer.client import InsurerClient
    from ..models import InsuranceClaim

    batch, _ = ReconBatch.objects.get_or_create(
        source=ReconBatch.Source.INSURER,
        fingerprint=f"{institution.code}:{day.isoformat()}",
        defaults={
            "institution": institution,
            "period_start": day,
            "period_end": day,
            "created_by": "system:insurer-day",
        },
    )
    if batch.status == ReconBatch.Status.DONE:
        return batch
    ReconItem.objects.filter(batch=batch).delete()
    ReconBatch.objects.filter(pk=batch.pk).update(
        status=ReconBatch.Status.RUNNING, started_at=timezone.now(), error=""
    )
    try:
        client = client or InsurerClient()
        totals = client.daily_totals(day, fixmedins_code=institution.code)
        rows = {
            row.setl_id: row for row in client.daily_detail(day, fixmedins_code=institution.code)
        }
        start = timezone.make_aware(datetime.combine(day, time.min))
        ours = {
            claim.setl_id: claim
            for claim in InsuranceClaim.objects.filter(
                encounter__institution=institution,
                insurer_settled_at__gte=start,
                insurer_settled_at__lt=start + timedelta(days=1),
            ).exclude(setl_id="")
        }
        items = []
        for position, setl_id in enumerate(sorted(set(rows) | set(ours)), start=1):
            row, claim = rows.get(setl_id), ours.get(setl_id)
            item = ReconItem(batch=batch, position=position, reference=setl_id[:64])
            if row is not None and claim is not None:
                theirs = (row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay)
                mine = (claim.medfee_sumamt, claim.insurance_fund, claim.personal_account)
                item.external_id, item.amount, item.expected = (
                    row.mdtrt_id[:64],
                    row.fund_pay_sumamt + row.acct_pay,
                    claim.insurance_fund + claim.personal_account,
                )
                item.kind = (
                    ReconItem.Kind.MATCHED if theirs == mine else ReconItem.Kind.AMOUNT_MISMATCH
                )
                if theirs != mine:
                    item.detail = f"insurer {theirs} != ledger {mine} (total, fund, account)"
            elif row is not None:
                item.kind, item.external_id = ReconItem.Kind.UNKNOWN_REFERENCE, row.mdtrt_id[:64]
                item.amount = row.fund_pay_sumamt + row.acct_pay
                item.detail = "settled at the insurer, no claim here"
            else:
                assert claim is not None  # noqa: S101 - one side or the other
                item.kind, item.external_id = ReconItem.Kind.MISSING, str(claim.encounter_id)
                item.expected = claim.insurance_fund + claim.personal_account
                item.detail = "settled here, not in the insurer's list"
            items.append(item)
        detail_total = sum(row.medfee_sumamt for row in rows.values())
        if totals.count != len(rows) or totals.medfee_sumamt != detail_total:
            items.append(
                ReconItem(
                    batch=batch,
                    position=0,
                    kind=ReconItem.Kind.PROBLEM,
                    reference="3201",
                    amount=totals.medfee_sumamt,
                    expected=detail_total,
                    detail=f"totals say {totals.count} settlements, the detail has {len(rows)}",
                )
            )
        ReconItem.objects.bulk_create(items)
        ReconBatch.objects.filter(pk=batch.pk).update(progress_total=len(items))
        batch.refresh_from_db()
        _finish(batch)
    except Exception as error:
        ReconBatch.objects.filter(pk=batch.pk).update(
            status=ReconBatch.Status.FAILED,
            error=f"{type(error).__name__}: {error}"[:2000],
            finished_at=timezone.now(),
        )
        raise
    batch.refresh_from_db()
    return batch


# --- the ledger's own checks ------------------------------------------------------------------


def ledger_check_queue(*, actor: str) -> tuple[ReconBatch, bool]:
    """Queue a run of ``verify_ledger``'s checks for a worker (they read the whole ledger, too
    long for a request); ``False`` and that batch when one is already waiting or running."""
    waiting = (
        ReconBatch.objects.filter(
            source=ReconBatch.Source.LEDGER,
            status__in=[ReconBatch.Status.QUEUED, ReconBatch.Status.RUNNING],
        )
        .order_by("-created_at")
        .first()
    )
    if waiting is not None:
        return waiting, False
    try:
        with transaction.atomic():
            batch = _ledger_batch(actor)
            audit_record(actor=actor, action="recon.ledger_check", obj=batch, changes={})
            transaction.on_commit(lambda: _enqueue(batch.pk), robust=True)
    except IntegrityError:  # asked at the same moment by someone else: follow theirs
        return ledger_check_queue(actor=actor)
    return batch, True


def ledger_check_batch(*, actor: str = "system:nightly") -> ReconBatch:
    """Run ``verify_ledger``'s checks here and now (the nightly task, on a worker); if a run
    is already queued or under way, that one stands for it."""
    try:
        with transaction.atomic():
            batch = _ledger_batch(actor)
    except IntegrityError:
        under_way = ReconBatch.objects.filter(
            source=ReconBatch.Source.LEDGER,
            status__in=[ReconBatch.Status.QUEUED, ReconBatch.Status.RUNNING],
        ).first()
        if under_way is None:  # it ended meanwhile
            return ledger_check_batch(actor=actor)
        return batch_run(under_way.pk)  # runs it if it is still queued
    return batch_run(batch.pk)


def _ledger_batch(actor: str) -> ReconBatch:
    now = timezone.now()
    return ReconBatch.objects.create(
        source=ReconBatch.Source.LEDGER,
        fingerprint=now.isoformat(),
        period_start=timezone.localdate(now),
        period_end=timezone.localdate(now),
        created_by=actor,
    )


def _run_ledger_check(batch: ReconBatch, mine: QuerySet[ReconBatch]) -> None:
    """Keep each problem ``verify_ledger`` finds as an item, and the transactions it checked."""
    from ledger.verification import verify_ledger

    report = verify_ledger()
    with transaction.atomic():
        if not mine.select_for_update().exists():  # another worker took the batch over
            raise _LeaseLost
        ReconItem.objects.bulk_create(
            ReconItem(
                batch=batch,
                position=position,
                kind=ReconItem.Kind.PROBLEM,
                reference="verify_ledger",
                detail=problem[:500],
            )
            for position, problem in enumerate(report.problems, start=1)
        )
        mine.update(progress_total=report.transactions)
        batch.progress_total = report.transactions
        _finish(batch)
