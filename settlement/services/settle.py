"""Settlement (结算) and the insurance fallback.

Settling runs in three steps so no database transaction stays open while the insurer is asked:

1. Lock the encounter, check it is open, mark it ``settling`` and take a short lease on its
   claim (a second settle of the same encounter now gets a 409).
2. Ask the insurer: resolve any earlier settle whose outcome is unknown (query, else reverse),
   pre-settle, check the self-pay is covered, settle. If the insurer cannot be reached the
   whole bill is self-pay and the claim is deferred.
3. Lock again and post everything in one transaction: the split to the insurer receivable, the
   self-pay from the deposit, then the credit line (the stay's hold captured for what it
   covers, the rest released), then a payment channel; the bank receivable and the patient's
   debt to the bank; the leftover deposit refunded; the receipt.

A failure after step 1 puts the encounter back to ``open``; what the insurer settled is kept on
the claim and reused by the next attempt, so the insurer never settles an encounter twice.

A settle can also stop where nothing puts it back: the database connection dies (PostgreSQL
restarts) after the insurer settled, or the process is killed. The encounter is left
``settling`` under a lease that lapses. ``settlements_recover`` (a beat task) takes such lapsed
leases over and finishes the settlement with what the insurer settled (asking by query when
only the settle's msgid was stored), or, when the insurer settled nothing or the self-pay needs
a payment channel (a person at the window), puts the encounter back to ``open``. It never sends
a settle itself.

Deferred claims are retried by ``claims_retry`` (a beat task, and the retry API). When the
insurer settles, its share moves off the patient: off the credit draw and the bank receivable
when credit paid, into a refund owed when the patient paid at the window. Each claim reverts
once: the revert happens under the claim's row lock and only from ``deferred``.
"""

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.models import CreditLine, FamilyLink
from accounts.selectors import funding_line_for
from accounts.services.audit import audit_record
from accounts.services.credit_lines import (
    CreditHold,
    credit_draw,
    credit_hold_release,
    credit_restore,
    credit_room,
)
from core.db import again_if_disconnected
from core.money import fen_to_yuan
from ledger import services as ledger
from ledger.selectors import account_balance

from ..exceptions import (
    AlreadySettled,
    EncounterStateError,
    SelfPayNotCovered,
    SettlementInputError,
)
from ..insurer import (
    SETTLE,
    InsurerOutcomeUnknown,
    InsurerRejected,
    InsurerUnavailable,
)
from ..insurer.client import FeeLine, InsurerClient, Split
from ..models import (
    Channel,
    Charge,
    CreditMovement,
    Deposit,
    Encounter,
    InsuranceClaim,
    Receivable,
    Refund,
    Settlement,
)
from . import house
from .encounters import status_word
from .outbox import event_record
from .receipts import receipt_issue
from .repayments import unfreeze_if_nothing_overdue

logger = logging.getLogger(__name__)

# Longer than any run of insurer calls one attempt makes (at most six, each bounded by the
# adapter's timeout), so a lease does not lapse while its holder is still talking.
LEASE = timedelta(minutes=5)
MAX_RETRY_DELAY = timedelta(hours=1)


@dataclass(frozen=True)
class InsurerAnswer:
    """What the insurer pays (fen). ``status``: settled, deferred (unreachable) or failed."""

    status: str
    medfee: int = 0
    fund: int = 0
    account: int = 0
    setl_id: str = ""
    error: str = ""


# --- the public calls -------------------------------------------------------------------------


def encounter_settle(
    *,
    actor: str,
    encounter_id: UUID,
    channel: str | None = None,
    client: InsurerClient | None = None,
) -> Settlement:
    """Settle an encounter once; see the module docstring for the steps."""
    if channel is not None and channel not in Channel.values:
        raise SettlementInputError(gettext_lazy("unknown payment channel"), field="channel")
    _begin(encounter_id)
    try:
        encounter = Encounter.objects.select_related("person", "institution").get(pk=encounter_id)
        claim = InsuranceClaim.objects.get(encounter=encounter)
        answer = _ask_insurer(
            client or InsurerClient(), encounter, claim, channel=channel, check_cover=True
        )
        return _finish(actor, encounter_id, answer, channel)
    except BaseException:
        _abort(encounter_id)
        raise


def claims_retry(*, now: datetime | None = None, client: InsurerClient | None = None) -> dict:
    """Retry every deferred claim that is due. Safe to run concurrently and repeatedly."""
    now = now or timezone.now()
    due = list(
        InsuranceClaim.objects.filter(status=InsuranceClaim.Status.DEFERRED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:200]
    )
    results: dict[str, int] = {}
    for claim_id in due:
        try:
            result = claim_retry(claim_id=claim_id, client=client)
        except Exception as error:  # one bad claim must not hold up the others
            _postpone(claim_id, f"{type(error).__name__}: {error}")
            result = "error"
        results[result] = results.get(result, 0) + 1
    return results


def _postpone(claim_id: int, error: str) -> None:
    claim = InsuranceClaim.objects.get(pk=claim_id)
    attempts = claim.attempts + 1
    InsuranceClaim.objects.filter(pk=claim_id).update(
        attempts=attempts,
        last_error=error[:2000],
        next_attempt_at=timezone.now() + _retry_delay(attempts),
        updated_at=timezone.now(),
    )


def _retry_delay(attempts: int) -> timedelta:
    return min(timedelta(seconds=30 * 2 ** min(attempts, 12)), MAX_RETRY_DELAY)


def claims_due_now() -> int:
    """Make every deferred claim due at once (the retry button); returns how many there are."""
    return InsuranceClaim.objects.filter(status=InsuranceClaim.Status.DEFERRED).update(
        next_attempt_at=timezone.now()
    )


def claim_retry(*, claim_id: int, client: InsurerClient | None = None) -> str:
    """Retry one deferred claim: ``reverted``, ``deferred``, ``failed`` or ``busy``."""
    now = timezone.now()
    leased = (
        InsuranceClaim.objects.filter(pk=claim_id, status=InsuranceClaim.Status.DEFERRED)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE)
    )
    if not leased:
        return "busy"
    try:
        claim = InsuranceClaim.objects.select_related("encounter__person").get(pk=claim_id)
        answer = _ask_insurer(
            client or InsurerClient(), claim.encounter, claim, channel=None, check_cover=False
        )
        if answer.status == "deferred":
            _postpone(claim_id, answer.error)
            return "deferred"
        if answer.status == "failed":
            InsuranceClaim.objects.filter(
                pk=claim_id, status=InsuranceClaim.Status.DEFERRED
            ).update(
                status=InsuranceClaim.Status.FAILED,
                attempts=claim.attempts + 1,
                last_error=answer.error[:2000],
                updated_at=timezone.now(),
            )
            return "failed"
        return "reverted" if _revert_to_insurer(claim_id, answer) else "busy"
    finally:
        InsuranceClaim.objects.filter(pk=claim_id).update(lease_until=None)


RECOVERY_ACTOR = "system:settle_recover"


def settlements_recover(
    *, now: datetime | None = None, client: InsurerClient | None = None
) -> dict[str, int]:
    """Finish or undo every settle whose lease lapsed with the encounter still ``settling``
    (its holder died); counts by outcome. Safe to run concurrently and repeatedly."""
    now = now or timezone.now()
    stalled = list(
        Encounter.objects.filter(status=Encounter.Status.SETTLING)
        .filter(Q(claim__lease_until__isnull=True) | Q(claim__lease_until__lt=now))
        .order_by("pk")
        .values_list("pk", flat=True)[:200]
    )
    results: dict[str, int] = {}
    for encounter_id in stalled:
        try:
            result = settlement_recover(encounter_id=encounter_id, now=now, client=client)
        except Exception:  # one bad settlement must not hold up the others
            logger.exception("recovering the settle of encounter %s failed", encounter_id)
            result = "error"
        results[result] = results.get(result, 0) + 1
    return results


def settlement_recover(
    *, encounter_id: UUID, now: datetime | None = None, client: InsurerClient | None = None
) -> str:
    """Take over one stalled settle: ``finished``, ``undone`` or ``busy`` (not stalled, or
    another process holds it)."""
    if not _take_lapsed_lease(encounter_id, now or timezone.now()):
        return "busy"
    try:
        encounter = Encounter.objects.select_related("person", "institution").get(pk=encounter_id)
        claim = InsuranceClaim.objects.get(encounter=encounter)
        answer = _recovered_answer(client or InsurerClient(), encounter, claim)
        if answer is not None:
            try:
                _finish(RECOVERY_ACTOR, encounter_id, answer, None)
                return "finished"
            except SelfPayNotCovered:
                pass  # a payment channel is needed: a person at the window finishes it
        with transaction.atomic():
            _abort(encounter_id)
            audit_record(
                actor=RECOVERY_ACTOR,
                action="encounter.settle_undo",
                obj=encounter,
                changes={"insurer_settled": bool(claim.setl_id), "setl_id": claim.setl_id},
            )
        return "undone"
    except BaseException:
        _abort(encounter_id)
        raise


@transaction.atomic
def _take_lapsed_lease(encounter_id: UUID, now: datetime) -> bool:
    encounter = Encounter.objects.select_for_update().get(pk=encounter_id)
    if encounter.status != Encounter.Status.SETTLING:
        return False
    claim = InsuranceClaim.objects.select_for_update().get(encounter=encounter)
    if claim.lease_until is not None and claim.lease_until >= now:
        return False
    claim.lease_until = timezone.now() + LEASE
    claim.save(update_fields=["lease_until"])
    return True


def _recovered_answer(
    client: InsurerClient, encounter: Encounter, claim: InsuranceClaim
) -> InsurerAnswer | None:
    """What the insurer settled for a stalled settle, or ``None`` when it settled nothing (or
    cannot say yet: the msgid stays on the claim for the next settle to resolve)."""
    if claim.setl_id:
        return _remembered(claim)
    if not claim.settle_msgid:
        return None  # no settle was sent
    try:
        return _resolve_earlier_settle(client, claim, str(encounter.pk))
    except (InsurerUnavailable, InsurerOutcomeUnknown, InsurerRejected) as error:
        logger.warning("the settle of encounter %s is still unknown: %s", encounter.pk, error)
        return None


# --- step 1 and its undo ----------------------------------------------------------------------


@transaction.atomic
def _begin(encounter_id: UUID) -> None:
    encounter = Encounter.objects.select_for_update().get(pk=encounter_id)
    if encounter.status in (Encounter.Status.SETTLED, Encounter.Status.SETTLED_INSURANCE_DEFERRED):
        raise AlreadySettled(gettext_lazy("the encounter is already settled"))
    claim, _ = InsuranceClaim.objects.get_or_create(encounter=encounter)
    now = timezone.now()
    if (
        encounter.status == Encounter.Status.SETTLING
        and claim.lease_until
        and claim.lease_until > now
    ):
        raise EncounterStateError(gettext_lazy("the encounter is being settled right now"))
    encounter.status = Encounter.Status.SETTLING
    encounter.save(update_fields=["status"])
    claim.lease_until = now + LEASE
    claim.save(update_fields=["lease_until"])


def _abort(encounter_id: UUID) -> None:
    """Put a failed settle's encounter back to ``open``: on a new connection if the failure was
    the connection's; if the database cannot be reached, the lease lapses and
    ``settlements_recover`` does it."""

    def undo() -> None:
        with transaction.atomic():
            Encounter.objects.filter(pk=encounter_id, status=Encounter.Status.SETTLING).update(
                status=Encounter.Status.OPEN
            )
            InsuranceClaim.objects.filter(encounter_id=encounter_id).update(lease_until=None)

    again_if_disconnected(undo)


# --- step 2: the insurer ----------------------------------------------------------------------


def fee_lines(encounter: Encounter) -> list[FeeLine]:
    """The charge lines still standing (reversed pairs left out), as the insurer wants them."""
    lines = Charge.objects.filter(
        encounter=encounter, reverses__isnull=True, reversed_by__isnull=True
    ).order_by("service_date", "pk")
    return [FeeLine.from_charge(line) for line in lines if line.amount]


def _total(encounter: Encounter) -> int:
    return int(Charge.objects.filter(encounter=encounter).aggregate(s=Sum("amount"))["s"] or 0)


def _remember(claim: InsuranceClaim, **fields: object) -> None:
    """Store what the insurer said at once, outside any transaction: it must survive a crash.
    A connection that died while the insurer was asked is replaced, so the settle goes on."""
    for name, value in fields.items():
        setattr(claim, name, value)
    again_if_disconnected(
        lambda: InsuranceClaim.objects.filter(pk=claim.pk).update(
            updated_at=timezone.now(), **fields
        )
    )


def _settled(claim: InsuranceClaim, split: Split) -> InsurerAnswer:
    answer = InsurerAnswer(
        status="settled",
        medfee=split.medfee_sumamt,
        fund=split.fund_pay_sumamt,
        account=split.acct_pay,
        setl_id=split.setl_id or "",
    )
    _remember(
        claim,
        setl_id=answer.setl_id,
        medfee_sumamt=answer.medfee,
        insurance_fund=answer.fund,
        personal_account=answer.account,
        self_pay=answer.medfee - answer.fund - answer.account,
        settle_msgid="",
        settle_infno="",
        insurer_settled_at=timezone.now(),
    )
    return answer


def _remembered(claim: InsuranceClaim) -> InsurerAnswer:
    return InsurerAnswer(
        status="settled",
        medfee=claim.medfee_sumamt,
        fund=claim.insurance_fund,
        account=claim.personal_account,
        setl_id=claim.setl_id,
    )


def _resolve_earlier_settle(
    client: InsurerClient, claim: InsuranceClaim, mdtrt_id: str
) -> InsurerAnswer | None:
    """An earlier settle (``claim.settle_msgid``) may or may not have happened: what the
    insurer settled, found by query, or ``None`` once it is reversed (冲正)."""
    found = client.query(mdtrt_id)
    if found is not None:
        return _settled(claim, found)
    client.reverse(omsgid=claim.settle_msgid, oinfno=claim.settle_infno)
    _remember(claim, settle_msgid="", settle_infno="")
    return None


def _ask_insurer(
    client: InsurerClient,
    encounter: Encounter,
    claim: InsuranceClaim,
    *,
    channel: str | None,
    check_cover: bool,
) -> InsurerAnswer:
    if claim.setl_id:  # settled by the insurer on an earlier attempt
        return _remembered(claim)
    mdtrt_id, psn_no = str(encounter.pk), f"P{encounter.person_id}"
    lines = fee_lines(encounter)
    total = _total(encounter)
    if total == 0:
        return InsurerAnswer(status="settled")
    try:
        if claim.settle_msgid:  # an earlier settle may or may not have happened
            earlier = _resolve_earlier_settle(client, claim, mdtrt_id)
            if earlier is not None:
                return earlier
        pre = client.pre_settle(encounter.kind, mdtrt_id, psn_no, lines)
        if check_cover:
            _check_cover(encounter, pre.psn_cash_pay, channel)
        # The msgid is stored before the settle is sent: after a crash the next attempt knows
        # a settle may have happened and resolves it first.
        infno = SETTLE[encounter.kind]
        msgid = client.new_msgid(infno)
        _remember(claim, settle_msgid=msgid, settle_infno=infno)
        try:
            return _settled(
                claim, client.settle(encounter.kind, mdtrt_id, psn_no, lines, msgid=msgid)
            )
        except InsurerOutcomeUnknown:
            lost = _resolve_earlier_settle(client, claim, mdtrt_id)
            if lost is not None:
                return lost
            raise InsurerUnavailable("the settle's answer was lost; it was reversed") from None
    except (InsurerUnavailable, InsurerOutcomeUnknown) as error:
        if check_cover:
            _check_cover(encounter, total, channel)
        return InsurerAnswer(status="deferred", medfee=total, error=str(error))
    except InsurerRejected as error:
        if check_cover:
            _check_cover(encounter, total, channel)
        return InsurerAnswer(status="failed", medfee=total, error=str(error))


def _funding_plan(
    encounter: Encounter, self_pay: int
) -> tuple[int, int, CreditLine | None, FamilyLink | None, CreditHold | None]:
    """How much the deposit and the credit line can pay of ``self_pay``, and which line."""
    deposit = max(account_balance(house.deposit_held(encounter)).posted, 0)
    from_deposit = min(deposit, self_pay)
    rest = self_pay - from_deposit
    line, link = encounter.funding_line, encounter.funding_link
    hold = (
        CreditHold(line_hold=encounter.line_hold_id, cap_hold=encounter.cap_hold_id)
        if encounter.line_hold_id
        else None
    )
    if rest and line is None:
        # A line with room for all of it, else one with some room (the rest by channel).
        funding = funding_line_for(person=encounter.person, amount=rest) or funding_line_for(
            person=encounter.person, amount=1
        )
        if funding is not None:
            line, link = funding.line, funding.via_link
    from_credit = min(rest, credit_room(line, link, hold)) if rest and line is not None else 0
    return from_deposit, from_credit, line, link, hold


def _check_cover(encounter: Encounter, self_pay: int, channel: str | None) -> None:
    from_deposit, from_credit, *_ = _funding_plan(encounter, self_pay)
    uncovered = self_pay - from_deposit - from_credit
    if uncovered and not channel:
        raise SelfPayNotCovered(
            gettext_lazy(
                "%(amount)s yuan of self-pay is covered by neither deposit nor credit:"
                " settle again with a payment channel"
            ),
            field="channel",
            params={"amount": fen_to_yuan(uncovered)},
        )


# --- step 3: the postings ---------------------------------------------------------------------


@transaction.atomic
def _finish(
    actor: str, encounter_id: UUID, answer: InsurerAnswer, channel: str | None
) -> Settlement:
    encounter = (
        Encounter.objects.select_for_update(of=("self",))
        .select_related("institution", "person", "funding_line__partner", "funding_link")
        .get(pk=encounter_id)
    )
    if encounter.status != Encounter.Status.SETTLING:
        raise EncounterStateError(
            gettext_lazy("the encounter is %(status)s"),
            params={"status": status_word(encounter.status)},
        )
    if encounter.funding_line_id is not None:
        # Settlements drawing on one (family) line queue here, so each plans on what is left.
        CreditLine.objects.select_for_update().get(pk=encounter.funding_line_id)
    total = _total(encounter)
    insurer_pays = answer.fund + answer.account if answer.status == "settled" else 0
    if answer.status == "settled" and total and answer.medfee != total:
        raise EncounterStateError(
            gettext_lazy("the insurer settled %(insurer)s but the bill is %(bill)s"),
            params={"insurer": fen_to_yuan(answer.medfee), "bill": fen_to_yuan(total)},
        )
    self_pay = total - insurer_pays
    from_deposit, from_credit, line, link, hold = _funding_plan(encounter, self_pay)
    if line is not None and encounter.funding_line_id is None:
        # A line chosen now: lock it and plan again on what it has left.
        CreditLine.objects.select_for_update().get(pk=line.pk)
        from_deposit, from_credit, line, link, hold = _funding_plan(encounter, self_pay)
    from_channel = self_pay - from_deposit - from_credit
    drawing_line = line if from_credit else None
    if from_channel and not channel:
        raise SelfPayNotCovered(
            gettext_lazy(
                "%(amount)s yuan of self-pay is covered by neither deposit nor credit:"
                " settle again with a payment channel"
            ),
            field="channel",
            params={"amount": fen_to_yuan(from_channel)},
        )
    key = f"encounter:{encounter.pk}:settle"
    institution = encounter.institution
    if total:
        legs = [ledger.Leg.credit(house.patient_receivable(encounter), total)]
        if insurer_pays:
            legs.append(ledger.Leg.debit(house.insurer_receivable(institution), insurer_pays))
        if from_deposit:
            legs.append(ledger.Leg.debit(house.deposit_held(encounter), from_deposit))
        if drawing_line is not None:
            legs.append(
                ledger.Leg.debit(
                    house.bank_receivable(institution, drawing_line.partner), from_credit
                )
            )
        if from_channel:
            legs.append(ledger.Leg.debit(house.clearing(institution, str(channel)), from_channel))
        ledger.transaction_post(
            key=key, legs=legs, reference=f"encounter:{encounter.pk}", description="settlement"
        )
    due_date = None
    if drawing_line is not None:
        credit_draw(
            key=key,
            line=drawing_line,
            link=link,
            amount=from_credit,
            hold=hold if line == encounter.funding_line else None,
            reference=f"encounter:{encounter.pk}",
        )
        due_date = _record_draw(encounter, drawing_line, from_credit)
    if hold is not None and (not from_credit or line != encounter.funding_line):
        credit_hold_release(key=f"{key}:release", hold=hold)
    _refund_leftover_deposit(encounter, key)

    funded_by = (
        "credit"
        if from_credit
        else "deposit"
        if from_deposit
        else "channel"
        if from_channel
        else "deposit"
        if encounter.deposits.exists()
        else "credit"
        if line
        else "channel"
    )
    settlement = Settlement(
        encounter=encounter,
        total=total,
        insurance_fund=answer.fund if answer.status == "settled" else 0,
        personal_account=answer.account if answer.status == "settled" else 0,
        self_pay=self_pay,
        paid_by_deposit=from_deposit,
        paid_by_credit=from_credit,
        paid_by_channel=from_channel,
        channel=channel or "",
        funded_by=funded_by,
        due_date=due_date,
    )
    receipt_issue(settlement=settlement)
    settlement.save()
    deferred = answer.status == "deferred"
    encounter.status = (
        Encounter.Status.SETTLED_INSURANCE_DEFERRED if deferred else Encounter.Status.SETTLED
    )
    encounter.settled_at = timezone.now()
    if line is not None and encounter.funding_line_id is None:
        encounter.funding_line, encounter.funding_link = line, link
    encounter.save()
    InsuranceClaim.objects.filter(encounter=encounter).update(
        status={
            "settled": InsuranceClaim.Status.SETTLED,
            "deferred": InsuranceClaim.Status.DEFERRED,
            "failed": InsuranceClaim.Status.FAILED,
        }[answer.status],
        medfee_sumamt=total,
        insurance_fund=settlement.insurance_fund,
        personal_account=settlement.personal_account,
        self_pay=self_pay,
        attempts=1,
        last_error=answer.error[:2000],
        next_attempt_at=timezone.now() if deferred else None,
        lease_until=None,
        updated_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        action="encounter.settle",
        obj=encounter,
        changes={
            "status": encounter.status,
            "total": total,
            "insurance_fund": settlement.insurance_fund,
            "personal_account": settlement.personal_account,
            "self_pay": self_pay,
            "deposit": from_deposit,
            "credit": from_credit,
            "channel": from_channel,
            "receipt_no": settlement.receipt_no,
        },
    )
    return settlement


def _record_draw(encounter: Encounter, line: CreditLine, amount: int) -> date:
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


def _refund_leftover_deposit(encounter: Encounter, key: str) -> None:
    """Send what is left of the deposit back through the channels it came in by, newest first."""
    left = max(account_balance(house.deposit_held(encounter)).posted, 0)
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


# --- the revert when a deferred claim settles -------------------------------------------------


@transaction.atomic
def _revert_to_insurer(claim_id: int, answer: InsurerAnswer) -> bool:
    claim = InsuranceClaim.objects.select_for_update().get(pk=claim_id)
    if claim.status != InsuranceClaim.Status.DEFERRED:
        return False  # another retry reverted it first
    encounter = (
        Encounter.objects.select_for_update(of=("self",))
        .select_related("institution", "person")
        .get(pk=claim.encounter_id)
    )
    settlement = Settlement.objects.select_for_update().get(encounter=encounter)
    if answer.medfee != settlement.total:
        raise EncounterStateError(
            gettext_lazy("the insurer settled %(insurer)s but the bill was %(bill)s"),
            params={"insurer": fen_to_yuan(answer.medfee), "bill": fen_to_yuan(settlement.total)},
        )
    moved = answer.fund + answer.account
    key = f"encounter:{encounter.pk}:insurer-revert"
    off_credit = 0
    receivable = Receivable.objects.select_for_update().filter(encounter=encounter).first()
    if receivable is not None:
        off_credit = min(moved, settlement.paid_by_credit, receivable.outstanding)
    to_refund = moved - off_credit
    if moved:
        legs = [ledger.Leg.debit(house.insurer_receivable(encounter.institution), moved)]
        if off_credit:
            legs.append(
                ledger.Leg.credit(
                    house.bank_receivable(encounter.institution, receivable.partner),  # type: ignore[union-attr]
                    off_credit,
                )
            )
        if to_refund:
            legs.append(ledger.Leg.credit(house.refunds_payable(encounter.institution), to_refund))
        ledger.transaction_post(
            key=key, legs=legs, reference=f"encounter:{encounter.pk}", description="insurer paid"
        )
    if off_credit and receivable is not None:
        credit_restore(
            key=key,
            line=receivable.credit_line,
            link=encounter.funding_link,
            amount=off_credit,
            reference=f"encounter:{encounter.pk}",
        )
        receivable.outstanding -= off_credit
        receivable.status = (
            Receivable.Status.REPAID if receivable.outstanding == 0 else receivable.status
        )
        receivable.updated_at = timezone.now()
        receivable.save(update_fields=["outstanding", "status", "updated_at"])
        unfreeze_if_nothing_overdue(receivable.credit_line)
        CreditMovement.objects.create(
            reference=f"RV{encounter.pk.hex[:12].upper()}",
            partner=receivable.partner,
            receivable=receivable,
            kind=CreditMovement.Kind.REVERSAL,
            amount=-off_credit,
            business_date=timezone.localdate(),
        )
        event_record(
            partner=receivable.partner,
            type="credit.reversed",
            data={
                "receivable": str(receivable.pk),
                "reference": f"RV{encounter.pk.hex[:12].upper()}",
                "encounter": str(encounter.pk),
                "amount": fen_to_yuan(off_credit),
                "outstanding": fen_to_yuan(receivable.outstanding),
            },
        )
    if to_refund:
        Refund.objects.create(
            encounter=encounter,
            amount=to_refund,
            channel=settlement.channel or _deposit_channel(encounter),
            reason=Refund.Reason.INSURANCE_REVERSAL,
            status=Refund.Status.OWED,
        )
    settlement.insurance_fund, settlement.personal_account = answer.fund, answer.account
    settlement.self_pay -= moved
    # What each source paid goes down by its part of the insurer's share, whatever happens to
    # the money (off the bank receivable, or owed back to a patient who already repaid).
    credit_back = min(moved, settlement.paid_by_credit)
    channel_back = min(moved - credit_back, settlement.paid_by_channel)
    settlement.paid_by_credit -= credit_back
    settlement.paid_by_channel -= channel_back
    settlement.paid_by_deposit -= moved - credit_back - channel_back
    settlement.updated_at = timezone.now()
    receipt_issue(settlement=settlement)
    settlement.save()
    encounter.status = Encounter.Status.SETTLED
    encounter.save(update_fields=["status"])
    claim.status = InsuranceClaim.Status.SETTLED
    claim.attempts += 1
    claim.last_error = ""
    claim.reverted_at = timezone.now()
    claim.next_attempt_at = None
    claim.updated_at = timezone.now()
    claim.save()
    audit_record(
        actor="system:claims_retry",
        action="claim.revert",
        obj=encounter,
        changes={
            "insurance_fund": answer.fund,
            "personal_account": answer.account,
            "off_credit": off_credit,
            "refund_owed": to_refund,
            "receipt_no": settlement.receipt_no,
        },
    )
    return True


def _deposit_channel(encounter: Encounter) -> str:
    deposit = Deposit.objects.filter(encounter=encounter).order_by("-paid_at").first()
    return deposit.channel if deposit else Channel.CASH
