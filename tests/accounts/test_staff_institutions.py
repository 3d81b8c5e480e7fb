"""Staff belong to one institution; the city platform's operators to none."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.exceptions import InvalidInput
from accounts.models import StaffMember
from accounts.services.institutions import institution_ensure
from accounts.services.staff import staff_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def hospitals():
    return (
        institution_ensure(actor="test", code="XMH1", name="厦门市第一医院"),
        institution_ensure(actor="test", code="XMH2", name="厦门市第二医院"),
    )


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_create_staff_places_a_cashier_at_their_institution(hospitals):
    lines = run("create_staff", "zhang", "--role", "cashier", "--institution", "XMH2")
    assert lines[0].startswith("token=")
    assert "at XMH2" in lines[1]
    member = StaffMember.objects.get(user__username="zhang")
    assert member.institution == hospitals[1]


def test_a_platform_operator_belongs_to_no_institution(hospitals):
    lines = run("create_staff", "city-ops", "--role", "platform")
    assert "at the platform" in lines[1]
    assert StaffMember.objects.get(user__username="city-ops").institution is None
    with pytest.raises(CommandError, match="belong to no institution"):
        run("create_staff", "city-ops-2", "--role", "platform", "--institution", "XMH1")


@pytest.mark.parametrize(
    "args, said",
    [
        (("create_staff", "li", "--role", "cashier"), "--institution CODE is needed"),
        (("create_staff", "li", "--role", "finance", "--institution", "NOPE"), "no institution"),
    ],
)
def test_staff_without_an_institution_are_refused_and_nothing_is_made(hospitals, args, said):
    with pytest.raises(CommandError, match=said):
        run(*args)
    assert not get_user_model().objects.filter(username="li").exists()


def test_a_user_works_at_one_institution_only(hospitals):
    first, second = hospitals
    staff_create(actor="test", username="wang", role="cashier", institution=first)
    staff_create(actor="test", username="wang", role="finance", institution=first)  # a 2nd role

    with pytest.raises(InvalidInput, match="another institution") as refused:
        staff_create(actor="test", username="wang", role="cashier", institution=second)
    assert refused.value.field == "institution"
    with pytest.raises(InvalidInput, match="another institution"):
        staff_create(actor="test", username="wang", role="platform", institution=None)
    assert StaffMember.objects.get(user__username="wang").institution == first


def test_staff_made_before_institutions_are_placed_when_given_a_role_again(hospitals):
    user = get_user_model().objects.create(username="old-hand")
    staff_create(actor="test", username="old-hand", role="cashier", institution=hospitals[0])
    assert StaffMember.objects.get(user=user).institution == hospitals[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("institutions", [1, 2])
def test_the_migration_places_earlier_staff_at_the_only_institution(institutions):
    """Staff made before institutions scoped them: with one institution, they work there;
    with several, nobody guesses (create_staff places each)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("accounts", "0004_idempotentrequest_to_core")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    for n in range(institutions):
        old.get_model("accounts", "Institution").objects.create(code=f"H{n}", name=f"医院{n}")
    group = old.get_model("auth", "Group").objects.create(name="cashier")
    cashier = old.get_model("auth", "User").objects.create(username="early-cashier")
    cashier.groups.add(group)
    old.get_model("auth", "User").objects.create(username="not-staff")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    placed = {m.user.username: m.institution.code for m in StaffMember.objects.all()}
    assert placed == ({"early-cashier": "H0"} if institutions == 1 else {})
