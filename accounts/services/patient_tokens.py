"""Patients' sign-in tokens for the city's app: issued after an SMS code, expiring, revocable;
only their SHA-256 is stored (as staff tokens)."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import PatientToken, Person
from accounts.services.audit import audit_record
from accounts.services.staff import token_hash


def patient_token_issue(*, person: Person, actor: str) -> str:
    """A new token for ``person``; the key is returned once and never stored. Call inside the
    transaction of the sign-in it comes from."""
    key = secrets.token_urlsafe(32)
    token = PatientToken.objects.create(
        person=person,
        key_hash=token_hash(key),
        prefix=key[:8],
        expires_at=timezone.now() + timedelta(days=settings.PATIENT_TOKEN_DAYS),
    )
    audit_record(actor=actor, action="patient.token_issue", obj=token, changes={})
    return key


def patient_token_find(key: str) -> PatientToken | None:
    """The live token (not expired, not revoked) for ``key``, with its person."""
    return (
        PatientToken.objects.select_related("person")
        .filter(key_hash=token_hash(key), revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def patient_token_revoke(*, token: PatientToken, actor: str) -> None:
    """Sign out: the token answers no more."""
    updated = PatientToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if updated:
        audit_record(actor=actor, action="patient.token_revoke", obj=token, changes={})
