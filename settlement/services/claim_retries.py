"""Deferred claims: retried until the insurer answers, then the settlement reverted to insurance.

A claim is deferred when the insurer could not be reached at settlement: the whole bill was
self-pay. ``claims_retry`` (a beat task, and the retry API) asks again for every claim that is
due. When the insurer settles, its share moves off the patient: off the credit draw and the
bank receivable when credit paid, into a refund owed when the patient paid at the window. Each
claim reverts once: the revert happens under the claim's row lock and only from ``deferred``.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.services.audit import audit_record
from core.money import fen_to_yuan

from ..exceptions import EncounterStateError
from ..insurer.client import InsurerClient
from ..models import Encounter, InsuranceClaim, Settlement
from .funding import ShareReturn, share_return, share_return_post
from .insurer_claims import LEASE, InsurerAnswer, claim_fail, claim_postpone, insurer_ask
from .receipts import receipt_issue


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
            claim_postpone(claim_id, f"{type(error).__name__}: {error}")
            result = "error"
        results[result] = results.get(result, 0) + 1
    return results


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
        answer = insurer_ask(client or InsurerClient(), claim.encounter, claim, cover=None)
        if answer.status == "deferred":
            claim_postpone(claim_id, answer.error)
            return "deferred"
        if answer.status == "failed":
            claim_fail(claim, answer.error)
            return "failed"
        return "reverted" if _revert_to_insurer(claim_id, answer) else "busy"
    finally:
        InsuranceClaim.objects.filter(pk=claim_id).update(lease_until=None)


# --- the revert when a deferred claim settles -------------------------------------------------


@transaction.atomic(durable=True)
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
    plan = share_return(encounter, settlement, answer.fund + answer.account)
    share_return_post(encounter, plan)
    _settlement_revised(settlement, answer, plan)
    _claim_reverted(encounter, claim)
    audit_record(
        actor="system:claims_retry",
        action="claim.revert",
        obj=encounter,
        changes={
            "insurance_fund": answer.fund,
            "personal_account": answer.account,
            "off_credit": plan.off_credit,
            "refund_owed": plan.to_refund,
            "receipt_no": settlement.receipt_no,
        },
    )
    return True


def _settlement_revised(settlement: Settlement, answer: InsurerAnswer, plan: ShareReturn) -> None:
    """The settlement as the insurer settled it, with a new receipt."""
    settlement.insurance_fund, settlement.personal_account = answer.fund, answer.account
    settlement.self_pay -= plan.moved
    settlement.paid_by_credit -= plan.credit_back
    settlement.paid_by_channel -= plan.channel_back
    settlement.paid_by_deposit -= plan.deposit_back
    settlement.updated_at = timezone.now()
    receipt_issue(settlement=settlement)
    settlement.save()


def _claim_reverted(encounter: Encounter, claim: InsuranceClaim) -> None:
    encounter.status = Encounter.Status.SETTLED
    encounter.save(update_fields=["status"])
    claim.status = InsuranceClaim.Status.SETTLED
    claim.attempts += 1
    claim.last_error = ""
    claim.reverted_at = timezone.now()
    claim.next_attempt_at = None
    claim.updated_at = timezone.now()
    claim.save()
