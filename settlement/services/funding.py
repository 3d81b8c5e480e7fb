"""How a settlement's self-pay is paid, and the postings that carry it out.

The self-pay is drawn in a fixed order: the paid deposit first, then the credit line (the
stay's line, whose hold is captured for what it covers and the rest released, or a line chosen
now), then a payment channel at the window. What is left of the deposit goes back through the
channels it came in by. A ``FundingPlan`` says all of it, computed once and handed to the cover
check and the postings.

When a claim deferred at settlement settles later, a ``ShareReturn`` says where the insurer's
share goes: off the credit draw and the bank receivable while the patient still owes the bank,
the rest owed back to the patient as a refund.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID

from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.models import CreditLine, FamilyLink
from accounts.selectors import Funding, funding_line_for
from accounts.services.credit_lines import (
    CreditHold,
    CreditRoom,
    credit_draw,
    credit_hold_release,
    credit_restore,
    credit_room,
)
from core.money import fen_to_yuan
from ledger import services as ledger

from ..exceptions import SelfPayNotCovered
from ..models import (
    Channel,
    CreditMovement,
    Deposit,
    Encounter,
    Receivable,
    Refund,
    Settlement,
)
from ..selectors import deposit_paid
from . import house
from .notices import refund_ready_notice
from .outbox import event_record
from .repayments import unfreeze_if_nothing_overdue

# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FundingPlan:
    """Who pays the self-pay (fen): the deposit, then the credit line, the rest by channel."""

    self_pay: int
    deposit_held: int  # what the deposit holds before the settlement
    from_deposit: int
    from_credit: int
    line: CreditLine | None  # the stay's line, else one chosen now; None when none has room
    link: FamilyLink | None  # the family link the line is used through: its cap applies
    hold: CreditHold | None  # the stay's reservation on its line (and on the link's cap)
    held: int  # what that reservation keeps on the line now (0 once it is not pending)
    locked: bool  # made under the line's lock, in the settlement's transaction
    line_chosen_now: bool  # the line was chosen at settlement, not held at admission
    channel: str | None  # the payment channel offered at the window, if any

    @property
    def from_channel(self) -> int:
        return self.self_pay - self.from_deposit - self.from_credit

    @property
    def drawing_line(self) -> CreditLine | None:
        """The line drawn on, when credit pays anything."""
        return self.line if self.from_credit else None

    @property
    def deposit_left(self) -> int:
        """What is left of the deposit once it paid its part: refunded."""
        return self.deposit_held - self.from_deposit


def funding_plan(
    encounter: Encounter,
    self_pay: int,
    channel: str | None,
    *,
    lock_line: bool = False,
    deposit_held: int | None = None,
) -> FundingPlan:
    """How ``self_pay`` is paid for the encounter.

    With ``lock_line`` (inside the settlement's transaction, the encounter locked) the line is
    locked, and read again, before its room is read: settlements drawing on one (family) line
    queue there, and each plans on what the others left. A line chosen now that has nothing
    left once locked is not used. ``deposit_held``, when the caller read it once the encounter
    was ``settling`` (no deposit is taken then), saves reading it again.
    """
    if deposit_held is None:
        deposit_held = deposit_paid(encounter)  # read, never made: a waived deposit has none
    from_deposit = min(deposit_held, self_pay)
    rest = self_pay - from_deposit
    link = encounter.funding_link
    hold = (
        CreditHold(line_hold=encounter.line_hold_id, cap_hold=encounter.cap_hold_id)
        if encounter.line_hold_id
        else None
    )
    line = _line_row(encounter.funding_line_id, lock=lock_line)
    chosen = _line_with_room(encounter, rest) if rest and line is None else None
    if chosen is not None:
        line, link = chosen.line, chosen.via_link
        if lock_line:
            line = _line_row(line.pk, lock=True)
    room = credit_room(line, link, hold, need=rest) if rest and line is not None else CreditRoom(0)
    if chosen is not None and room.available == 0:
        line, link, chosen = None, None, None
    return FundingPlan(
        self_pay=self_pay,
        deposit_held=deposit_held,
        from_deposit=from_deposit,
        from_credit=min(rest, room.available),
        line=line,
        link=link,
        hold=hold,
        held=room.held,
        locked=lock_line,
        line_chosen_now=chosen is not None,
        channel=channel,
    )


def _line_row(line_id: UUID | None, *, lock: bool) -> CreditLine | None:
    """The line as it is now (locked, with its bank, if ``lock``: for the settlement, which
    draws on it). Read by itself, not joined to the encounter's row: a join of that many tables
    takes the database longer to plan than this read and the encounter's take together. Its
    capacity account is read when its room is (a stay whose hold covers the bill never is)."""
    if line_id is None:
        return None
    if lock:
        lines = CreditLine.objects.select_related("partner").select_for_update(of=("self",))
        return lines.get(pk=line_id)
    return CreditLine.objects.get(pk=line_id)


def _line_with_room(encounter: Encounter, amount: int) -> Funding | None:
    """A line with room for all of ``amount``, else one with some room (the rest by channel)."""
    return funding_line_for(person=encounter.person, amount=amount) or funding_line_for(
        person=encounter.person, amount=1
    )


def cover_check(plan: FundingPlan) -> None:
    """Refuse a plan that leaves self-pay to a payment channel when none was offered."""
    uncovered = plan.from_channel
    if uncovered and not plan.channel:
        raise SelfPayNotCovered(
            gettext_lazy(
                "%(amount)s yuan of self-pay is covered by neither deposit nor credit:"
                " settle again with a payment channel"
            ),
            field="channel",
            params={"amount": fen_to_yuan(uncovered)},
        )


def funded_by(encounter: Encounter, plan: FundingPlan) -> str:
    """What funded the settlement, for the receipt and the API: the first source that paid,
    else (nothing to pay) the one the stay was set up with."""
    if plan.from_credit:
        return "credit"
    if plan.from_deposit:
        return "deposit"
    if plan.from_channel:
        return "channel"
    if encounter.deposits.exists():
        return "deposit"
    return "credit" if plan.line else "channel"


# --- carrying it out --------------------------------------------------------------------------


def settlement_post(
    encounter: Encounter, plan: FundingPlan, *, total: int, insurer_pays: int, key: str
) -> date | None:
    """Post the settlement: the bill off the patient's receivable onto the insurer and each
    source of the plan, the credit draw, the stay's hold released where unused, the leftover
    deposit refunded. Returns the credit draw's due date, if credit paid."""
    if total:
        _bill_split_post(encounter, plan, total=total, insurer_pays=insurer_pays, key=key)
    due_date = None
    line = plan.drawing_line
    if line is not None:
        if not plan.locked:  # the draw trusts the line and its hold as the plan read them
            raise ValueError("a settlement posts a plan made under its line's lock")
        credit_draw(
            key=key,
            line=line,
            link=plan.link,
            amount=plan.from_credit,
            hold=None if plan.line_chosen_now else plan.hold,
            held=plan.held,
            reference=f"encounter:{encounter.pk}",
        )
        due_date = credit_draw_record(encounter, line, plan.from_credit)
    if plan.hold is not None and (not plan.from_credit or plan.line_chosen_now):
        credit_hold_release(key=f"{key}:release", hold=plan.hold)
    leftover_deposit_refund(encounter, plan.deposit_left, key)
    return due_date


def _bill_split_post(
    encounter: Encounter, plan: FundingPlan, *, total: int, insurer_pays: int, key: str
) -> None:
    institution = encounter.institution
    legs = [ledger.Leg.credit(house.patient_receivable(encounter), total)]
    if insurer_pays:
        legs.append(ledger.Leg.debit(house.insurer_receivable(institution), insurer_pays))
    if plan.from_deposit:
        legs.append(ledger.Leg.debit(house.deposit_held(encounter), plan.from_deposit))
    if plan.drawing_line is not None:
        legs.append(
            ledger.Leg.debit(
                house.bank_receivable(institution, plan.drawing_line.partner), plan.from_credit
            )
        )
    if plan.from_channel:
        legs.append(
            ledger.Leg.debit(house.clearing(institution, str(plan.channel)), plan.from_channel)
        )
    ledger.transaction_post(
        key=key, legs=legs, reference=f"encounter:{encounter.pk}", description="settlement"
    )


def credit_draw_record(encounter: Encounter, line: CreditLine, amount: int) -> date:
    """Record a draw the bank now owes the hospital for (the receivable, its movement, the
    event to the bank); returns its due date, after the bank's grace period."""
    due_date = timezone.localdate() + timedelta(days=line.partner.grace_days)
    receivable = Receivable.objects.create(
        reference=f"DR{encounter.pk.hex[:12].upper()}",
        partner=line.partner,
        credit_line=line,
        encounter=encounter,
        amount=amount,
        outstanding=amount,
        due_date=due_date,
    )
    CreditMovement.objects.create(
        reference=receivable.reference,
        partner=line.partner,
        institution_id=encounter.institution_id,
        receivable=receivable,
        kind=CreditMovement.Kind.DRAW,
        amount=amount,
        business_date=timezone.localdate(),
    )
    event_record(
        partner=line.partner,
        type="credit.drawn",
        data={
            "receivable": str(receivable.pk),
            "reference": receivable.reference,
            "credit_line": str(line.pk),
            "encounter": str(encounter.pk),
            "amount": fen_to_yuan(amount),
            "due_date": due_date.isoformat(),
        },
    )
    return due_date


def leftover_deposit_refund(encounter: Encounter, left: int, key: str) -> None:
    """Send ``left`` of the deposit back through the channels it came in by, newest first."""
    if not left:
        return
    for deposit in Deposit.objects.filter(encounter=encounter).order_by("-paid_at", "-pk"):
        if not left:
            return
        amount = min(left, deposit.amount)
        ledger.transfer(
            key=f"{key}:refund:{deposit.pk}",
            debit=house.deposit_held(encounter),
            credit=house.clearing(encounter.institution, deposit.channel),
            amount=amount,
            reference=f"encounter:{encounter.pk}",
            description="deposit left over, refunded",
        )
        Refund.objects.create(
            encounter=encounter,
            amount=amount,
            channel=deposit.channel,
            reason=Refund.Reason.DEPOSIT_LEFTOVER,
            status=Refund.Status.PAID,
            paid_at=timezone.now(),
        )
        left -= amount


# --- the insurer's share, when a deferred claim settles ---------------------------------------


@dataclass(frozen=True)
class ShareReturn:
    """Where the insurer's share (fen) goes once it settles a claim the patient paid in full:
    off the credit draw (and the bank receivable) while the patient owes the bank, the rest
    owed back to the patient; and how much less each source of the settlement paid."""

    moved: int
    receivable: Receivable | None  # the stay's credit draw, locked
    off_credit: int
    to_refund: int
    refund_channel: str
    credit_back: int
    channel_back: int
    deposit_back: int


def share_return(encounter: Encounter, settlement: Settlement, moved: int) -> ShareReturn:
    """Plan the return of ``moved`` for a settlement (locked, as the stay's receivable is)."""
    receivable = Receivable.objects.select_for_update().filter(encounter=encounter).first()
    off_credit = 0
    if receivable is not None:
        off_credit = min(moved, settlement.paid_by_credit, receivable.outstanding)
    to_refund = moved - off_credit
    # What each source paid goes down by its part of the insurer's share, whatever happens to
    # the money (off the bank receivable, or owed back to a patient who already repaid).
    credit_back = min(moved, settlement.paid_by_credit)
    channel_back = min(moved - credit_back, settlement.paid_by_channel)
    return ShareReturn(
        moved=moved,
        receivable=receivable,
        off_credit=off_credit,
        to_refund=to_refund,
        refund_channel=(settlement.channel or _deposit_channel(encounter)) if to_refund else "",
        credit_back=credit_back,
        channel_back=channel_back,
        deposit_back=moved - credit_back - channel_back,
    )


def share_return_post(encounter: Encounter, plan: ShareReturn) -> None:
    """Post the return: the insurer receivable takes the share from the bank receivable (the
    draw restored on the line) and from refunds payable (a refund owed)."""
    key = f"encounter:{encounter.pk}:insurer-revert"
    if plan.moved:
        _share_move_post(encounter, plan, key)
    if plan.off_credit and plan.receivable is not None:
        _credit_draw_reduce(encounter, plan.receivable, plan.off_credit, key)
    if plan.to_refund:
        refund = Refund.objects.create(
            encounter=encounter,
            amount=plan.to_refund,
            channel=plan.refund_channel,
            reason=Refund.Reason.INSURANCE_REVERSAL,
            status=Refund.Status.OWED,
        )
        refund_ready_notice(refund, person=encounter.person)


def _share_move_post(encounter: Encounter, plan: ShareReturn, key: str) -> None:
    legs = [ledger.Leg.debit(house.insurer_receivable(encounter.institution), plan.moved)]
    if plan.off_credit and plan.receivable is not None:
        legs.append(
            ledger.Leg.credit(
                house.bank_receivable(encounter.institution, plan.receivable.partner),
                plan.off_credit,
            )
        )
    if plan.to_refund:
        legs.append(ledger.Leg.credit(house.refunds_payable(encounter.institution), plan.to_refund))
    ledger.transaction_post(
        key=key, legs=legs, reference=f"encounter:{encounter.pk}", description="insurer paid"
    )


def _credit_draw_reduce(
    encounter: Encounter, receivable: Receivable, amount: int, key: str
) -> None:
    """Take ``amount`` off the stay's draw: capacity back on the line, the receivable down,
    the movement recorded and the bank told."""
    credit_restore(
        key=key,
        line=receivable.credit_line,
        link=encounter.funding_link,
        amount=amount,
        reference=f"encounter:{encounter.pk}",
    )
    receivable.outstanding -= amount
    receivable.status = (
        Receivable.Status.REPAID if receivable.outstanding == 0 else receivable.status
    )
    receivable.updated_at = timezone.now()
    receivable.save(update_fields=["outstanding", "status", "updated_at"])
    unfreeze_if_nothing_overdue(receivable.credit_line)
    CreditMovement.objects.create(
        reference=f"RV{encounter.pk.hex[:12].upper()}",
        partner=receivable.partner,
        institution_id=encounter.institution_id,
        receivable=receivable,
        kind=CreditMovement.Kind.REVERSAL,
        amount=-amount,
        business_date=timezone.localdate(),
    )
    event_record(
        partner=receivable.partner,
        type="credit.reversed",
        data={
            "receivable": str(receivable.pk),
            "reference": f"RV{encounter.pk.hex[:12].upper()}",
            "encounter": str(encounter.pk),
            "amount": fen_to_yuan(amount),
            "outstanding": fen_to_yuan(receivable.outstanding),
        },
    )


def _deposit_channel(encounter: Encounter) -> str:
    deposit = Deposit.objects.filter(encounter=encounter).order_by("-paid_at").first()
    return deposit.channel if deposit else Channel.CASH
