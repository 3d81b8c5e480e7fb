"""Patients sign in with their phone number and password (staff with their user name)."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts import crypto
from accounts.models import Person
from accounts.services.persons import PHONE


class PhoneBackend(ModelBackend):
    """Find the login of the person whose phone this is, by its keyed hash."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        phone = _digits(username or "")
        if not PHONE.match(phone) or password is None:
            return None
        people = list(
            Person.objects.filter(
                phone_hash__in=crypto.lookup_hashes(phone), user__isnull=False
            ).select_related("user")
        )
        if not people:
            # Hash a password anyway, so an unknown number takes as long as a known one and
            # the answer's timing does not tell who has an account.
            get_user_model()().set_password(password)
        for person in people:
            user = person.user
            if (
                user is not None
                and user.check_password(password)
                and self.user_can_authenticate(user)
            ):
                return user
        return None


def _digits(phone: str) -> str:
    """A phone number as typed, without the blanks and dashes people put in it."""
    return phone.strip().replace(" ", "").replace("-", "")


def sign_in_name(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str:
    """The login a sign-in attempt is counted against (django-axes): a mobile number however
    it is spaced, or the user name as typed."""
    typed = str((credentials or {}).get("username") or "").strip()
    phone = _digits(typed)
    return phone if PHONE.match(phone) else typed


def client_address(request: HttpRequest) -> str | None:
    """The address a sign-in attempt is counted against (django-axes). Behind the proxies named
    in ``DJANGO_TRUSTED_PROXIES``, the nearest address in X-Forwarded-For that is not one of
    them; otherwise the peer's own address (a forwarded header from anyone else is ignored)."""
    peer = request.META.get("REMOTE_ADDR")
    trusted = settings.TRUSTED_PROXIES
    if peer not in trusted:
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for address in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        if address not in trusted:
            return address
    return peer
