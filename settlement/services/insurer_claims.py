"""The insurance claim of an encounter: what is asked of the insurer, and what it answered.

Each answer is stored on the claim at once, outside any transaction, so that it survives a
crash: a settled split is reused by every later attempt (the insurer never settles an
encounter twice), and the msgid of a settle whose outcome is unknown is resolved (query, else
reverse, 冲正) before anything else is sent. A claim the insurer could not settle waits,
``deferred``, for a retry after a growing delay.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from django.db.models import Q, Sum
from django.utils import timezone

from core.db import again_if_disconnected

from ..insurer import (
    SETTLE,
    InsurerOutcomeUnknown,
    InsurerRejected,
    InsurerUnavailable,
)
from ..insurer.client import FeeLine, FeeLines, InsurerClient, Split
from ..models import Charge, Encounter, InsuranceClaim

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
    # The bill's total (fen) as read for this attempt, the encounter already ``settling`` (no
    # charge can change any more); ``None`` when this attempt did not read the bill.
    bill: int | None = None

    @property
    def insurer_pays(self) -> int:
        """The insurer's share: fund and personal account, nothing unless it settled."""
        return self.fund + self.account if self.status == "settled" else 0


def fee_lines(encounter: Encounter) -> FeeLines:
    """The charge lines still standing (reversed pairs left out), as the insurer wants them.

    Every line of the stay is read and the pairs are dropped here: asked of PostgreSQL (a join
    or ``NOT EXISTS`` on the reversals) it plans a parallel scan, ten times the plain read (10
    ms against 1 ms for 3,000 lines). A reversal is always on its line's encounter.
    """
    rows = list(
        Charge.objects.filter(encounter=encounter)
        .order_by("service_date", "pk")
        .values_list("pk", "reverses_id", "insurance_class", "amount", "code", "service_date")
    )
    paired = {row[1] for row in rows if row[1] is not None}
    return FeeLines(
        FeeLine(*row[2:])
        for row in rows
        if row[3] and row[1] is None and row[0] not in paired  # zero amounts left out
    )


def bill_total(encounter: Encounter) -> int:
    """The encounter's bill (fen): every charge line, reversals included."""
    return int(Charge.objects.filter(encounter=encounter).aggregate(s=Sum("amount"))["s"] or 0)


# --- asking -----------------------------------------------------------------------------------


def insurer_ask(
    client: InsurerClient,
    encounter: Encounter,
    claim: InsuranceClaim,
    *,
    cover: Callable[[int], None] | None,
) -> InsurerAnswer:
    """Settle the claim with the insurer, or say why not (``deferred``, ``failed``).

    ``cover``, if given, is told the self-pay (fen) before the insurer is asked to settle, and
    the whole bill when the insurer cannot settle; it raises when that is not covered, so no
    settle is sent for a bill the patient cannot pay yet.
    """
    if claim.setl_id:  # settled by the insurer on an earlier attempt
        return remembered_answer(claim)
    mdtrt_id, psn_no = str(encounter.pk), f"P{encounter.person_id}"
    lines = fee_lines(encounter)
    # The bill: a reversed pair nets to nothing, so the standing lines sum to every line's sum.
    total = lines.total
    if total == 0:
        return InsurerAnswer(status="settled", bill=0)
    try:
        if claim.settle_msgid:  # an earlier settle may or may not have happened
            earlier = earlier_settle_resolve(client, claim, mdtrt_id)
            if earlier is not None:
                return replace(earlier, bill=total)
        pre = client.pre_settle(
            encounter.kind, mdtrt_id, psn_no, lines, fixmedins_code=encounter.institution.code
        )
        if cover is not None:
            cover(pre.psn_cash_pay)
        return replace(_settle(client, encounter, claim, lines), bill=total)
    except (InsurerUnavailable, InsurerOutcomeUnknown) as error:
        if cover is not None:
            cover(total)
        return InsurerAnswer(status="deferred", medfee=total, error=str(error), bill=total)
    except InsurerRejected as error:
        if cover is not None:
            cover(total)
        return InsurerAnswer(status="failed", medfee=total, error=str(error), bill=total)


def _settle(
    client: InsurerClient, encounter: Encounter, claim: InsuranceClaim, lines: FeeLines
) -> InsurerAnswer:
    mdtrt_id, psn_no = str(encounter.pk), f"P{encounter.person_id}"
    # The msgid is stored before the settle is sent: after a crash the next attempt knows
    # a settle may have happened and resolves it first. It goes in the transaction that
    # stores the call before it is sent, and what was settled in the one that stores the answer.
    infno = SETTLE[encounter.kind]
    msgid = client.new_msgid(infno)
    try:
        split = client.settle(
            encounter.kind,
            mdtrt_id,
            psn_no,
            lines,
            msgid=msgid,
            fixmedins_code=encounter.institution.code,
            sending=lambda: _claim_update(claim, settle_msgid=msgid, settle_infno=infno),
            settled=lambda split: _claim_update(claim, **_settled_fields(split)),
        )
        return _settled_answer(split)
    except InsurerOutcomeUnknown:
        lost = earlier_settle_resolve(client, claim, mdtrt_id)
        if lost is not None:
            return lost
        raise InsurerUnavailable("the settle's answer was lost; it was reversed") from None


def earlier_settle_resolve(
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


def recovered_answer(
    client: InsurerClient, encounter: Encounter, claim: InsuranceClaim
) -> InsurerAnswer | None:
    """What the insurer settled for a stalled settle, or ``None`` when it settled nothing (or
    cannot say yet: the msgid stays on the claim for the next settle to resolve)."""
    if claim.setl_id:
        return remembered_answer(claim)
    if not claim.settle_msgid:
        return None  # no settle was sent
    try:
        return earlier_settle_resolve(client, claim, str(encounter.pk))
    except (InsurerUnavailable, InsurerOutcomeUnknown, InsurerRejected) as error:
        logger.warning("the settle of encounter %s is still unknown: %s", encounter.pk, error)
        return None


# --- remembering ------------------------------------------------------------------------------


def _remember(claim: InsuranceClaim, **fields: object) -> None:
    """Store what the insurer said at once, outside any transaction: it must survive a crash.
    A connection that died while the insurer was asked is replaced, so the settle goes on."""
    again_if_disconnected(lambda: _claim_update(claim, **fields))


def _claim_update(claim: InsuranceClaim, **fields: object) -> None:
    for name, value in fields.items():
        setattr(claim, name, value)
    InsuranceClaim.objects.filter(pk=claim.pk).update(updated_at=timezone.now(), **fields)


def _settled(claim: InsuranceClaim, split: Split) -> InsurerAnswer:
    _remember(claim, **_settled_fields(split))
    return _settled_answer(split)


def _settled_answer(split: Split) -> InsurerAnswer:
    return InsurerAnswer(
        status="settled",
        medfee=split.medfee_sumamt,
        fund=split.fund_pay_sumamt,
        account=split.acct_pay,
        setl_id=split.setl_id or "",
    )


def _settled_fields(split: Split) -> dict[str, object]:
    """The claim's fields once the insurer settled ``split``."""
    return {
        "setl_id": split.setl_id or "",
        "medfee_sumamt": split.medfee_sumamt,
        "insurance_fund": split.fund_pay_sumamt,
        "personal_account": split.acct_pay,
        "self_pay": split.medfee_sumamt - split.fund_pay_sumamt - split.acct_pay,
        "settle_msgid": "",
        "settle_infno": "",
        "insurer_settled_at": timezone.now(),
    }


def remembered_answer(claim: InsuranceClaim) -> InsurerAnswer:
    """The split the insurer settled on an earlier attempt, as stored on the claim."""
    return InsurerAnswer(
        status="settled",
        medfee=claim.medfee_sumamt,
        fund=claim.insurance_fund,
        account=claim.personal_account,
        setl_id=claim.setl_id,
    )


# --- deferred claims waiting for a retry ------------------------------------------------------


def claims_due_now(*, where: Q | None = None) -> int:
    """Make the deferred claims ``where`` says (all by default) due at once (the retry
    button); returns how many there are."""
    claims = InsuranceClaim.objects.filter(status=InsuranceClaim.Status.DEFERRED)
    return claims.filter(where or Q()).update(next_attempt_at=timezone.now())


def claim_postpone(claim_id: int, error: str) -> None:
    """Count a failed retry and set the next one after a delay that grows with each."""
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


def claim_fail(claim: InsuranceClaim, error: str) -> None:
    """The insurer refused a deferred claim: it is ``failed`` and retried no more."""
    InsuranceClaim.objects.filter(pk=claim.pk, status=InsuranceClaim.Status.DEFERRED).update(
        status=InsuranceClaim.Status.FAILED,
        attempts=claim.attempts + 1,
        last_error=error[:2000],
        updated_at=timezone.now(),
    )
