"""Patients sign in with their phone number and password (staff with their user name)."""

from typing import Any

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
        phone = (username or "").strip().replace(" ", "").replace("-", "")
        if not PHONE.match(phone) or password is None:
            return None
        people = Person.objects.filter(
            phone_hash__in=crypto.lookup_hashes(phone), user__isnull=False
        ).select_related("user")
        for person in people:
            user = person.user
            if (
                user is not None
                and user.check_password(password)
                and self.user_can_authenticate(user)
            ):
                return user
        return None
