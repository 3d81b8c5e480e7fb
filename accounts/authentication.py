"""Authentication and roles for the staff API (tokens), the partner API (signatures) and the
patient API (bearer tokens from an SMS sign-in).

Kept apart from ``core.api``: DRF imports these classes while it is itself loading.
"""

from typing import Any

from django.db import IntegrityError
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Partner, PartnerKey, PatientToken, Person, StaffToken
from accounts.services.partners import SignatureRejected, partner_authenticate
from accounts.services.patient_tokens import patient_token_find
from accounts.services.staff import token_hash, user_roles


class StaffTokenAuthentication(BaseAuthentication):
    """``Authorization: Token <key>``; only the key's hash is stored."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, StaffToken] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            raise exceptions.AuthenticationFailed("use the header `Authorization: Token <key>`")
        token = (
            StaffToken.objects.select_related("user")
            .filter(key_hash=token_hash(parts[1]), revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class PartnerPrincipal:
    """The authenticated bank partner of a signed request."""

    is_authenticated = True

    def __init__(self, key: PartnerKey) -> None:
        self.key = key
        self.partner: Partner = key.partner

    @property
    def actor(self) -> str:
        return f"partner:{self.partner.pk}:{self.key.key_id}"


class PartnerSignatureAuthentication(BaseAuthentication):
    """The partner API's HMAC signature; see ``accounts.signing``."""

    def authenticate(self, request: Request) -> tuple[PartnerPrincipal, PartnerKey]:
        headers = request.headers
        try:
            key = partner_authenticate(
                key_id=headers.get("X-Partner-Key", ""),
                timestamp=headers.get("X-Timestamp", ""),
                nonce=headers.get("X-Nonce", ""),
                signature=headers.get("X-Signature", ""),
                method=request.method or "",
                path_with_query=request.get_full_path(),
                body=request.body,
            )
        except SignatureRejected as rejected:
            raise exceptions.AuthenticationFailed(str(rejected)) from None
        except IntegrityError:  # pragma: no cover - the nonce insert is guarded
            raise exceptions.AuthenticationFailed("could not record the nonce") from None
        return PartnerPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'HMAC-SHA256 realm="partner"'


class HasRole(BasePermission):
    """Allow staff users holding one of ``roles``."""

    roles: tuple[str, ...] = ()

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not getattr(user, "is_authenticated", False) or isinstance(user, PartnerPrincipal):
            return False
        return bool(user_roles(user) & set(self.roles))  # type: ignore[arg-type]


def roles(*names: str) -> type[HasRole]:
    return type("Roles_" + "_".join(names), (HasRole,), {"roles": names})


def patient_person_id(request: Request) -> int | None:
    """The person id of a patient's own login, or None for anyone else."""
    user = request.user
    if not getattr(user, "is_authenticated", False) or isinstance(user, PartnerPrincipal):
        return None
    person = getattr(user, "person", None)
    return person.pk if person is not None and not user_roles(user) else None  # type: ignore[arg-type]


class IsPartner(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, PartnerPrincipal)


def staff_actor(request: Request) -> str:
    return f"staff:{request.user.pk}:{request.user.get_username()}"


class PatientPrincipal:
    """The patient of a bearer token: ``person`` is who they are, and all they may act on is
    their own data and what they pay for through 亲情付."""

    is_authenticated = True

    def __init__(self, token: PatientToken) -> None:
        self.token = token
        self.person: Person = token.person

    @property
    def pk(self) -> str:  # rate limits and audit name the person
        return f"person:{self.person.pk}"

    @property
    def actor(self) -> str:
        return f"patient:{self.person.pk}"


class PatientTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``, a token from ``auth/token/``: live (not expired, not
    revoked); only its hash is stored."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[PatientPrincipal, PatientToken] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            raise exceptions.AuthenticationFailed("use the header `Authorization: Bearer <token>`")
        token = patient_token_find(parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return PatientPrincipal(token), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsPatient(BasePermission):
    """A patient signed in with a bearer token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, PatientPrincipal)


def patient_of(request: Request) -> Person:
    """The signed-in patient's own person (behind ``IsPatient``)."""
    user = request.user
    if not isinstance(user, PatientPrincipal):  # pragma: no cover - IsPatient admits none else
        raise exceptions.NotAuthenticated()
    return user.person
