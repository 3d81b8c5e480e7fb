"""Staff API: persons and family links, roles, the error shape, pagination, idempotency."""

from datetime import date

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditEvent, FamilyLink, Person
from accounts.services.staff import token_revoke
from tests.factories import home_institution

pytestmark = pytest.mark.django_db


def error_of(response):
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def test_enrol_a_person(staff_client, id_number):
    number = id_number(date(2016, 7, 8), female=True)
    response = staff_client("cashier").post(
        "/api/v1/persons/", {"name": "小红", "id_number": number}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id_number_masked"] == number[:6] + "********" + number[-4:]
    assert body["birth_date"] == "2016-07-08"
    assert body["is_minor"] is True
    assert body["sex"] == "F"
    assert "id_number" not in body


def test_the_same_id_number_twice_is_a_conflict(staff_client, id_number):
    client = staff_client("cashier")
    number = id_number(date(1970, 1, 1))
    assert client.post("/api/v1/persons/", {"name": "甲", "id_number": number}).status_code == 201
    again = client.post("/api/v1/persons/", {"name": "甲", "id_number": number.lower()})
    assert again.status_code == 409
    assert error_of(again)["fields"] == {"id_number": [error_of(again)["message"]]}
    assert Person.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "甲", "id_number": "110105194912310021"}, "id_number"),
        ({"name": "", "id_number": "11010519491231002X"}, "name"),
        ({"name": "甲"}, "id_number"),
        ({"name": "甲", "id_number": "11010519491231002X", "phone": "12345"}, "phone"),
    ],
)
def test_bad_person_input_is_a_400_naming_the_field(staff_client, body, field):
    response = staff_client("cashier").post("/api/v1/persons/", body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert Person.objects.count() == 0
    assert AuditEvent.objects.filter(action="person.create").count() == 0


def test_find_by_id_number_or_name_paginated(staff_client, make_person):
    people = [make_person(f"王{i}", seen_at=home_institution()) for i in range(3)]
    elsewhere = make_person("王外", birth=date(1991, 1, 1))  # enrolled by a bank, seen nowhere
    client = staff_client("finance")
    from accounts.selectors import person_id_number

    found = client.post("/api/v1/persons/find/", {"id_number": person_id_number(people[1])})
    assert found.status_code == 200
    assert [p["id"] for p in found.json()["results"]] == [people[1].pk]
    in_url = client.get("/api/v1/persons/", {"id_number": person_id_number(people[1])})
    assert in_url.status_code == 400  # ID numbers stay out of URLs and access logs
    by_name = client.get("/api/v1/persons/", {"name": "王"}).json()
    assert by_name["count"] == 3 and "next" in by_name and len(by_name["results"]) == 3
    # Listed only where seen; found by ID number anywhere.
    assert elsewhere.pk not in {p["id"] for p in by_name["results"]}
    found_anyway = client.post("/api/v1/persons/find/", {"id_number": person_id_number(elsewhere)})
    assert [p["id"] for p in found_anyway.json()["results"]] == [elsewhere.pk]
    unknown = client.post("/api/v1/persons/find/", {"id_number": "11010519491231002X"}).json()
    assert unknown["count"] == 0
    bad = client.post("/api/v1/persons/find/", {"id_number": "123"})
    assert bad.status_code == 400


def test_person_detail_shows_lines_and_links(staff_client, make_person, make_partner):
    parent = make_person("母", birth=date(1985, 1, 1))
    child = make_person("子", birth=date(2015, 1, 1))
    _, bank = make_partner("厦门国际银行")
    from accounts.selectors import person_id_number

    granted = bank.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": person_id_number(parent),
            "name": "母",
            "score": 560,
            "score_provider": "白鹭分",
        },
    )
    assert granted.status_code == 201
    client = staff_client("cashier")
    made = client.post(
        "/api/v1/family-links/",
        {
            "payer": parent.pk,
            "beneficiary": child.pk,
            "relation": "parent_of_minor",
            "consent": True,
            "cap": "800.00",
        },
        format="json",
    )
    assert made.status_code == 201
    assert made.json()["cap"] == "800.00"
    # Given in person at the desk: who recorded it is kept with the link.
    assert made.json()["consent_channel"] == "cashier"
    assert made.json()["consent_recorded_by"].startswith("staff:")
    detail = client.get(f"/api/v1/persons/{parent.pk}/").json()
    assert detail["credit_lines"][0]["limit"] == "1000.00"
    assert detail["credit_lines"][0]["partner"] == "厦门国际银行"
    assert detail["family_links"][0]["beneficiary"] == child.pk
    assert client.get("/api/v1/persons/999999/").status_code == 404


def test_family_link_rule_failure_is_a_400_naming_the_rule(staff_client, make_person):
    parent = make_person("母", birth=date(1985, 1, 1))
    adult = make_person("子", birth=date(2000, 1, 1))
    response = staff_client("cashier").post(
        "/api/v1/family-links/",
        {
            "payer": parent.pk,
            "beneficiary": adult.pk,
            "relation": "parent_of_minor",
            "consent": True,
        },
        format="json",
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "family_rule"
    assert "under 18" in error["fields"]["beneficiary"][0]
    missing = staff_client("cashier").post(
        "/api/v1/family-links/",
        {"payer": parent.pk, "beneficiary": 999999, "relation": "parent_of_minor", "consent": True},
        format="json",
    )
    assert missing.status_code == 400
    assert error_of(missing)["fields"] == {"beneficiary": ["no such person"]}
    assert FamilyLink.objects.count() == 0


def test_revoke_a_family_link(staff_client, make_person):
    child = make_person("子", birth=date(1990, 1, 1))
    mother = make_person("母", birth=date(1960, 1, 1))
    client = staff_client("cashier")
    made = client.post(
        "/api/v1/family-links/",
        {
            "payer": child.pk,
            "beneficiary": mother.pk,
            "relation": "child_of_parent",
            "consent": True,
        },
        format="json",
    ).json()
    revoked = client.post(f"/api/v1/family-links/{made['id']}/revoke/")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert client.post("/api/v1/family-links/999999/revoke/").status_code == 404


def test_idempotency_key_replays_the_first_answer(staff_client, id_number):
    client = staff_client("cashier")
    body = {"name": "甲", "id_number": id_number(date(1970, 1, 1))}
    first = client.post("/api/v1/persons/", body, format="json", HTTP_IDEMPOTENCY_KEY="enrol-1")
    again = client.post("/api/v1/persons/", body, format="json", HTTP_IDEMPOTENCY_KEY="enrol-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    other = client.post(
        "/api/v1/persons/",
        {**body, "name": "乙"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="enrol-1",
    )
    assert other.status_code == 409
    assert error_of(other)["code"] == "conflict"
    assert Person.objects.count() == 1


def test_a_failed_request_is_not_remembered_under_its_key(staff_client, id_number):
    client = staff_client("cashier")
    bad = {"name": "甲", "id_number": "110105194912310021"}
    assert client.post("/api/v1/persons/", bad, HTTP_IDEMPOTENCY_KEY="k").status_code == 400
    good = {"name": "甲", "id_number": id_number(date(1970, 1, 1))}
    assert client.post("/api/v1/persons/", good, HTTP_IDEMPOTENCY_KEY="k").status_code == 201


def test_roles_and_tokens(staff_client, make_person):
    person = make_person()
    assert APIClient().get(f"/api/v1/persons/{person.pk}/").status_code == 401
    anonymous = APIClient().post("/api/v1/persons/", {})
    assert anonymous.status_code == 401 and error_of(anonymous)["code"] == "not_authenticated"
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token nope")
    assert wrong.get(f"/api/v1/persons/{person.pk}/").status_code == 401
    finance = staff_client("finance")
    assert finance.get(f"/api/v1/persons/{person.pk}/").status_code == 200
    assert finance.post("/api/v1/persons/", {}).status_code == 403  # finance cannot enrol
    assert staff_client("admin").post("/api/v1/persons/", {}).status_code == 400


def test_revoked_token_is_refused(staff_client, make_person):
    from accounts.services.staff import staff_create

    _, token = staff_create(
        actor="test", institution=home_institution(), username="old-cashier", role="cashier"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/persons/").status_code == 200
    assert token_revoke(key=token)
    assert client.get("/api/v1/persons/").status_code == 401


def test_create_staff_prints_a_token(capsys):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    home_institution()
    call_command("create_staff", "alice", role="finance", institution="XMH1", stdout=out)
    lines = out.getvalue().splitlines()
    token = lines[0].removeprefix("token=")
    assert lines[0].startswith("token=") and len(token) > 30
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/persons/").status_code == 200


def test_schema_and_docs_are_served():
    client = APIClient()
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/partner/v1/credit-lines/" in text and "partnerSignature" in text
    assert client.get("/api/docs/").status_code == 200


def test_a_patient_login_sees_only_its_own_person(make_person):
    from accounts.services.staff import patient_user_ensure

    me, other = make_person("本人"), make_person("他人")
    user = patient_user_ensure(actor="test", person=me)
    assert user.username == f"patient-{me.pk}"
    client = APIClient()
    client.force_login(user)
    mine = client.get(f"/api/v1/persons/{me.pk}/")
    assert mine.status_code == 200 and mine.json()["id"] == me.pk
    theirs = client.get(f"/api/v1/persons/{other.pk}/")
    assert theirs.status_code == 403
    assert error_of(theirs)["code"] == "permission_denied"
    assert client.get("/api/v1/persons/").status_code == 401  # staff search is not for patients


def test_a_deadlock_victim_gets_a_409_to_retry_not_a_500():
    import psycopg
    from django.db import OperationalError

    from core.api_errors import exception_handler

    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")
    response = exception_handler(error, {})
    assert response is not None
    assert (response.status_code, response.data["error"]["code"]) == (409, "retry")
    other = OperationalError("disk full")
    other.__cause__ = psycopg.errors.DiskFull("disk full")
    assert exception_handler(other, {}) is None  # a real fault stays a 500


def test_a_post_that_changes_state_needs_an_idempotency_key(id_number):
    from accounts.services.staff import staff_create

    _, token = staff_create(
        actor="test", institution=home_institution(), username="no-key", role="cashier"
    )
    bare = APIClient()  # sends no Idempotency-Key of its own
    bare.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    body = {"name": "甲", "id_number": id_number(date(1970, 1, 1))}
    refused = bare.post("/api/v1/persons/", body, format="json")
    assert refused.status_code == 400
    assert "Idempotency-Key" in error_of(refused)["fields"]
    assert Person.objects.count() == 0
    accepted = bare.post("/api/v1/persons/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert accepted.status_code == 201
