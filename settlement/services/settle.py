"""Settlement (结算): settling an encounter once, and finishing settles left stranded.

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

The insurer protocol lives in ``insurer_claims``, the funding plan and its postings in
``funding``; deferred claims are retried by ``claim_retries``.
"""

import logging
from collections.abc import Callable
from datetime import date, datetime
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.services.audit import audit_record
from core.db import again_if_disconnected
from core.money import fen_to_yuan

from ..exceptions import (
    AlreadySettled,
    EncounterStateError,
    SelfPayNotCovered,
    SettlementInputError,
)
from ..insurer.client import InsurerClient
from ..models import Channel, Encounter, InsuranceClaim, Settlement
from ..rules import status_word
from ..selectors import deposit_paid
from .funding import FundingPlan, cover_check, funded_by, funding_plan, settlement_post
from .insurer_claims import LEASE, InsurerAnswer, bill_total, insurer_ask, recovered_answer
from .notices import family_draw_notice, settled_notice
from .receipts import receipt_issue

logger = logging.getLogger(__name__)

RECOVERY_ACTOR = "system:settle_recover"
# What a settle reads with its encounter, in the same statement (only the encounter is
# locked); its credit line is read by the funding plan.
_SETTLE_RELATED = ("institution", "person")


# --- the public calls -------------------------------------------------------------------------


def encounter_settle(
    *,
    actor: str,
    encounter_id: UUID,
    channel: str | None = None,
    client: InsurerClient | None = None,
    key: str | None = None,
) -> Settlement:
    """Settle an encounter once; see the module docstring for the steps.

    With the caller's ``key``, the request sent again after it settled (its answer lost) gets
    the settlement instead of ``AlreadySettled``.
    """
    if channel is not None and channel not in Channel.values:
        raise SettlementInputError(gettext_lazy("unknown payment channel"), field="channel")
    if key:
        earlier = _settled_for(encounter_id, key)
        if earlier is not None:
            return earlier
    encounter, claim = _begin(encounter_id, key or "")
    try:
        deposit_held = deposit_paid(encounter)  # no deposit is taken while settling
        answer = insurer_ask(
            client or InsurerClient(),
            encounter,
            claim,
            cover=_cover(encounter, channel, deposit_held),
        )
        return _finish(
            actor, encounter_id, answer, channel, deposit_held=deposit_held, begun=encounter
        )
    except BaseException:
        _abort(encounter_id)
        raise


def _cover(encounter: Encounter, channel: str | None, deposit_held: int) -> Callable[[int], None]:
    """The check made before the insurer is asked to settle: the self-pay must be covered by
    the deposit, a credit line or the channel offered (nothing is locked yet)."""

    def check(self_pay: int) -> None:
        cover_check(funding_plan(encounter, self_pay, channel, deposit_held=deposit_held))

    return check


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
        answer = recovered_answer(client or InsurerClient(), encounter, claim)
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


@transaction.atomic(durable=True)
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


# --- step 1 and its undo ----------------------------------------------------------------------


def _settled_for(encounter_id: UUID, key: str) -> Settlement | None:
    """The settlement the settle request with ``key`` made, if it got that far."""
    return Settlement.objects.filter(
        encounter_id=encounter_id,
        encounter__claim__settle_key=key,
        encounter__status__in=(
            Encounter.Status.SETTLED,
            Encounter.Status.SETTLED_INSURANCE_DEFERRED,
        ),
    ).first()


@transaction.atomic(durable=True)
def _begin(encounter_id: UUID, key: str) -> tuple[Encounter, InsuranceClaim]:
    """Step 1; the encounter (with its person and institution) and its claim, as left."""
    encounter = (
        Encounter.objects.select_for_update(of=("self",))
        .select_related(*_SETTLE_RELATED)
        .get(pk=encounter_id)
    )
    if encounter.status in (Encounter.Status.SETTLED, Encounter.Status.SETTLED_INSURANCE_DEFERRED):
        raise AlreadySettled(gettext_lazy("the encounter is already settled"))
    now = timezone.now()
    # The encounter's lock keeps a second claim from being made meanwhile: no savepoint.
    claim = InsuranceClaim.objects.filter(encounter=encounter).first()
    if claim is None:  # a first attempt: the claim is made with its lease
        claim = InsuranceClaim.objects.create(
            encounter=encounter, lease_until=now + LEASE, settle_key=key
        )
    else:
        if (
            encounter.status == Encounter.Status.SETTLING
            and claim.lease_until
            and claim.lease_until > now
        ):
            raise EncounterStateError(gettext_lazy("the encounter is being settled right now"))
        claim.lease_until = now + LEASE
        claim.settle_key = key
        claim.save(update_fields=["lease_until", "settle_key"])
    encounter.status = Encounter.Status.SETTLING
    encounter.save(update_fields=["status"])
    return encounter, claim


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


# --- step 3: the postings ---------------------------------------------------------------------


@transaction.atomic(durable=True)
def _finish(
    actor: str,
    encounter_id: UUID,
    answer: InsurerAnswer,
    channel: str | None,
    *,
    deposit_held: int | None = None,
    begun: Encounter | None = None,
) -> Settlement:
    encounter = _settling_locked(encounter_id, begun)
    total = _bill_as_settled(encounter, answer)
    plan = funding_plan(
        encounter,
        total - answer.insurer_pays,
        channel,
        lock_line=True,
        deposit_held=deposit_held,
    )
    cover_check(plan)
    due_date = settlement_post(
        encounter,
        plan,
        total=total,
        insurer_pays=answer.insurer_pays,
        key=f"encounter:{encounter.pk}:settle",
    )
    settlement = _settlement_record(encounter, answer, plan, total=total, due_date=due_date)
    _encounter_settled(encounter, answer, plan)
    _claim_closed(encounter, answer, settlement)
    _settle_audit(actor, encounter, settlement)
    if due_date is not None:
        _draw_notices(encounter, plan, due_date)
    return settlement


def _draw_notices(encounter: Encounter, plan: FundingPlan, due_date: date) -> None:
    """Tell the patient what credit paid and by when it is owed; and, when the line is a
    family member's (亲情付), tell that payer their line carried the stay."""
    settled_notice(encounter, amount=plan.from_credit, due_date=due_date)
    if plan.link is not None:
        family_draw_notice(encounter, payer=plan.link.payer, amount=plan.from_credit)


def _settling_locked(encounter_id: UUID, begun: Encounter | None) -> Encounter:
    """The encounter, locked and read again; its person and institution are those this settle
    read as it began (``begun``), if it did, else read with it."""
    encounters = Encounter.objects.select_for_update(of=("self",))
    if begun is None:
        encounter = encounters.select_related(*_SETTLE_RELATED).get(pk=encounter_id)
    else:
        encounter = encounters.get(pk=encounter_id)
        encounter.person, encounter.institution = begun.person, begun.institution
    if encounter.status != Encounter.Status.SETTLING:
        raise EncounterStateError(
            gettext_lazy("the encounter is %(status)s"),
            params={"status": status_word(encounter.status)},
        )
    return encounter


def _bill_as_settled(encounter: Encounter, answer: InsurerAnswer) -> int:
    """The bill's total, refused unless it is the one the insurer settled: as the attempt read
    it (the encounter was ``settling`` already), else read now."""
    total = answer.bill if answer.bill is not None else bill_total(encounter)
    if answer.status == "settled" and total and answer.medfee != total:
        raise EncounterStateError(
            gettext_lazy("the insurer settled %(insurer)s but the bill is %(bill)s"),
            params={"insurer": fen_to_yuan(answer.medfee), "bill": fen_to_yuan(total)},
        )
    return total


def _settlement_record(
    encounter: Encounter,
    answer: InsurerAnswer,
    plan: FundingPlan,
    *,
    total: int,
    due_date: date | None,
) -> Settlement:
    settled = answer.status == "settled"
    settlement = Settlement(
        encounter=encounter,
        total=total,
        insurance_fund=answer.fund if settled else 0,
        personal_account=answer.account if settled else 0,
        self_pay=plan.self_pay,
        paid_by_deposit=plan.from_deposit,
        paid_by_credit=plan.from_credit,
        paid_by_channel=plan.from_channel,
        channel=plan.channel or "",
        funded_by=funded_by(encounter, plan),
        due_date=due_date,
    )
    receipt_issue(settlement=settlement, first=True)
    settlement.save()
    return settlement


def _encounter_settled(encounter: Encounter, answer: InsurerAnswer, plan: FundingPlan) -> None:
    encounter.status = (
        Encounter.Status.SETTLED_INSURANCE_DEFERRED
        if answer.status == "deferred"
        else Encounter.Status.SETTLED
    )
    encounter.settled_at = timezone.now()
    fields = ["status", "settled_at"]
    if plan.line_chosen_now:
        encounter.funding_line, encounter.funding_link = plan.line, plan.link
        fields += ["funding_line", "funding_link"]
    encounter.save(update_fields=fields)


def _claim_closed(encounter: Encounter, answer: InsurerAnswer, settlement: Settlement) -> None:
    """The claim as the settlement left it: settled, failed, or deferred and due for a retry."""
    InsuranceClaim.objects.filter(encounter=encounter).update(
        status={
            "settled": InsuranceClaim.Status.SETTLED,
            "deferred": InsuranceClaim.Status.DEFERRED,
            "failed": InsuranceClaim.Status.FAILED,
        }[answer.status],
        medfee_sumamt=settlement.total,
        insurance_fund=settlement.insurance_fund,
        personal_account=settlement.personal_account,
        self_pay=settlement.self_pay,
        attempts=1,
        last_error=answer.error[:2000],
        next_attempt_at=timezone.now() if answer.status == "deferred" else None,
        lease_until=None,
        updated_at=timezone.now(),
    )


def _settle_audit(actor: str, encounter: Encounter, settlement: Settlement) -> None:
    audit_record(
        actor=actor,
        action="encounter.settle",
        obj=encounter,
        changes={
            "status": encounter.status,
            "total": settlement.total,
            "insurance_fund": settlement.insurance_fund,
            "personal_account": settlement.personal_account,
            "self_pay": settlement.self_pay,
            "deposit": settlement.paid_by_deposit,
            "credit": settlement.paid_by_credit,
            "channel": settlement.paid_by_channel,
            "receipt_no": settlement.receipt_no,
        },
    )
