"""Admission, deposits and charges."""

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.exceptions import CreditLineStateError
from accounts.models import CreditLine, Department, Person
from accounts.selectors import Funding, funding_line_for
from accounts.services.audit import audit_record
from accounts.services.credit_lines import CreditHold, credit_hold_create
from accounts.services.persons import person_seen
from ledger import services as ledger
from ledger.exceptions import IdempotencyConflict, LimitExceeded
from ledger.ids import uuid7

from ..exceptions import SettlementInputError
from ..models import Channel, Charge, Deposit, DiagnosisDeposit, Encounter
from ..rules import bill_change_refusal, reversal_refusal
from . import house

# A waived deposit stays reserved on the line this long at most; a longer stay is drawn at
# settlement against whatever capacity the line then has.
HOLD_DAYS = 180
MAX_ITEMS = 500
MAX_CHARGE = 10**11  # ¥1,000,000,000 in fen
# How many times an admission chooses a line again after the one it chose filled up while it
# waited for that line's lock; each try moves on to a line that still has room.
FUNDING_TRIES = 4


def deposit_for(*, department: Department, kind: str, diagnosis_code: str) -> int:
    """The inpatient deposit: the diagnosis's average personal payment, else the department's
    default. Outpatient visits take none."""
    if kind != Encounter.Kind.INPATIENT:
        return 0
    if diagnosis_code:
        row = DiagnosisDeposit.objects.filter(
            institution_id=department.institution_id, diagnosis_code=diagnosis_code
        ).first()
        if row is not None:
            return row.amount
    return department.default_deposit


@transaction.atomic(durable=True)
def encounter_admit(
    *,
    actor: str,
    person: Person,
    department: Department,
    kind: str,
    diagnosis_code: str = "",
    key: str | None = None,
) -> Encounter:
    """Open an encounter. With a usable credit line (own, or a family payer's) the inpatient
    deposit is waived and held on that line instead.

    With the caller's ``key``, an admission sent again returns the encounter the first one
    opened (the same patient, department and kind), and opens no second one.
    """
    if kind not in Encounter.Kind.values:
        raise SettlementInputError(_("kind must be inpatient or outpatient"), field="kind")
    diagnosis_code = (diagnosis_code or "").strip().upper()
    if key is not None:
        earlier = Encounter.objects.filter(admission_key=key).first()
        if earlier is not None:
            return _admitted_before(earlier, person, department, kind)
    required = deposit_for(department=department, kind=kind, diagnosis_code=diagnosis_code)
    try:
        with transaction.atomic():  # a savepoint: the same key admitted concurrently
            encounter = Encounter.objects.create(
                institution_id=department.institution_id,
                department=department,
                person=person,
                kind=kind,
                diagnosis_code=diagnosis_code,
                deposit_required=required,
                admission_key=key,
            )
    except IntegrityError:
        earlier = Encounter.objects.get(admission_key=key)
        return _admitted_before(earlier, person, department, kind)
    if required:
        held = _hold_deposit_on_a_line(encounter, person, required)
        if held is not None:
            funding, hold = held
            encounter.deposit_waived = True
            encounter.funding_line = funding.line
            encounter.funding_link = funding.via_link
            encounter.line_hold_id, encounter.cap_hold_id = hold.line_hold, hold.cap_hold
            encounter.save()
    person_seen(person=person, institution=department.institution)
    audit_record(
        actor=actor,
        action="encounter.admit",
        obj=encounter,
        changes={
            "person": person.pk,
            "kind": kind,
            "department": department.pk,
            "diagnosis_code": diagnosis_code,
            "deposit_required": required,
            "deposit_waived": encounter.deposit_waived,
            "funding_line": str(encounter.funding_line_id or ""),
        },
    )
    return encounter


def _admitted_before(
    earlier: Encounter, person: Person, department: Department, kind: str
) -> Encounter:
    if (earlier.person_id, earlier.department_id, earlier.kind) != (
        person.pk,
        department.pk,
        kind,
    ):
        raise IdempotencyConflict(str(earlier.admission_key))
    return earlier


def _hold_deposit_on_a_line(
    encounter: Encounter, person: Person, required: int
) -> tuple[Funding, CreditHold] | None:
    """Hold the deposit on the line that will carry the stay, or return ``None`` when no line
    has room (the deposit is then paid at the window).

    The line is chosen again under its row lock, so that admissions racing for one (family)
    line each decide on what the others left: the one that finds the line full pays its
    deposit instead, and no limit error reaches the desk.
    """
    for _attempt in range(FUNDING_TRIES):
        chosen = funding_line_for(person=person, amount=required)
        if chosen is None:
            return None
        CreditLine.objects.select_for_update().get(pk=chosen.line.pk)
        funding = funding_line_for(person=person, amount=required)
        if funding is None:
            return None
        if funding.line.pk != chosen.line.pk:
            continue  # the chosen line filled up while this admission waited: lock the next
        try:
            # A savepoint: a hold refused by the ledger (the link's cap raced too) leaves nothing.
            with transaction.atomic():
                hold = credit_hold_create(
                    key=f"encounter:{encounter.pk}:admit",
                    line=funding.line,
                    link=funding.via_link,
                    amount=required,
                    expires_at=timezone.now() + timedelta(days=HOLD_DAYS),
                )
        except (LimitExceeded, CreditLineStateError):
            continue
        return funding, hold
    return None


def lock_open_encounter(encounter_id: UUID) -> Encounter:
    encounter = (
        Encounter.objects.select_for_update(of=("self",))
        .select_related("institution", "person")
        .get(pk=encounter_id)
    )
    refusal = bill_change_refusal(encounter)
    if refusal is not None:
        raise refusal
    return encounter


@transaction.atomic(durable=True)
def deposit_pay(*, actor: str, encounter_id: UUID, amount: int, channel: str, key: str) -> Deposit:
    """Take a deposit through a channel; it is held as a liability until settlement.

    ``key`` is the caller's idempotency key (the API's Idempotency-Key, a form's token): the
    same key again returns the first deposit and takes nothing more.
    """
    if channel not in Channel.values:
        raise SettlementInputError(_("unknown payment channel"), field="channel")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_CHARGE:
        raise SettlementInputError(_("the deposit must be more than zero"), field="amount")
    caller = _caller_key(key)
    encounter = lock_open_encounter(encounter_id)
    txn = ledger.transfer(
        key=f"encounter:{encounter.pk}:deposit:{caller}",
        debit=house.clearing(encounter.institution, channel),
        credit=house.deposit_held(encounter),
        amount=amount,
        reference=f"encounter:{encounter.pk}",
        description=f"deposit by {channel}",
    )
    earlier = Deposit.objects.filter(transaction_id=txn.pk).first()
    if earlier is not None:  # the ledger replayed the transfer: this deposit was taken
        return earlier
    deposit = Deposit.objects.create(
        encounter=encounter, amount=amount, channel=channel, transaction_id=txn.pk
    )
    audit_record(
        actor=actor,
        action="encounter.deposit",
        obj=encounter,
        changes={"amount": amount, "channel": channel},
    )
    return deposit


def _caller_key(key: str) -> str:
    """The caller's key as a fixed-length part of a ledger key (those hold 200 characters)."""
    if not key or len(key) > 400:
        raise SettlementInputError(_("an idempotency key of 1 to 400 characters is needed"))
    return hashlib.sha256(key.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class ChargeItem:
    code: str
    name: str
    category: str
    insurance_class: str
    quantity: Decimal
    unit_price: int
    service_date: date


def _amount(item: ChargeItem) -> int:
    return int((item.quantity * item.unit_price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _check_items(items: list[ChargeItem], encounter: Encounter) -> None:
    if not 1 <= len(items) <= MAX_ITEMS:
        raise SettlementInputError(
            _("post 1 to %(max)s charge lines"), field="items", params={"max": MAX_ITEMS}
        )
    today = timezone.localdate()
    admitted = timezone.localdate(encounter.admitted_at)
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if item.insurance_class not in Charge.InsuranceClass.values:
            raise SettlementInputError(
                _("insurance_class is A, B or C"), field=where, item_field="insurance_class"
            )
        if item.quantity <= 0 or item.quantity.as_tuple().exponent < -3:  # type: ignore[operator]
            raise SettlementInputError(
                _("quantity is positive, at most 3 decimals"), field=where, item_field="quantity"
            )
        if not 0 <= item.unit_price <= MAX_CHARGE or not 0 <= _amount(item) <= MAX_CHARGE:
            raise SettlementInputError(
                _("unit_price is out of range"), field=where, item_field="unit_price"
            )
        if not admitted <= item.service_date <= today:
            raise SettlementInputError(
                _("service_date must be between admission and today"),
                field=where,
                item_field="service_date",
            )
        if not item.code.strip() or not item.name.strip() or not item.category.strip():
            raise SettlementInputError(_("code, name and category are required"), field=where)


@transaction.atomic(durable=True)
def charges_post(
    *, actor: str, encounter_id: UUID, items: list[ChargeItem], key: str
) -> list[Charge]:
    """Post a batch of charge lines: the patient owes them, revenue by category earns them.

    ``key`` is the caller's idempotency key: the same batch again with it returns the lines
    first posted and posts nothing.
    """
    caller = _caller_key(key)
    encounter = lock_open_encounter(encounter_id)
    _check_items(items, encounter)
    amounts = [_amount(item) for item in items]
    total = sum(amounts)
    by_category: dict[str, int] = {}
    for item, amount in zip(items, amounts, strict=True):
        by_category[item.category] = by_category.get(item.category, 0) + amount
    ledger_key = f"encounter:{encounter.pk}:charges:{caller}"
    if total:
        legs = [ledger.Leg.debit(house.patient_receivable(encounter), total)]
        legs += [
            ledger.Leg.credit(house.revenue(encounter.institution, category), amount)
            for category, amount in sorted(by_category.items())
            if amount
        ]
        txn_id = ledger.transaction_post(
            key=ledger_key, legs=legs, reference=f"encounter:{encounter.pk}", description="charges"
        ).pk
    else:  # lines of no amount post nothing; the key still names them
        txn_id = uuid5(NAMESPACE_URL, ledger_key)
    earlier = list(Charge.objects.filter(transaction_id=txn_id).order_by("pk"))
    if earlier:  # sent again with its key: these lines were posted
        return earlier
    charges = Charge.objects.bulk_create(
        Charge(
            encounter=encounter,
            code=item.code.strip(),
            name=item.name.strip(),
            category=item.category.strip(),
            insurance_class=item.insurance_class,
            quantity=item.quantity,
            unit_price=item.unit_price,
            amount=amount,
            service_date=item.service_date,
            transaction_id=txn_id,
        )
        for item, amount in zip(items, amounts, strict=True)
    )
    audit_record(
        actor=actor,
        action="encounter.charges",
        obj=encounter,
        changes={"lines": len(items), "total": total},
    )
    return charges


@transaction.atomic(durable=True)
def charge_reverse(*, actor: str, charge_id: int, reason: str) -> Charge:
    """冲红: a new negative line pointing at the wrong one; the wrong one stays as it was."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 200:
        raise SettlementInputError(_("a reason of 1 to 200 characters is needed"), field="reason")
    original = Charge.objects.get(pk=charge_id)
    encounter = lock_open_encounter(original.encounter_id)
    refusal = reversal_refusal(
        original, already_reversed=Charge.objects.filter(reverses=original).exists()
    )
    if refusal is not None:
        raise refusal
    txn_id = uuid7()
    if original.amount:
        txn_id = ledger.transfer(
            key=f"charge:{original.pk}:reverse",
            debit=house.revenue(encounter.institution, original.category),
            credit=house.patient_receivable(encounter),
            amount=original.amount,
            reference=f"encounter:{encounter.pk}",
            description=f"reversal of charge {original.pk}",
        ).pk
    reversal = Charge.objects.create(
        encounter=encounter,
        code=original.code,
        name=original.name,
        category=original.category,
        insurance_class=original.insurance_class,
        quantity=-original.quantity,
        unit_price=original.unit_price,
        amount=-original.amount,
        service_date=original.service_date,
        reverses=original,
        reason=reason,
        transaction_id=txn_id,
    )
    audit_record(
        actor=actor,
        action="charge.reverse",
        obj=encounter,
        changes={"charge": original.pk, "amount": original.amount, "reason": reason},
    )
    return reversal
