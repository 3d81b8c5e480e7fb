"""Reads for bills, settlements, claims, receivables and bank statements."""

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple
from uuid import UUID

from django.db import connections
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import CreditLine, Person
from core.money import fen_to_yuan
from ledger.models import Account
from ledger.selectors import account_balance

from .models import (
    Charge,
    CreditMovement,
    Encounter,
    InsuranceClaim,
    InsurerCall,
    Partner,
    Receivable,
    Settlement,
)
from .rules import bill_change_refusal, line_reversal_refusal


def deposit_code(encounter: Encounter) -> str:
    """The ledger code of an encounter's deposit-held account (made by ``services.house``)."""
    return f"money:enc:{encounter.pk}:deposit"


def deposit_paid(encounter: Encounter) -> int:
    """What the patient's deposit holds now (fen), read without creating the account: an
    encounter that took no deposit has none."""
    account = Account.objects.filter(code=deposit_code(encounter)).first()
    return max(account_balance(account).posted, 0) if account is not None else 0


def encounter_out(encounter: Encounter) -> dict[str, Any]:
    paid = deposit_paid(encounter)
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


def quantity_text(quantity: Decimal) -> str:
    """A charge line's quantity as the API writes it: plain decimal notation, no trailing
    zeros (``1000``, never ``1E+3``; ``1.5``, not ``1.500``)."""
    return f"{quantity.normalize():f}"


def charge_out(charge: Charge) -> dict[str, Any]:
    return {
        "id": charge.pk,
        "code": charge.code,
        "name": charge.name,
        "category": charge.category,
        "insurance_class": charge.insurance_class,
        "quantity": quantity_text(charge.quantity),
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


_ROWS_AT_ONCE = 250  # a bill's rows fetched at a time, fewer than the collector's 700

# A bill's line, read as one row: what ``charge_out`` says of a charge, in the order it says it.
_BILL_LINE = (
    "pk",
    "code",
    "name",
    "category",
    "insurance_class",
    "quantity",
    "unit_price",
    "amount",
    "service_date",
    "reverses_id",
    "reason",
    "is_reversed",  # annotated: read in the same statement as the line, so the two agree
)


class _YuanTexts(dict[int, str]):
    """Fen to yuan text, each amount written once per bill: a long stay repeats its prices."""

    def __missing__(self, fen: int) -> str:
        text = self[fen] = fen_to_yuan(fen)
        return text


class _QuantityTexts(dict[Decimal, str]):
    """:func:`quantity_text` of each quantity, written once per bill."""

    def __missing__(self, quantity: Decimal) -> str:
        text = self[quantity] = quantity_text(quantity)
        return text


class BillLine(NamedTuple):
    """A bill's line as the API writes it: :func:`charge_out`'s fields (amounts and quantity
    as text, the day as ISO text), then whether it was reversed and whether it can be now."""

    pk: int
    code: str
    name: str
    category: str
    insurance_class: str
    quantity: str
    unit_price: str
    amount: str
    service_date: str
    reverses: int | None
    reason: str
    reversed_: bool
    reversible: bool


# What a bill makes of each of its lines: the API's object (:func:`bill_item`), or for a page
# whatever it shows.
BillItem = Callable[[BillLine], Any]


def bill_item(line: BillLine) -> dict[str, Any]:
    """A bill's line as the API writes it: :func:`charge_out`'s fields, then the flags."""
    return {
        "id": line.pk,
        "code": line.code,
        "name": line.name,
        "category": line.category,
        "insurance_class": line.insurance_class,
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "amount": line.amount,
        "service_date": line.service_date,
        "reverses": line.reverses,
        "reason": line.reason,
        "reversed": line.reversed_,
        "reversible": line.reversible,
    }


def encounter_bill(
    encounter: Encounter,
    item: BillItem = bill_item,
    day_items: Callable[[Iterator[Any]], Any] = list,
) -> dict[str, Any]:
    """Totals, the lines per day (每日清单), what is paid and outstanding, and the settlement.

    The lines are read as plain rows in one query, ordered by day, each with whether it was
    reversed, and each day's ``items`` are what ``item`` makes of its lines (the API's
    objects unless a page asks otherwise), gathered by ``day_items`` (a list unless the
    caller writes them as it goes): a stay of thousands of lines is read without a model
    instance or a serializer per line.
    """
    # A reversal is on its line's encounter: asking only there lets PostgreSQL hash the stay's
    # reversals (1.5 ms for 3,000 lines) where it hashed the whole table's (29 ms at 180,000).
    charges = encounter.charges.annotate(
        is_reversed=Exists(Charge.objects.filter(reverses=OuterRef("pk"), encounter=encounter))
    )
    bill_open = bill_change_refusal(encounter) is None
    # The reversal rule asked once per kind of line (a reversal or not, reversed or not).
    reversible = {
        (is_reversal, already_reversed): bill_open
        and line_reversal_refusal(is_reversal=is_reversal, already_reversed=already_reversed)
        is None
        for is_reversal in (False, True)
        for already_reversed in (False, True)
    }
    yuan, quantities = _YuanTexts(), _QuantityTexts()
    days = []
    total = 0
    lines = charges.order_by("service_date", "pk").values_list(*_BILL_LINE)
    compiler = lines.query.get_compiler(lines.db)
    with connections[lines.db].cursor() as cursor:
        cursor.execute(*compiler.as_sql())
        # A block of rows at a time: a long stay's thousands of row tuples, all alive at once,
        # set the garbage collector off several times a request (and now and then a full
        # collection of the whole process, tens of milliseconds). Django's converters still
        # apply (SQLite hands back dates as text and decimals as numbers).
        blocks = iter(partial(cursor.fetchmany, _ROWS_AT_ONCE), [])
        rows = compiler.results_iter(results=blocks)

        def made(day_lines: Iterable[tuple[Any, ...]], date_text: str, sums: list[int]) -> Any:
            for line in day_lines:
                pk, code, name, cat, klass, qty, price, amount, _, reverses, reason = line[:11]
                already_reversed = bool(line[11])
                sums[0] += amount
                yield item(
                    BillLine(
                        pk,
                        code,
                        name,
                        cat,
                        klass,
                        quantities[qty],
                        yuan[price],
                        yuan[amount],
                        date_text,
                        reverses,
                        reason,
                        already_reversed,
                        reversible[reverses is not None, already_reversed],
                    )
                )

        for day, day_lines in groupby(rows, key=itemgetter(8)):
            date_text = day.isoformat()
            subtotal = [0]
            items = day_items(made(day_lines, date_text, subtotal))
            total += subtotal[0]
            days.append({"date": date_text, "items": items, "subtotal": fen_to_yuan(subtotal[0])})
    settlement = Settlement.objects.filter(encounter=encounter).first()
    if settlement is not None:
        paid = settlement.total
    else:
        paid = deposit_paid(encounter)
    return {
        "encounter": str(encounter.pk),
        "status": encounter.status,
        "total": fen_to_yuan(total),
        "days": days,
        "paid": fen_to_yuan(paid),
        "outstanding": fen_to_yuan(max(total - paid, 0)),
        "settlement": settlement_out(settlement) if settlement is not None else None,
    }


def patient_owed(person: Person) -> list[Receivable]:
    """What a patient owes: the open and overdue receivables of their own encounters and of
    those drawn on lines they hold (a family member's care they carry), soonest due first."""
    return list(
        Receivable.objects.filter(
            Q(encounter__person=person) | Q(credit_line__person=person),
            status__in=[Receivable.Status.OPEN, Receivable.Status.OVERDUE],
        )
        .select_related("partner", "encounter__person", "encounter__institution")
        .order_by("due_date", "created_at")
    )


@dataclass(frozen=True)
class LineOwed:
    """What is owed on one credit line (fen): in all, and on its nearest due date."""

    owed: int
    next_due: date
    next_due_amount: int


def owed_per_line(owed: list[Receivable]) -> dict[UUID, LineOwed]:
    """``patient_owed``'s receivables summed per credit line; lines with nothing left owed
    are absent. The nearest due date's amount is what falls due then, not all that is owed."""
    per_line: dict[UUID, list[Receivable]] = {}
    for receivable in owed:
        if receivable.outstanding > 0:
            per_line.setdefault(receivable.credit_line_id, []).append(receivable)
    summary = {}
    for line_id, receivables in per_line.items():
        next_due = min(r.due_date for r in receivables)
        summary[line_id] = LineOwed(
            owed=sum(r.outstanding for r in receivables),
            next_due=next_due,
            next_due_amount=sum(r.outstanding for r in receivables if r.due_date == next_due),
        )
    return summary


# --- a patient's own view ---------------------------------------------------------------------


def patient_encounters(person: Person) -> QuerySet[Encounter]:
    """The encounters a patient may read: their own, and another's that their own credit line
    carries (亲情付: held or drawn on it), whatever became of the family link since; newest
    first, with ``charges_total`` (fen) and the settlement, institution and person loaded.

    The patient's lines are read first and named by id: the two conditions are then each an
    index scan of the encounters (by person, by funding line), where a join to the lines
    under the OR read every encounter there is."""
    readable = Q(person=person)
    lines = list(CreditLine.objects.filter(person=person).values_list("pk", flat=True))
    if lines:
        readable |= Q(funding_line__in=lines)
    return (
        Encounter.objects.filter(readable)
        .select_related("person", "institution", "settlement")
        .annotate(charges_total=Coalesce(Sum("charges__amount"), 0))
        .order_by("-admitted_at", "-pk")
    )


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


# The insurer counts as down for the desk while its last answer, this recent, was none.
OUTAGE_WINDOW = timedelta(minutes=10)


def insurer_outage(*, where: Q | None = None) -> dict[str, Any]:
    """Whether to warn the desk: claims deferred while the insurer was down (those ``where``
    says: the desk's institution's), or its last answer (within ``OUTAGE_WINDOW``) was none."""
    deferred = InsuranceClaim.objects.filter(
        where or Q(), status=InsuranceClaim.Status.DEFERRED
    ).count()
    last = InsurerCall.objects.order_by("-started_at", "-pk").first()
    unreachable = (
        last is not None
        and last.outcome in (InsurerCall.Outcome.UNAVAILABLE, InsurerCall.Outcome.UNKNOWN)
        and (last.finished_at or last.started_at) >= timezone.now() - OUTAGE_WINDOW
    )
    return {"show": bool(deferred) or unreachable, "unreachable": unreachable, "deferred": deferred}
