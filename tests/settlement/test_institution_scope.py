"""Staff see their own institution's encounters, bills, receipts, claims and refunds through
the API; another institution's are a 404, as if there were none. The city platform's
operators read every institution's and change none."""

from uuid import uuid4

import pytest

from accounts.models import StaffMember
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import staff_create
from settlement.models import Charge, Receipt
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import KeyedClient, charge_item

pytestmark = pytest.mark.django_db


def client_as(username: str, role: str, institution) -> KeyedClient:
    _, token = staff_create(actor="test", username=username, role=role, institution=institution)
    client = KeyedClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def visit(insurer, make_person):
    """A visit settled in cash at 厦门市第一医院 (XMH1), with a charge line; and XMH2 beside."""
    first = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    second = institution_ensure(actor="test", code="XMH2", name="厦门市第二医院")
    ward = department_ensure(actor="test", institution=first, code="IM", name="内科")
    department_ensure(actor="test", institution=second, code="IM", name="内科")
    encounter = encounter_admit(
        actor="test", person=make_person(), department=ward, kind="outpatient"
    )
    charges_post(
        actor="test", encounter_id=encounter.pk, items=[charge_item(20_000)], key=uuid4().hex
    )
    encounter_settle(actor="test", encounter_id=encounter.pk, channel="cash")
    return first, second, encounter


def reads(encounter) -> list[str]:
    receipt = Receipt.objects.get(encounter=encounter, superseded_by__isnull=True)
    return [
        f"/api/v1/encounters/{encounter.pk}/",
        f"/api/v1/encounters/{encounter.pk}/bill/",
        f"/api/v1/receipts/{receipt.receipt_no}/",
    ]


def writes(encounter) -> list[tuple[str, dict]]:
    charge = Charge.objects.filter(encounter=encounter).first()
    return [
        (f"/api/v1/encounters/{encounter.pk}/deposits/", {"amount": "10.00", "channel": "cash"}),
        (f"/api/v1/encounters/{encounter.pk}/charges/", {"items": []}),
        (f"/api/v1/encounters/{encounter.pk}/settle/", {"channel": "cash"}),
        (f"/api/v1/charges/{charge.pk}/reverse/", {"reason": "wrong line"}),
    ]


def test_another_institutions_visit_is_not_found_by_any_call(visit):
    _, second, encounter = visit
    cashier = client_as("cashier-xmh2", "cashier", second)
    for url in reads(encounter):
        assert cashier.get(url).status_code == 404, url
    for url, body in writes(encounter):
        assert cashier.post(url, body, format="json").status_code == 404, url
    assert cashier.get("/api/v1/insurance/claims/").json()["count"] == 0
    assert cashier.get("/api/v1/refunds/").json()["count"] == 0


def test_the_own_institutions_staff_see_it(visit):
    first, _, encounter = visit
    cashier = client_as("cashier-xmh1", "cashier", first)
    for url in reads(encounter):
        assert cashier.get(url).status_code == 200, url
    assert cashier.get("/api/v1/insurance/claims/").json()["count"] == 1


def test_admission_with_another_institutions_department_id_is_refused(visit, make_person):
    first, second, _ = visit
    cashier = client_as("cashier-xmh2", "cashier", second)
    theirs = first.departments.get(code="IM").pk
    answer = cashier.post(
        "/api/v1/encounters/",
        {"person": make_person(name="王五").pk, "kind": "outpatient", "department": theirs},
        format="json",
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"]["department"] == ["no such department"]


def test_the_platform_reads_every_institution_and_changes_nothing(visit):
    _, _, encounter = visit
    platform = client_as("city-ops", "platform", None)
    for url in reads(encounter):
        assert platform.get(url).status_code == 200, url
    assert platform.get("/api/v1/insurance/claims/").json()["count"] == 1
    for url, body in writes(encounter):
        assert platform.post(url, body, format="json").status_code == 403, url


def test_staff_placed_nowhere_see_nothing(visit):
    """A user with a staff role but no place (made before staff belonged to institutions, with
    several institutions there) sees no institution's objects until placed."""
    _, _, encounter = visit
    cashier = client_as("early-cashier", "cashier", visit[0])
    StaffMember.objects.filter(user__username="early-cashier").delete()
    for url in reads(encounter):
        assert cashier.get(url).status_code == 404, url
