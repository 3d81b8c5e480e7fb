"""Sign-in backends: staff with a user name and password (Django's ``ModelBackend``),
patients with their mobile number and an SMS code (``SmsCodeBackend``), both counted by
django-axes, whose backend comes first and refuses a locked login."""

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts.exceptions import AccountsError
from accounts.services.persons import PHONE
from accounts.services.sms_codes import patient_sign_in


class SmsCodeBackend(ModelBackend):
    """A patient's portal sign-in: ``authenticate(request, username=phone, sms_code=code)``
    (with ``name`` and ``id_number`` to register a number on nobody). Through
    ``django.contrib.auth.authenticate`` a wrong code is a failed sign-in django-axes counts
    against the number, as a wrong password is against a login. The service's refusal is left
    on ``request.sms_sign_in_refusal`` for the page to say."""

    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        username: str | None = None,
        sms_code: str | None = None,
        name: str = "",
        id_number: str = "",
        **kwargs: Any,
    ) -> Any:
        if request is None or sms_code is None or username is None:
            return None
        try:
            signed_in = patient_sign_in(
                phone=username, code=sms_code, name=name, id_number=id_number, channel="portal"
            )
        except AccountsError as refusal:
            request.sms_sign_in_refusal = refusal  # type: ignore[attr-defined]
            return None
        user = signed_in.user
        return user if user is not None and user.is_active else None


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
