"""Reads for bills, settlements, claims, receivables and bank statements."""

import re
from datetime import date
from typing import Any

from django.db.models import Sum

from core.money import fen_to_yuan

from .models import Charge, CreditMovement, Encounter, Partner, Receivable, Settlement
from .services import house
from .services.encounters import bill_change_refusal, reversal_refusal


def encounter_out(encounter: Encounter) -> dict[str, Any]:
    paid = house.deposit_paid(encounter)
    line = encounter.funding_line
    return {
        "id": str(encounter.pk),
        "person": encounter.person_id,
        "kind": encounter.kind,
        "department": encounter.department_id,
        "diagnosis_code": encounter.diagnosis_code,
        "status": encounter.status,
        "deposit": {
            "required": fen_to_yuan(encounter.deposit_required),
            "waived": encounter.deposit_waived,
            "paid": fen_to_yuan(paid),
        },
        "funding_line": None
        if line is None
        else {
            "id": str(line.pk),
            "holder": line.person_id,
            "via_family_link": encounter.funding_link_id,
        },
        "admitted_at": encounter.admitted_at.isoformat(),
    }


def settlement_out(settlement: Settlement) -> dict[str, Any]:
    """The settle answer as it stands now (after any reversal to the insurer)."""
    encounter = settlement.encounter
    return {
        "status": encounter.status,
        "total": fen_to_yuan(settlement.total),
        "insurance_fund": fen_to_yuan(settlement.insurance_fund),
        "personal_account": fen_to_yuan(settlement.personal_account),
        "self_pay": fen_to_yuan(settlement.self_pay),
        "funded_by": settlement.funded_by,
        "paid_by": {
            "deposit": fen_to_yuan(settlement.paid_by_deposit),
            "credit": fen_to_yuan(settlement.paid_by_credit),
            "channel": fen_to_yuan(settlement.paid_by_channel),
        },
        "due_date": settlement.due_date.isoformat() if settlement.due_date else None,
        "receipt_no": settlement.receipt_no,
    }


def charge_out(charge: Charge) -> dict[str, Any]:
    return {
        "id": charge.pk,
        "code": charge.code,
        "name": charge.name,
        "category": charge.category,
        "insurance_class": charge.insurance_class,
        "quantity": f"{charge.quantity.normalize():f}",  # 1000, never 1E+3
        "unit_price": fen_to_yuan(charge.unit_price),
        "amount": fen_to_yuan(charge.amount),
        "service_date": charge.service_date.isoformat(),
        "reverses": charge.reverses_id,
        "reason": charge.reason,
    }


def receivable_is_overdue(receivable: Receivable, today: date) -> bool:
    """Past its due date with something still owed, whether or not the beat task has run."""
    if receivable.status == Receivable.Status.OVERDUE:
        return True
    return receivable.outstanding > 0 and receivable.due_date < today


def encounter_bill(encounter: Encounter) -> dict[str, Any]:
    """Totals, the lines per day (每日清单), what is paid and outstanding, and the settlement."""
    charges = list(encounter.charges.order_by("service_date", "pk"))
    reversed_ids = {charge.reverses_id for charge in charges if charge.reverses_id}
    bill_open = bill_change_refusal(encounter) is None
    days: dict[date, list[Charge]] = {}
    for charge in charges:
        days.setdefault(charge.service_date, []).append(charge)
    total = sum(charge.amount for charge in charges)
    settlement = Settlement.objects.filter(encounter=encounter).first()
    if settlement is not None:
        paid = settlement.total
    else:
        paid = house.deposit_paid(encounter)
    return {
        "encounter": str(encounter.pk),
        "status": encounter.status,
        "total": fen_to_yuan(total),
        "days": [
            {
                "date": day.isoformat(),
                "items": [
                    {
                        **charge_out(charge),
                        "reversed": charge.pk in reversed_ids,
                        "reversible": bill_open
                        and reversal_refusal(charge, already_reversed=charge.pk in reversed_ids)
                        is None,
                    }
                    for charge in lines
                ],
                "subtotal": fen_to_yuan(sum(charge.amount for charge in lines)),
            }
            for day, lines in sorted(days.items())
        ],
        "paid": fen_to_yuan(paid),
        "outstanding": fen_to_yuan(max(total - paid, 0)),
        "settlement": settlement_out(settlement) if settlement is not None else None,
    }


# --- the bank's daily statement ---------------------------------------------------------------

_DAILY_REFERENCE = re.compile(r"ST([0-9]{4,})([0-9]{4})([0-9]{2})([0-9]{2})")


def daily_reference(partner_id: int, day: date) -> str:
    """The reference a bank quotes for its one net transfer of the day's draws and reversals."""
    return f"ST{partner_id:04d}{day:%Y%m%d}"


def daily_reference_day(reference: str, partner_id: int | None) -> date | None:
    """The day of this bank's daily reference (see :func:`daily_reference`), if it is one."""
    match = _DAILY_REFERENCE.fullmatch(reference)
    if match is None or int(match[1]) != partner_id:
        return None
    try:
        return date(int(match[2]), int(match[3]), int(match[4]))
    except ValueError:
        return None


def bank_statement(partner: Partner, day: date) -> dict[str, Any]:
    """The day's draws and reversals for one bank, and their net (what the bank pays)."""
    movements = CreditMovement.objects.filter(partner=partner, business_date=day).order_by(
        "created_at", "pk"
    )
    net = movements.aggregate(net=Sum("amount"))["net"] or 0
    return {
        "reference": daily_reference(partner.pk, day),
        "date": day.isoformat(),
        "net_amount": fen_to_yuan(int(net)),
        "items": [
            {"reference": m.reference, "kind": m.kind, "amount": fen_to_yuan(m.amount)}
            for m in movements
        ],
    }
