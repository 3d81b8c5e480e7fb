"""Self-enrolment (开通信用就医) and the monthly score refresh.

A citizen consents to the platform reading their credit score (白鹭分 in Xiamen); the score is
asked of the city credit-score platform (``accounts.credit_score``) and the chosen bank's tier
table applied. A bank that grants on its table (``Partner.Enrolment.AUTO``) gets a line opened
at once; one that decides each case (``APPLICATION``) is sent a signed ``credit.application``
webhook and answers through its ordinary grant call, which marks the application granted
(``accounts.services.credit_lines.applications_answer``).

The score is read before anything is written, and everything is then written in one
transaction: a platform that cannot be asked leaves no consent, no application and no line.
Here in ``settlement`` because the banks' webhook outbox is; the rest is ``accounts``'.
"""

import logging
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID, uuid4

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.credit_score import CreditScoreError, Score
from accounts.credit_score.client import CreditScoreClient, citizen_hash
from accounts.exceptions import InvalidInput
from accounts.models import Consent, CreditApplication, CreditLine, Partner, Person
from accounts.selectors import person_id_number
from accounts.services.audit import audit_record
from accounts.services.consents import consent_record
from accounts.services.credit_lines import credit_line_grant_to, credit_line_set_frozen
from accounts.services.partners import lowest_tier_score, tier_limit_or_none
from core.money import fen_to_yuan

from ..exceptions import AlreadyEnrolled, ApplicationPending, ScoreUnavailable
from .outbox import event_record

logger = logging.getLogger(__name__)

# The words a citizen agrees to, shown in full where they enrol (the city's app, the portal).
CONSENT_TEXT = _(
    "I agree that the credit medical care platform asks the city credit platform for my credit"
    " score (白鹭分) with my name and ID number, gives it to the bank I choose to decide my"
    " credit line for medical care, and asks it again each month while I hold a line. I can"
    " withdraw this consent at any time; a line already granted stays as it is."
)
DECLINED_NO_SCORE = "no score"
DECLINED_BELOW_LOWEST_TIER = "below the lowest tier"


@dataclass(frozen=True)
class Enrolment:
    """The answer to an enrolment: ``status`` is the application's."""

    application: CreditApplication
    status: str
    score: int | None
    level: str
    tier_limit: int | None
    credit_line: CreditLine | None


def enrolment_bank(bank: str | int | None) -> Partner:
    """The bank named by id or name; with none, the platform's default bank: the partner
    ``ENROLMENT_DEFAULT_BANK`` names, else the only partner there is. With several and no
    default the citizen must choose (an ``InvalidInput`` of ``bank``)."""
    if bank is None or bank == "":
        if settings.ENROLMENT_DEFAULT_BANK:
            found = Partner.objects.filter(name=settings.ENROLMENT_DEFAULT_BANK).first()
        else:
            only = list(Partner.objects.order_by("pk")[:2])
            found = only[0] if len(only) == 1 else None
        if found is None:
            raise InvalidInput(_("choose the bank to enrol with"), field="bank")
        return found
    text = str(bank).strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:
        found = Partner.objects.filter(pk=int(text)).first()
    else:
        found = Partner.objects.filter(name=text).first()
    if found is None:
        raise InvalidInput(_("no bank has this id or name"), field="bank")
    return found


def _check_open(person: Person, partner: Partner) -> None:
    if (
        CreditLine.objects.filter(person=person, partner=partner)
        .exclude(status=CreditLine.Status.CLOSED)
        .exists()
    ):
        raise AlreadyEnrolled(_("you already hold a credit line with this bank"), field="bank")
    if CreditApplication.objects.filter(
        person=person, partner=partner, status=CreditApplication.Status.PENDING_BANK
    ).exists():
        raise ApplicationPending(
            _("your enrolment with this bank is waiting for the bank's answer"), field="bank"
        )


def _ask(client: CreditScoreClient, person: Person, consent_reference: UUID) -> Score | None:
    """The person's score, ``None`` when the platform has none; ``ScoreUnavailable`` when it
    cannot be asked. The name and ID number go to the platform only, never to the logs."""
    try:
        return client.score(
            id_number_hash=citizen_hash(person_id_number(person)),
            name=person.name,
            consent_id=str(consent_reference),
        )
    except CreditScoreError as error:
        logger.warning("credit score for person %s not read: %s", person.pk, error)
        raise ScoreUnavailable(
            _(
                "the credit score platform cannot be reached now; nothing was recorded,"
                " try again later"
            )
        ) from error


def enrolment_apply(
    *,
    actor: str,
    person: Person,
    partner: Partner | None,
    consent_scope: str,
    channel: str,
    recorded_by: str = "",
    client: CreditScoreClient | None = None,
) -> Enrolment:
    """Enrol ``person`` with ``partner`` (``None``: the default bank, :func:`enrolment_bank`)
    on the consent they gave now in the words ``consent_scope`` through ``channel``.

    Declined (``no score``, or ``below the lowest tier``), granted with a line, or
    ``pending_bank`` with the bank told; the consent is recorded in every case, since the
    score was read under it. ``AlreadyEnrolled``/``ApplicationPending`` (409) when the person
    holds an open line with the bank or waits for its answer; ``ScoreUnavailable`` (503),
    with nothing written, when the platform cannot be asked.
    """
    partner = partner or enrolment_bank(None)
    _check_open(person, partner)
    reference = uuid4()
    score = _ask(client or CreditScoreClient(), person, reference)
    return _enrol(actor, person, partner, score, reference, consent_scope, channel, recorded_by)


@transaction.atomic(durable=True)
def _enrol(
    actor: str,
    person: Person,
    partner: Partner,
    score: Score | None,
    reference: UUID,
    consent_scope: str,
    channel: str,
    recorded_by: str,
) -> Enrolment:
    # The person's row serialises two enrolments of the same person (a double tap).
    person = Person.objects.select_for_update().get(pk=person.pk)
    _check_open(person, partner)
    consent = consent_record(
        actor=actor,
        person=person,
        purpose=Consent.Purpose.CREDIT_SCORE,
        scope=consent_scope,
        channel=channel,
        reference=reference,
        recorded_by=recorded_by,
    )
    limit = None if score is None else tier_limit_or_none(partner, score.score)
    application = CreditApplication(
        person=person,
        partner=partner,
        consent=consent,
        score=None if score is None else score.score,
        level="" if score is None else score.level,
        tier_limit=limit,
    )
    line = None
    if limit is None:
        application.status = CreditApplication.Status.DECLINED
        application.reason = DECLINED_NO_SCORE if score is None else DECLINED_BELOW_LOWEST_TIER
        application.decided_at = timezone.now()
        application.save(force_insert=True)
    elif partner.enrolment == Partner.Enrolment.AUTO:
        assert score is not None  # noqa: S101 - a limit comes from a score
        line, _new = credit_line_grant_to(
            actor=actor,
            partner=partner,
            person=person,
            score=score.score,
            score_provider=settings.CREDIT_SCORE_PROVIDER,
            limit=limit,
        )
        application.status = CreditApplication.Status.GRANTED
        application.credit_line = line
        application.decided_at = timezone.now()
        application.save(force_insert=True)
    else:
        assert score is not None  # noqa: S101 - a limit comes from a score
        application.status = CreditApplication.Status.PENDING_BANK
        application.save(force_insert=True)
        event_record(
            partner=partner,
            type="credit.application",
            data={
                "application": str(application.pk),
                "person": str(person.pk),
                "id_number_masked": person.id_number_masked,
                "name": person.name,
                "score": score.score,
                "level": score.level,
                "as_of": score.as_of.isoformat(),
                "tier_limit": fen_to_yuan(limit),
            },
        )
    audit_record(
        actor=actor,
        action=f"credit_application.{application.status}",
        obj=application,
        changes={
            "partner": partner.pk,
            "score": application.score,
            "tier_limit": limit,
            "reason": application.reason,
            "credit_line": str(line.pk) if line else "",
        },
    )
    return Enrolment(
        application=application,
        status=application.status,
        score=application.score,
        level=application.level,
        tier_limit=limit,
        credit_line=line,
    )


# --- the monthly refresh ------------------------------------------------------------------------


@dataclass
class RefreshReport:
    """What one run of :func:`scores_refresh` did, by line (``skipped``: by person)."""

    asked: int = 0
    retiered: int = 0
    frozen: int = 0
    unfrozen: int = 0
    unchanged: int = 0
    skipped: int = 0
    skipped_persons: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in ("asked", "retiered", "frozen", "unfrozen", "unchanged", "skipped")
        }


def scores_refresh(
    *, client: CreditScoreClient | None = None, today: date | None = None
) -> RefreshReport:
    """Ask again the score of every holder of an open line their enrolment granted (a
    ``CreditApplication``) at a bank enrolling on its tier table, under that enrolment's consent
    while it is live, and put each such line on the table. A line a bank granted or set on its
    own (every line of a bank that decides each application), or one whose
    enrolment's consent was revoked, is the bank's business and left alone. The limit moves to the
    score's band (``credit.line_retiered``), a score under the lowest band (or none any more)
    freezes the line (``credit.line_frozen``), and a line frozen for its score is thawed
    when the score is back in a band. A holder whose score cannot be had (the platform down)
    is left as they are until the next run: an outage never freezes anyone. Nothing is sent
    for a line that does not change, so a second run in a month changes nothing.
    """
    client = client or CreditScoreClient()
    report = RefreshReport()
    granted = CreditApplication.objects.filter(
        # A bank that decides each application decides its limits too: only lines granted on
        # a tier table (an auto bank's) are the table's to move.
        partner__enrolment=Partner.Enrolment.AUTO,
        status=CreditApplication.Status.GRANTED,
        credit_line__status__in=[CreditLine.Status.ACTIVE, CreditLine.Status.FROZEN],
        consent__revoked_at__isnull=True,
    )
    # Ids first: each holder is then read and written in transactions of its own, with no
    # cursor held open across them.
    lines_of: dict[int, list[UUID]] = {}
    consent_of: dict[int, int] = {}
    for person_id, line_id, consent_id in granted.order_by("person_id", "created_at").values_list(
        "person_id", "credit_line_id", "consent_id"
    ):
        if line_id not in lines_of.setdefault(person_id, []):
            lines_of[person_id].append(line_id)
        consent_of.setdefault(person_id, consent_id)
    for person_id, line_ids in lines_of.items():
        person = Person.objects.get(pk=person_id)
        consent = Consent.objects.filter(pk=consent_of[person_id], revoked_at__isnull=True).first()
        if consent is None:  # revoked since the query
            continue
        report.asked += 1
        try:
            score = _ask(client, person, consent.reference)
        except ScoreUnavailable:
            report.skipped += 1
            report.skipped_persons.append(person.pk)
            continue
        for line_id in line_ids:
            outcome = _retier(line_id, score)
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


@transaction.atomic(durable=True)
def _retier(line_id: UUID, score: Score | None) -> str:
    """Put one line on its bank's table for ``score``; the outcome's name in the report."""
    actor = "system:score-refresh"
    line = (
        CreditLine.objects.select_for_update().select_related("partner", "person").get(pk=line_id)
    )
    if line.status == CreditLine.Status.CLOSED:
        return "unchanged"
    partner = line.partner
    limit = None if score is None else tier_limit_or_none(partner, score.score)
    scored = {
        "credit_line": str(line.pk),
        "person": str(line.person_id),
        "score": None if score is None else score.score,
        "level": "" if score is None else score.level,
        "as_of": None if score is None else score.as_of.isoformat(),
    }
    if limit is None:
        lowest = lowest_tier_score(partner)
        frozen = credit_line_set_frozen(
            line=line,
            frozen=True,
            reason=CreditLine.FrozenReason.SCORE,
            actor=actor,
            changes={"score": scored["score"], "lowest_tier_score": lowest},
        )
        if not frozen:
            return "unchanged"
        event_record(
            partner=partner,
            type="credit.line_frozen",
            data={**scored, "reason": CreditLine.FrozenReason.SCORE, "lowest_tier_score": lowest},
        )
        return "frozen"
    assert score is not None  # noqa: S101 - a limit comes from a score
    before = line.limit
    thawed = credit_line_set_frozen(
        line=line,
        frozen=False,
        reason=CreditLine.FrozenReason.SCORE,
        actor=actor,
        changes={"score": score.score},
    )
    if limit == before and score.score == line.score and not thawed:
        return "unchanged"
    line, _new = credit_line_grant_to(
        actor=actor,
        partner=partner,
        person=line.person,
        score=score.score,
        score_provider=settings.CREDIT_SCORE_PROVIDER,
        limit=limit,
    )
    if limit == before and not thawed:
        return "unchanged"  # a new score in the same band: recorded on the line, nothing to tell
    event_record(
        partner=partner,
        type="credit.line_retiered",
        data={
            **scored,
            "limit_before": fen_to_yuan(before),
            "limit": fen_to_yuan(limit),
            "status": line.status,
        },
    )
    return "unfrozen" if thawed else "retiered"
