"""Repayments reported by banks, and overdue receivables."""

import hashlib
import json
from datetime import date, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import CreditLine, Partner
from accounts.services.audit import audit_record
from accounts.services.credit_lines import credit_line_set_frozen, credit_restore
from core.money import fen_to_yuan

from ..exceptions import RepaymentConflict, SettlementInputError
from ..models import Receivable, Repayment
from .notices import overdue_notice
from .outbox import event_record


def _fingerprint(receivable_id: str, amount: int, paid_at: datetime) -> str:
    payload = json.dumps([receivable_id, amount, paid_at.isoformat()])
    return hashlib.sha256(payload.encode()).hexdigest()


def repayment_apply(
    *,
    partner: Partner,
    receivable_id: str,
    amount: int,
    bank_txn_id: str,
    paid_at: datetime,
) -> tuple[Repayment, bool]:
    """Apply a bank's repayment once per ``bank_txn_id``; True when applied now, False on replay.

    The same id with other content is a conflict; more than the outstanding amount is refused.
    """
    bank_txn_id = (bank_txn_id or "").strip()
    if not bank_txn_id or len(bank_txn_id) > 64:
        raise SettlementInputError(_("bank_txn_id of 1 to 64 characters"), field="bank_txn_id")
    fingerprint = _fingerprint(str(receivable_id), amount, paid_at)
    earlier = Repayment.objects.filter(partner=partner, bank_txn_id=bank_txn_id).first()
    if earlier is not None:
        return _replay(earlier, fingerprint), False
    try:
        return _apply(partner, receivable_id, amount, bank_txn_id, paid_at, fingerprint)
    except IntegrityError:  # the same bank_txn_id applied concurrently
        earlier = Repayment.objects.get(partner=partner, bank_txn_id=bank_txn_id)
        return _replay(earlier, fingerprint), False


def _replay(earlier: Repayment, fingerprint: str) -> Repayment:
    if earlier.fingerprint != fingerprint:
        raise RepaymentConflict(
            _("this bank_txn_id was already used for a different repayment"),
            field="bank_txn_id",
        )
    return earlier


@transaction.atomic(durable=True)
def _apply(
    partner: Partner,
    receivable_id: str,
    amount: int,
    bank_txn_id: str,
    paid_at: datetime,
    fingerprint: str,
) -> tuple[Repayment, bool]:
    receivable = (
        Receivable.objects.select_for_update(of=("self",))
        .select_related("credit_line", "encounter__funding_link")
        .get(pk=receivable_id, partner=partner)
    )
    # A concurrent call with the same bank_txn_id may have applied it while this one waited
    # for the lock: answer as a replay, before judging the amount against what is left.
    earlier = Repayment.objects.filter(partner=partner, bank_txn_id=bank_txn_id).first()
    if earlier is not None:
        return _replay(earlier, fingerprint), False
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise SettlementInputError(_("the amount must be more than zero"), field="amount")
    if amount > receivable.outstanding:
        raise SettlementInputError(
            _("the amount is more than the outstanding %(outstanding)s"),
            field="amount",
            params={"outstanding": fen_to_yuan(receivable.outstanding)},
        )
    repayment = Repayment.objects.create(
        partner=partner,
        receivable=receivable,
        amount=amount,
        bank_txn_id=bank_txn_id,
        paid_at=paid_at,
        fingerprint=fingerprint,
    )
    credit_restore(
        key=f"repayment:{partner.pk}:{bank_txn_id}",
        line=receivable.credit_line,
        link=receivable.encounter.funding_link,
        amount=amount,
        reference=f"receivable:{receivable.reference}",
    )
    receivable.outstanding -= amount
    if receivable.outstanding == 0:
        receivable.status = Receivable.Status.REPAID
    receivable.updated_at = timezone.now()
    receivable.save(update_fields=["outstanding", "status", "updated_at"])
    repayment.outstanding_after, repayment.status_after = receivable.outstanding, receivable.status
    repayment.save(update_fields=["outstanding_after", "status_after"])
    unfreeze_if_nothing_overdue(receivable.credit_line)
    event_record(
        partner=partner,
        type="repayment.applied",
        data={
            "receivable": str(receivable.pk),
            "bank_txn_id": bank_txn_id,
            "amount": fen_to_yuan(amount),
            "outstanding": fen_to_yuan(receivable.outstanding),
        },
    )
    audit_record(
        actor=f"partner:{partner.pk}",
        action="receivable.repay",
        obj=receivable,
        changes={"amount": amount, "bank_txn_id": bank_txn_id},
    )
    return repayment, True


def unfreeze_if_nothing_overdue(line: CreditLine) -> None:
    """Unfreeze a line frozen for overdue amounts once none is overdue any more."""
    line = CreditLine.objects.select_for_update().get(pk=line.pk)
    if line.frozen_reason != CreditLine.FrozenReason.OVERDUE:
        return
    if Receivable.objects.filter(credit_line=line, status=Receivable.Status.OVERDUE).exists():
        return
    credit_line_set_frozen(
        line=line,
        frozen=False,
        reason=CreditLine.FrozenReason.OVERDUE,
        actor="system:repayment",
        changes={"why": "overdue amounts repaid"},
    )


def receivables_mark_overdue(*, today: date | None = None) -> int:
    """Mark open receivables past their due date overdue, freeze their lines, tell the bank."""
    today = today or timezone.localdate()
    marked = 0
    due = Receivable.objects.filter(status=Receivable.Status.OPEN, due_date__lt=today)
    for receivable_id in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            receivable = (
                Receivable.objects.select_for_update(of=("self",))
                .select_related("partner", "credit_line__person")
                .get(pk=receivable_id)
            )
            if receivable.status != Receivable.Status.OPEN or receivable.outstanding == 0:
                continue
            receivable.status = Receivable.Status.OVERDUE
            receivable.updated_at = timezone.now()
            receivable.save(update_fields=["status", "updated_at"])
            line = CreditLine.objects.select_for_update().get(pk=receivable.credit_line_id)
            if line.status == CreditLine.Status.ACTIVE:
                credit_line_set_frozen(
                    line=line,
                    frozen=True,
                    reason=CreditLine.FrozenReason.OVERDUE,
                    actor="system:overdue",
                    changes={"receivable": receivable.reference},
                )
            event_record(
                partner=receivable.partner,
                type="receivable.overdue",
                data={
                    "receivable": str(receivable.pk),
                    "reference": receivable.reference,
                    "credit_line": str(line.pk),
                    "outstanding": fen_to_yuan(receivable.outstanding),
                    "due_date": receivable.due_date.isoformat(),
                },
            )
            overdue_notice(receivable)
            marked += 1
    return marked
