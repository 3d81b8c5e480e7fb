"""``create_institution`` and ``create_department``: how a platform operator adds the city's
hospitals and community health centres, and their departments."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, Department, Institution

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_an_institution_is_created_once_and_renamed_by_its_code():
    printed = run("create_institution", "XMCH", "思明区社区卫生服务中心", "--kind", "community")
    institution = Institution.objects.get(code="XMCH")
    assert printed == f"institution_id={institution.pk}"
    assert institution.kind == Institution.Kind.COMMUNITY

    renamed = "思明区鹭江街道社区卫生服务中心"
    again = run("create_institution", "XMCH", renamed, "--kind", "community")

    assert again == printed
    institution.refresh_from_db()
    assert institution.name == renamed
    assert AuditEvent.objects.filter(action__startswith="institution.").count() == 2


@pytest.mark.parametrize(
    "args, said",
    [
        (("create_institution", "", "医院"), "a code is 1 to 32"),
        (("create_institution", "XM H1", "医院"), "a code is 1 to 32"),
        (("create_institution", "X" * 33, "医院"), "a code is 1 to 32"),
        (("create_institution", "XMH9", "  "), "a name of 1 to 200"),
        (("create_institution", "XMH9", "医院", "--kind", "clinic"), "invalid choice"),
    ],
)
def test_a_bad_institution_is_refused_and_nothing_is_made(args, said):
    with pytest.raises(CommandError, match=said):
        run(*args)
    assert not Institution.objects.exists()


def test_a_department_takes_its_default_deposit_in_yuan_and_keeps_it_when_renamed():
    run("create_institution", "XMH1", "厦门市第一医院")
    printed = run("create_department", "XMH1", "IM", "内科", "--default-deposit", "2000.00")
    department = Department.objects.get(institution__code="XMH1", code="IM")
    assert printed == f"department_id={department.pk}"
    assert department.default_deposit == 200_000

    assert run("create_department", "XMH1", "IM", "内科一病区") == printed
    department.refresh_from_db()
    assert (department.name, department.default_deposit) == ("内科一病区", 200_000)


def test_one_code_names_a_department_at_each_institution():
    run("create_institution", "XMH1", "厦门市第一医院")
    run("create_institution", "XMH2", "厦门市第二医院")
    first = run("create_department", "XMH1", "IM", "内科")
    second = run("create_department", "XMH2", "IM", "内科")
    assert first != second
    assert Department.objects.filter(code="IM").count() == 2


@pytest.mark.parametrize(
    "args, said",
    [
        (("create_department", "NOPE", "IM", "内科"), "no institution with code 'NOPE'"),
        (("create_department", "XMH1", "IM", "内科", "--default-deposit", "2000.5.0"), "yuan"),
        (("create_department", "XMH1", "IM", "内科", "--default-deposit", "1e3"), "yuan"),
        (("create_department", "XMH1", "IM", "内科", "--default-deposit", "-1.00"), "zero or"),
        (("create_department", "XMH1", "I M", "内科"), "a code is 1 to 32"),
    ],
)
def test_a_bad_department_is_refused_and_nothing_is_made(args, said):
    run("create_institution", "XMH1", "厦门市第一医院")
    with pytest.raises(CommandError, match=said):
        run(*args)
    assert not Department.objects.exists()
