"""A person's consents to uses of their data (PIPL): recorded with the words agreed, the
channel and the time, and revocable by the person at any time."""

from uuid import UUID

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.exceptions import InvalidInput
from accounts.models import Consent, Person

from .audit import audit_record

CHANNELS = ("app", "portal", "desk")


@transaction.atomic(savepoint=False)
def consent_record(
    *,
    actor: str,
    person: Person,
    purpose: str,
    scope: str,
    channel: str,
    reference: UUID | None = None,
    recorded_by: str = "",
) -> Consent:
    """Record a consent given now: a step of the service it permits, in its transaction.
    ``reference`` is the id already named to another party (the credit-score platform)."""
    if purpose not in Consent.Purpose.values:
        raise InvalidInput(gettext_lazy("unknown consent purpose"), field="purpose")
    if channel not in CHANNELS:
        raise InvalidInput(gettext_lazy("channel must be app, portal or desk"), field="channel")
    if not scope.strip():
        raise InvalidInput(gettext_lazy("the words agreed to are needed"), field="scope")
    consent = Consent(
        person=person, purpose=purpose, scope=scope, channel=channel, recorded_by=recorded_by
    )
    if reference is not None:
        consent.reference = reference
    consent.save(force_insert=True)
    audit_record(
        actor=actor,
        action="consent.grant",
        obj=consent,
        changes={"purpose": purpose, "channel": channel, "reference": str(consent.reference)},
    )
    return consent


def live_consent(person: Person, purpose: str) -> Consent | None:
    """The person's newest consent for ``purpose`` not revoked, if any."""
    return (
        Consent.objects.filter(person=person, purpose=purpose, revoked_at__isnull=True)
        .order_by("-granted_at", "-pk")
        .first()
    )


@transaction.atomic(durable=True)
def consent_revoke(*, actor: str, person: Person, consent_id: int) -> Consent:
    """Withdraw a consent of ``person`` (another person's is ``Consent.DoesNotExist``). Nothing
    is asked under it any more: the monthly score refresh passes the person's lines by, which
    keep their limits. Revoking twice is harmless."""
    consent = Consent.objects.select_for_update().get(pk=consent_id, person=person)
    if consent.revoked_at is None:
        consent.revoked_at = timezone.now()
        consent.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="consent.revoke",
            obj=consent,
            changes={"purpose": consent.purpose},
        )
    return consent
