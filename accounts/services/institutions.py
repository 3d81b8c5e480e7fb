import re

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from accounts.exceptions import InvalidInput
from accounts.models import Department, Institution

from .audit import audit_record

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def _code_and_name(code: str, name: str) -> tuple[str, str]:
    code, name = (code or "").strip(), (name or "").strip()
    if not CODE.match(code):
        raise InvalidInput(
            _("a code is 1 to 32 letters, digits, '-' or '_', starting with a letter or digit"),
            field="code",
        )
    if not name or len(name) > 200 or not name.isprintable():
        raise InvalidInput(_("a name of 1 to 200 printable characters is needed"), field="name")
    return code, name


@transaction.atomic(durable=True)
def institution_ensure(
    *, actor: str, code: str, name: str, kind: str = Institution.Kind.HOSPITAL
) -> Institution:
    """Create the institution with this code, or update its name and kind."""
    code, name = _code_and_name(code, name)
    if kind not in Institution.Kind.values:
        raise InvalidInput(_("kind must be hospital or community"), field="kind")
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


@transaction.atomic(durable=True)
def department_ensure(
    *,
    actor: str,
    institution: Institution,
    code: str,
    name: str,
    default_deposit: int | None = None,
) -> Department:
    """Create the department with this code, or update its name; with ``default_deposit``
    (fen), also set the inpatient deposit it takes when the diagnosis table has none."""
    code, name = _code_and_name(code, name)
    if default_deposit is not None and (
        isinstance(default_deposit, bool)
        or not isinstance(default_deposit, int)
        or default_deposit < 0
    ):
        raise InvalidInput(_("the default deposit is zero or more fen"), field="default_deposit")
    defaults: dict[str, object] = {"name": name}
    if default_deposit is not None:
        defaults["default_deposit"] = default_deposit
    existing = (
        Department.objects.select_for_update().filter(institution=institution, code=code).first()
    )
    before = (
        None
        if existing is None
        else {"name": existing.name, "default_deposit": existing.default_deposit}
    )
    department, created = Department.objects.update_or_create(
        institution=institution, code=code, defaults=defaults
    )
    changes = {k: v for k, v in defaults.items() if before is None or before[k] != v}
    if changes:  # ensuring what is already so writes no audit row
        audit_record(
            actor=actor,
            action="department.create" if created else "department.update",
            obj=department,
            changes=changes,
        )
    return department
