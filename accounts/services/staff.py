import hashlib
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.exceptions import InvalidInput
from accounts.models import Institution, Person, StaffMember, StaffToken

from .audit import audit_record

# Roles of an institution's staff, and the city platform's operators (of no institution).
INSTITUTION_ROLES = ("cashier", "finance", "admin")
PLATFORM_ROLE = "platform"
ROLES = (*INSTITUTION_ROLES, PLATFORM_ROLE)
PATIENT_ROLE = "patient"


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic(durable=True)
def staff_create(
    *, actor: str, username: str, role: str, institution: Institution | None
) -> tuple[AbstractUser, str]:
    """Create (or find) a staff user in ``role`` at ``institution`` and issue a new API token,
    shown only here.

    Staff of an institution work there alone; the platform's operators (role ``platform``)
    belong to none. A user made before institutions scoped staff is placed at ``institution``
    the first time a role is given again.
    """
    if role not in ROLES:
        raise InvalidInput(
            gettext_lazy("role must be one of %(roles)s"),
            field="role",
            params={"roles": ", ".join(ROLES)},
        )
    if role == PLATFORM_ROLE and institution is not None:
        raise InvalidInput(
            gettext_lazy("the platform's operators belong to no institution"), field="institution"
        )
    if role != PLATFORM_ROLE and institution is None:
        raise InvalidInput(
            gettext_lazy("staff of this role belong to an institution"), field="institution"
        )
    username = username.strip()
    if not username or len(username) > 150:
        raise InvalidInput(
            gettext_lazy("a user name of 1 to 150 characters is needed"), field="username"
        )
    user, created = get_user_model().objects.get_or_create(username=username)
    member, _ = StaffMember.objects.select_for_update().get_or_create(
        user=user, defaults={"institution": institution}
    )
    if member.institution_id != (institution.pk if institution else None):
        raise InvalidInput(
            gettext_lazy(
                "this user works at another institution (or on the platform): one place each"
            ),
            field="institution",
        )
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    if role == "admin" and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    audit_record(
        actor=actor,
        action="staff.create" if created else "staff.add_role",
        obj=user,
        changes={
            "username": username,
            "role": role,
            "institution": institution.code if institution else None,
        },
    )
    return user, token_issue(user=user)


def token_issue(*, user: Any, key: str | None = None) -> str:
    """A new API token for ``user``; ``key`` only for a known demo token (seed_demo)."""
    key = key or secrets.token_urlsafe(32)
    StaffToken.objects.create(user=user, key_hash=token_hash(key), prefix=key[:8])
    return key


def token_revoke(*, key: str) -> bool:
    return bool(
        StaffToken.objects.filter(key_hash=token_hash(key), revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


def user_roles(user: AbstractUser) -> set[str]:
    if user.is_superuser:
        return set(ROLES)
    return set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


@transaction.atomic(savepoint=False)
def patient_user_ensure(*, actor: str, person: Person) -> AbstractUser:
    """The Django user of a person's portal sessions, made on their first sign-in by SMS code:
    opaque user name (``patient-<id>``), no usable password (patients sign in with a code,
    never a password). A step of the sign-in service, inside its transaction."""
    user = person.user
    if user is None:
        # No password given: Django stores an unusable one.
        user = get_user_model().objects.create_user(username=f"patient-{person.pk}")
        person.user = user
        person.save(update_fields=["user"])
        audit_record(
            actor=actor, action="person.login", obj=person, changes={"login": user.username}
        )
    group, _ = Group.objects.get_or_create(name=PATIENT_ROLE)
    user.groups.add(group)
    return user
