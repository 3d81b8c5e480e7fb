"""A HIS learns its institution's departments, and admits by a department's code."""

import pytest

from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import staff_create
from tests.factories import KeyedClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def hospitals():
    first = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    second = institution_ensure(actor="test", code="XMH2", name="厦门市第二医院")
    for institution, deposit in ((first, 200_000), (second, 150_000)):
        department_ensure(
            actor="test", institution=institution, code="IM", name="内科", default_deposit=deposit
        )
        department_ensure(actor="test", institution=institution, code="OPD", name="门诊")
    return first, second


def client_at(institution, role: str = "cashier") -> KeyedClient:
    _, token = staff_create(
        actor="test", username=f"{role}-{institution}", role=role, institution=institution
    )
    client = KeyedClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_staff_list_their_own_institutions_departments_by_code(hospitals):
    first, second = hospitals
    answer = client_at(second, "finance").get("/api/v1/departments/")
    assert answer.status_code == 200
    body = answer.json()
    assert body["count"] == 2
    assert [(d["code"], d["name"], d["default_deposit"]) for d in body["results"]] == [
        ("IM", "内科", "1500.00"),
        ("OPD", "门诊", "0.00"),
    ]
    assert {d["id"] for d in body["results"]} == set(
        second.departments.values_list("pk", flat=True)
    )


def test_a_platform_operator_has_no_departments_of_their_own(hospitals):
    _, token = staff_create(actor="test", username="ops", role="platform", institution=None)
    client = KeyedClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    # Until the platform's read-only view, its operators hold no staff role here.
    assert client.get("/api/v1/departments/").status_code == 403


def test_admission_takes_the_department_by_code_at_the_callers_institution(hospitals, make_person):
    first, second = hospitals
    person = make_person()
    cashier = client_at(second)
    body = {"person": person.pk, "kind": "inpatient", "department": "IM"}

    by_code = cashier.post("/api/v1/encounters/", body, format="json")
    by_id = cashier.post(
        "/api/v1/encounters/",
        {**body, "department": second.departments.get(code="OPD").pk},
        format="json",
    )

    assert by_code.status_code == 201, by_code.content
    assert by_code.json()["department"] == second.departments.get(code="IM").pk
    assert by_code.json()["deposit"]["required"] == "1500.00"
    assert by_id.status_code == 201
    assert by_id.json()["department"] == second.departments.get(code="OPD").pk


@pytest.mark.parametrize(
    "department, said",
    [
        ("NOPE", "no such department"),
        ("", "a department code (text) or id (a number)"),
        (True, "a department code (text) or id (a number)"),
        (0, "a department code (text) or id (a number)"),
        (2**70, "a department code (text) or id (a number)"),
        ("X" * 33, "a department code (text) or id (a number)"),
        ("99999999999999999999", "no such department"),
    ],
)
def test_a_department_that_names_nothing_is_a_400_on_its_field(
    hospitals, make_person, department, said
):
    cashier = client_at(hospitals[0])
    answer = cashier.post(
        "/api/v1/encounters/",
        {"person": make_person().pk, "kind": "inpatient", "department": department},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["fields"]["department"] == [said]
