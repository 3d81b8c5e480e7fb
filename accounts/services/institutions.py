from django.db import transaction

from accounts.exceptions import InvalidInput
from accounts.models import Department, Institution

from .audit import audit_record


@transaction.atomic
def institution_ensure(
    *, actor: str, code: str, name: str, kind: str = Institution.Kind.HOSPITAL
) -> Institution:
    """Create the institution with this code, or update its name and kind."""
    if kind not in Institution.Kind.values:
        raise InvalidInput("kind must be hospital or community", field="kind")
    institution, created = Institution.objects.update_or_create(
        code=code, defaults={"name": name, "kind": kind}
    )
    audit_record(
        actor=actor,
        action="institution.create" if created else "institution.update",
        obj=institution,
        changes={"code": code, "name": name, "kind": kind},
    )
    return institution


@transaction.atomic
def department_ensure(*, actor: str, institution: Institution, code: str, name: str) -> Department:
    department, created = Department.objects.update_or_create(
        institution=institution, code=code, defaults={"name": name}
    )
    if created:
        audit_record(
            actor=actor, action="department.create", obj=department, changes={"name": name}
        )
    return department
