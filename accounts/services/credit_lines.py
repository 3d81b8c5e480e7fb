"""Credit lines on the ``credit`` ledger (see ``CreditLine`` for the accounts they use)."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy, pgettext_lazy

from accounts.exceptions import CreditLineStateError, InvalidInput
from accounts.models import CreditApplication, CreditLine, FamilyLink, Partner, Person
from accounts.selectors import link_is_live
from ledger import services as ledger
from ledger.models import Account, Hold, Ledger, Side
from ledger.selectors import account_balance

from .audit import audit_record
from .partners import tier_limit
from .persons import person_get_or_create

# A line's status as its errors say it: the code in English, a word in Chinese.
LINE_STATUS_WORDS: dict[str, object] = {
    CreditLine.Status.ACTIVE: pgettext_lazy("credit line status", "active"),
    CreditLine.Status.FROZEN: pgettext_lazy("credit line status", "frozen"),
    CreditLine.Status.CLOSED: pgettext_lazy("credit line status", "closed"),
}

MAX_LIMIT = 100_000_000  # ¥1,000,000 in fen: far above any tier


def partner_pool(partner: Partner) -> Account:
    """Where a bank's granted capacity comes from on the credit ledger (a busy house account)."""
    return ledger.account_create(
        code=f"credit:partner:{partner.pk}:granted",
        name=f"{partner.name}: credit granted",
        ledger=Ledger.CREDIT,
        normal_side=Side.DEBIT,
        balance_slots=16,
    )


def _line_accounts(partner: Partner, line_id: str) -> tuple[Account, Account]:
    capacity = ledger.account_create(
        code=f"credit:line:{line_id}:capacity",
        name=f"{partner.name} line capacity",
        ledger=Ledger.CREDIT,
        normal_side=Side.CREDIT,
        debits_must_not_exceed_credits=True,
    )
    drawn = ledger.account_create(
        code=f"credit:line:{line_id}:drawn",
        name=f"{partner.name} line drawn",
        ledger=Ledger.CREDIT,
        normal_side=Side.CREDIT,
    )
    return capacity, drawn


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            gettext_lazy("limit must be between 0 and %(max)s fen"),
            field="limit",
            params={"max": MAX_LIMIT},
        )
    return limit


def _check_score(score: int) -> int:
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10_000:
        raise InvalidInput(
            gettext_lazy("score must be a whole number from 0 to 10000"), field="score"
        )
    return score


@transaction.atomic(durable=True)
def credit_line_grant(
    *,
    actor: str,
    partner: Partner,
    id_number: str,
    name: str,
    score: int,
    score_provider: str,
    limit: int | None = None,
    expires_on: date | None | Literal["keep"] = "keep",
    phone: str | None = None,
) -> tuple[CreditLine, bool]:
    """Open a line for the person with this ID number, or update the open one; True if new.
    ``phone`` is the person's if they have none yet (see ``person_get_or_create``).

    Without ``limit`` the partner's tier table decides from ``score``. ``expires_on`` left
    out keeps an open line's expiry (none for a new line); ``None`` removes it. The person's
    enrolment waiting for this bank's answer, if any, is answered by the line.
    """
    score, limit = _grant_checks(partner, score, score_provider, limit, expires_on)
    person, _ = person_get_or_create(actor=actor, name=name, id_number=id_number, phone=phone)
    return _grant(actor, partner, person, score, score_provider, limit, expires_on)


@transaction.atomic(savepoint=False)
def credit_line_grant_to(
    *,
    actor: str,
    partner: Partner,
    person: Person,
    score: int,
    score_provider: str,
    limit: int | None = None,
) -> tuple[CreditLine, bool]:
    """As :func:`credit_line_grant`, for a known person: a step of the caller's transaction
    (an enrolment granted at once, a line re-tiered by the monthly score refresh)."""
    score, limit = _grant_checks(partner, score, score_provider, limit, "keep")
    return _grant(actor, partner, person, score, score_provider, limit, "keep")


def _grant_checks(
    partner: Partner,
    score: int,
    score_provider: str,
    limit: int | None,
    expires_on: date | None | Literal["keep"],
) -> tuple[int, int]:
    score = _check_score(score)
    if not score_provider or len(score_provider) > 64:
        raise InvalidInput(
            gettext_lazy("score_provider of 1 to 64 characters is needed"),
            field="score_provider",
        )
    limit = _check_limit(tier_limit(partner, score) if limit is None else limit)
    if isinstance(expires_on, date) and expires_on <= timezone.localdate():
        raise InvalidInput(gettext_lazy("expires_on must be in the future"), field="expires_on")
    return score, limit


def _grant(
    actor: str,
    partner: Partner,
    person: Person,
    score: int,
    score_provider: str,
    limit: int,
    expires_on: date | None | Literal["keep"],
) -> tuple[CreditLine, bool]:
    line = (
        CreditLine.objects.select_for_update()
        .filter(partner=partner, person=person)
        .exclude(status=CreditLine.Status.CLOSED)
        .first()
    )
    if line is not None:
        if expires_on == "keep":
            expires_on = line.expires_on
        changes = {"score": score, "score_provider": score_provider, "expires_on": expires_on}
        for field, value in changes.items():
            setattr(line, field, value)
        _set_limit(line, limit)
        line.updated_at = timezone.now()
        line.save()
        audit_record(
            actor=actor,
            action="credit_line.update",
            obj=line,
            changes={**changes, "limit": limit, "expires_on": str(expires_on or "")},
        )
        applications_answer(line=line, actor=actor)
        return line, False

    line = CreditLine(
        partner=partner,
        person=person,
        limit=0,
        score=score,
        score_provider=score_provider,
        expires_on=None if expires_on == "keep" else expires_on,
    )
    line.capacity_account, line.drawn_account = _line_accounts(partner, str(line.id))
    line.save(force_insert=True)
    _set_limit(line, limit)
    line.save()
    audit_record(
        actor=actor,
        action="credit_line.grant",
        obj=line,
        changes={
            "person": person.pk,
            "limit": limit,
            "score": score,
            "score_provider": score_provider,
            "expires_on": str(line.expires_on or ""),
        },
    )
    applications_answer(line=line, actor=actor)
    return line, True


def applications_answer(*, line: CreditLine, actor: str) -> int:
    """Mark the holder's enrolment waiting for this bank (``pending_bank``) granted with
    ``line``: the bank answers an application through its ordinary grant call. Inside the
    grant's transaction; how many were answered (0 or 1)."""
    waiting = list(
        CreditApplication.objects.select_for_update().filter(
            person_id=line.person_id,
            partner_id=line.partner_id,
            status=CreditApplication.Status.PENDING_BANK,
        )
    )
    for application in waiting:
        application.status = CreditApplication.Status.GRANTED
        application.credit_line = line
        application.decided_at = timezone.now()
        application.save(update_fields=["status", "credit_line", "decided_at"])
        audit_record(
            actor=actor,
            action="credit_application.granted",
            obj=application,
            changes={"credit_line": str(line.pk), "limit": line.limit},
        )
    return len(waiting)


def _set_limit(line: CreditLine, new_limit: int) -> None:
    """Move capacity between the bank's pool and the line so the line allows ``new_limit``.

    A cut below what is held and drawn takes all free capacity and records the rest as
    ``limit_shortfall``; nothing owed changes, and no new draw is possible until repayments
    cover the shortfall.
    """
    delta = new_limit - line.limit
    if delta == 0:
        return
    pool = partner_pool(line.partner)
    key = f"credit-line:{line.id}:limit:{line.limit}->{new_limit}:{timezone.now().isoformat()}"
    if delta > 0:
        absorbed = min(line.limit_shortfall, delta)
        line.limit_shortfall -= absorbed
        if delta - absorbed:
            ledger.transfer(
                key=key,
                debit=pool,
                credit=line.capacity_account,
                amount=delta - absorbed,
                reference=f"credit-line:{line.id}",
                description="limit granted",
            )
    else:
        free = max(account_balance(line.capacity_account).available or 0, 0)
        taken = min(free, -delta)
        if taken:
            ledger.transfer(
                key=key,
                debit=line.capacity_account,
                credit=pool,
                amount=taken,
                reference=f"credit-line:{line.id}",
                description="limit cut",
            )
        line.limit_shortfall += -delta - taken
    line.limit = new_limit


def credit_line_set_frozen(
    *,
    line: CreditLine,
    frozen: bool,
    reason: str,
    actor: str,
    changes: dict[str, object] | None = None,
) -> bool:
    """Freeze (or unfreeze) a line the caller holds locked; whether anything changed.

    The one place a line is frozen or thawed. The bank's reason outranks the others: the bank
    freezing a line frozen for overdue amounts makes it the bank's freeze, and repaying those
    amounts does not undo it, while the bank may unfreeze a line whatever froze it. A closed
    line stays closed.
    """
    before, before_reason = line.status, line.frozen_reason
    if line.status == CreditLine.Status.CLOSED:
        return False
    if frozen:
        if line.status == CreditLine.Status.FROZEN and (
            reason != CreditLine.FrozenReason.BANK or line.frozen_reason == reason
        ):
            return False
        line.status, line.frozen_reason = CreditLine.Status.FROZEN, reason
    else:
        if line.status != CreditLine.Status.FROZEN:
            return False
        if reason != CreditLine.FrozenReason.BANK and line.frozen_reason != reason:
            return False
        line.status, line.frozen_reason = CreditLine.Status.ACTIVE, CreditLine.FrozenReason.NONE
    line.updated_at = timezone.now()
    line.save(update_fields=["status", "frozen_reason", "updated_at"])
    audit_record(
        actor=actor,
        action="credit_line.freeze" if frozen else "credit_line.unfreeze",
        obj=line,
        changes={
            "status": [before, line.status],
            "reason": [before_reason, line.frozen_reason],
            **(changes or {}),
        },
    )
    return True


def _change_status(line_id: UUID, partner: Partner, actor: str, frozen: bool) -> CreditLine:
    line = CreditLine.objects.select_for_update().filter(pk=line_id, partner=partner).first()
    if line is None:
        raise CreditLine.DoesNotExist
    if line.status == CreditLine.Status.CLOSED:
        raise CreditLineStateError(gettext_lazy("the credit line is closed"))
    credit_line_set_frozen(
        line=line, frozen=frozen, reason=CreditLine.FrozenReason.BANK, actor=actor
    )
    return line


@transaction.atomic(durable=True)
def credit_line_freeze(*, actor: str, partner: Partner, line_id: UUID) -> CreditLine:
    """Stop new draws and holds; what is owed is unchanged. Freezing twice is harmless."""
    return _change_status(line_id, partner, actor, frozen=True)


@transaction.atomic(durable=True)
def credit_line_unfreeze(*, actor: str, partner: Partner, line_id: UUID) -> CreditLine:
    return _change_status(line_id, partner, actor, frozen=False)


@transaction.atomic(durable=True)
def credit_line_close(*, actor: str, partner: Partner, line_id: UUID) -> CreditLine:
    """Close the line: refused while amounts are held or when closed; what is drawn stays owed."""
    line = CreditLine.objects.select_for_update().filter(pk=line_id, partner=partner).first()
    if line is None:
        raise CreditLine.DoesNotExist
    if line.status == CreditLine.Status.CLOSED:
        raise CreditLineStateError(gettext_lazy("the credit line is already closed"))
    capacity = account_balance(line.capacity_account)
    if capacity.debits_pending:
        raise CreditLineStateError(
            gettext_lazy(
                "amounts are held on this line for a stay in progress; close it after settlement"
            )
        )
    free = capacity.available or 0
    if free > 0:
        ledger.transfer(
            key=f"credit-line:{line.id}:close",
            debit=line.capacity_account,
            credit=partner_pool(line.partner),
            amount=free,
            reference=f"credit-line:{line.id}",
            description="line closed",
        )
    before = line.status
    line.status, line.closed_at = CreditLine.Status.CLOSED, timezone.now()
    line.updated_at = line.closed_at
    line.save(update_fields=["status", "closed_at", "updated_at"])
    audit_record(
        actor=actor,
        action="credit_line.close",
        obj=line,
        changes={"status": [before, line.status], "capacity_returned": free},
    )
    return line


# --- drawing on a line (used by settlement) ---------------------------------------------------


@dataclass(frozen=True)
class CreditHold:
    """The holds reserving a stay's deposit on a line, and on the family link's cap if any."""

    line_hold: UUID
    cap_hold: UUID | None = None


def _cap_pool_and_account(link: FamilyLink | None) -> tuple[Account, Account] | None:
    if link is None or link.cap_account is None:
        return None
    from .family import family_cap_pool

    return family_cap_pool(), link.cap_account


def _check_usable(line: CreditLine) -> None:
    if line.status != CreditLine.Status.ACTIVE:
        raise CreditLineStateError(
            gettext_lazy("the credit line is %(status)s"),
            field="credit_line",
            params={"status": LINE_STATUS_WORDS.get(line.status, line.status)},
        )
    if line.expires_on is not None and line.expires_on < timezone.localdate():
        raise CreditLineStateError(gettext_lazy("the credit line has expired"), field="credit_line")


@transaction.atomic
def credit_hold_create(
    *,
    key: str,
    line: CreditLine,
    link: FamilyLink | None,
    amount: int,
    expires_at: datetime | None = None,
) -> CreditHold:
    """Reserve ``amount`` on the line (and the link's cap); ``LimitExceeded`` if it lacks room."""
    line = CreditLine.objects.select_for_update().get(pk=line.pk)
    _check_usable(line)
    line_hold = ledger.hold_create(
        key=f"{key}:line",
        debit=line.capacity_account,
        credit=line.drawn_account,
        amount=amount,
        expires_at=expires_at,
        reference=f"credit-line:{line.pk}",
    )
    cap = _cap_pool_and_account(link)
    cap_hold = None
    if cap is not None:
        pool, cap_account = cap
        cap_hold = ledger.hold_create(
            key=f"{key}:cap",
            debit=cap_account,
            credit=pool,
            amount=amount,
            expires_at=expires_at,
            reference=f"family-link:{link.pk if link else ''}",
        )
    return CreditHold(line_hold=line_hold.pk, cap_hold=cap_hold.pk if cap_hold else None)


@transaction.atomic
def credit_hold_release(*, key: str, hold: CreditHold) -> None:
    """Free a stay's reservation (nothing drawn)."""
    for suffix, hold_id in (("line", hold.line_hold), ("cap", hold.cap_hold)):
        if hold_id is not None and Hold.objects.get(pk=hold_id).status == Hold.Status.PENDING:
            ledger.hold_void(key=f"{key}:{suffix}", hold_id=hold_id)


@dataclass(frozen=True)
class CreditRoom:
    """What a line can still pay for a stay (fen), and of it what the stay's own hold keeps."""

    available: int
    held: int = 0  # the stay's pending hold on the line: a draw captures it first


def credit_room(
    line: CreditLine, link: FamilyLink | None, hold: CreditHold | None, *, need: int | None = None
) -> CreditRoom:
    """What the line can still pay for this stay: its free capacity plus the stay's own hold,
    within the link's cap; nothing when the line is not usable.

    With ``need``, the room is read only as far as ``need``: when the stay's own holds cover it
    (a stay's bill is drawn from its hold first), the line's free capacity is not read, and
    the room given is what they keep.
    """
    if line.status != CreditLine.Status.ACTIVE or (
        line.expires_on is not None and line.expires_on < timezone.localdate()
    ):
        return CreditRoom(available=0)

    # A revoked or lapsed link still carries what the stay already holds, nothing more.
    live = link is None or link_is_live(link, timezone.localdate())

    def pending(hold_id: UUID | None) -> int:
        if hold_id is None:
            return 0
        held = Hold.objects.get(pk=hold_id)
        return held.amount if held.status == Hold.Status.PENDING else 0

    def free(account: Account) -> int:
        return max(account_balance(account).available or 0, 0) if live else 0

    cap = _cap_pool_and_account(link)
    held = pending(hold.line_hold if hold else None)
    cap_held = pending(hold.cap_hold if hold else None) if cap is not None else held
    if need is not None and min(held, cap_held) >= need:
        return CreditRoom(available=min(held, cap_held), held=held)
    available = free(line.capacity_account) + held
    if cap is not None:
        available = min(available, free(cap[1]) + cap_held)
    return CreditRoom(available=available, held=held)


# No savepoint: a draw that fails fails the whole transaction it is part of (a settlement).
@transaction.atomic(savepoint=False)
def credit_draw(
    *,
    key: str,
    line: CreditLine,
    link: FamilyLink | None,
    amount: int,
    hold: CreditHold | None,
    held: int,
    reference: str,
) -> None:
    """Draw ``amount``: capture the stay's hold for what it covers (freeing the rest of it),
    then draw any excess directly. Raises ``LimitExceeded`` when the line lacks the room.

    For a settlement's postings (``settlement.services.funding.settlement_post``) only: ``line``
    is locked by the caller in this transaction (``select_for_update``, read after the lock),
    and ``held`` is what ``credit_room`` read under that lock as the stay's hold. The line's
    limit is still the ledger's to enforce; the lock is what keeps the plan true until here.
    """
    _check_usable(line)
    cap = _cap_pool_and_account(link)
    captured = min(amount, held) if hold is not None else 0
    if hold is not None and captured:
        ledger.hold_post(key=f"{key}:line", hold_id=hold.line_hold, amount=captured)
        if hold.cap_hold is not None:
            ledger.hold_post(key=f"{key}:cap", hold_id=hold.cap_hold, amount=captured)
    excess = amount - captured
    if excess and link is not None and not link_is_live(link, timezone.localdate()):
        raise CreditLineStateError(
            gettext_lazy("the family link has ended: it carries only what the stay already holds"),
            field="credit_line",
        )
    if excess:
        legs = [
            ledger.Leg.debit(line.capacity_account, excess),
            ledger.Leg.credit(line.drawn_account, excess),
        ]
        if cap is not None:
            legs += [ledger.Leg.debit(cap[1], excess), ledger.Leg.credit(cap[0], excess)]
        ledger.transaction_post(key=f"{key}:draw", legs=legs, reference=reference)


@transaction.atomic
def credit_restore(
    *, key: str, line: CreditLine, link: FamilyLink | None, amount: int, reference: str
) -> None:
    """Give back capacity for ``amount`` repaid (or moved to the insurer): drawn goes down, and
    capacity comes back except what a limit cut below usage still claims."""
    line = CreditLine.objects.select_for_update().get(pk=line.pk)
    legs = [
        ledger.Leg.debit(line.drawn_account, amount),
        ledger.Leg.credit(line.capacity_account, amount),
    ]
    cap = _cap_pool_and_account(link)
    if cap is not None:
        legs += [ledger.Leg.debit(cap[0], amount), ledger.Leg.credit(cap[1], amount)]
    # The restore, what a limit cut still claims of it and, on a closed line, the rest back to
    # the bank: one linked batch, all posted or none (the later ones use the room the restore
    # makes), under the keys each had when posted one by one.
    batch: list[ledger.TransferRequest | ledger.TransactionRequest] = [
        ledger.TransactionRequest(key=f"{key}:restore", legs=legs, reference=reference)
    ]
    absorbed = min(line.limit_shortfall, amount)
    if absorbed:
        batch.append(
            ledger.TransferRequest(
                key=f"{key}:shortfall",
                debit=line.capacity_account,
                credit=partner_pool(line.partner),
                amount=absorbed,
                reference=f"credit-line:{line.pk}",
                description="limit cut taken from a repayment",
            )
        )
    # A closed line keeps no capacity: what a late repayment frees goes back to the bank.
    freed = amount - absorbed if line.status == CreditLine.Status.CLOSED else 0
    if freed:
        batch.append(
            ledger.TransferRequest(
                key=f"{key}:closed",
                debit=line.capacity_account,
                credit=partner_pool(line.partner),
                amount=freed,
                reference=f"credit-line:{line.pk}",
                description="repaid on a closed line, returned to the bank",
            )
        )
    ledger.transfers_post(batch, linked=True)
    if absorbed:
        line.limit_shortfall -= absorbed
        line.save(update_fields=["limit_shortfall"])
