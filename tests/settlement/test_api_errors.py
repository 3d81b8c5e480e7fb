"""The staff and partner calls, a group for each service: bad input gives 400/404/409 with the
error shape and writes nothing; roles and logins are enforced; idempotent replays write
nothing; every answer carries money as yuan strings with two decimals and the field names of
API.md.

The insurer is the shipped simulator (one process for the module: every bill here is class C,
all self-pay, so no test depends on another's personal-account balance).
"""

import json
import re
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from accounts.services.staff import patient_user_ensure
from core.models import IdempotentRequest
from ledger.models import Hold, Transaction
from settlement.models import (
    Charge,
    Deposit,
    Encounter,
    OutboxEvent,
    Receipt,
    Receivable,
    Repayment,
    Settlement,
)
from tests.factories import charge_line, grant_line

pytestmark = pytest.mark.django_db

YUAN = re.compile(r"^-?\d+\.\d{2}$")
MONEY_KEYS = {
    "amount",
    "available",
    "drawn",
    "held",
    "insurance_fund",
    "limit",
    "net_amount",
    "outstanding",
    "paid",
    "paid_by_channel",
    "paid_by_credit",
    "paid_by_deposit",
    "personal_account",
    "required",
    "self_pay",
    "subtotal",
    "total",
    "unit_price",
}
WRITTEN = (
    Encounter,
    Charge,
    Deposit,
    Settlement,
    Receipt,
    Receivable,
    Repayment,
    OutboxEvent,
    Transaction,
    Hold,
    AuditEvent,
    IdempotentRequest,
)
PASSWORD = "own-login-2024"


# --- helpers ----------------------------------------------------------------------------------


def written() -> dict[str, int]:
    """Row counts of everything a call could write (ledger, audit trail, idempotency keys)."""
    return {model.__name__: model.objects.count() for model in WRITTEN}


def error_of(response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the status and the one error shape; return the error."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if code is not None:
        assert error["code"] == code
    return error


def field_error(fields: dict[str, Any], path: tuple[Any, ...]) -> Any:
    """The error under ``path`` (keys and list indexes); it must be there and not empty."""
    node: Any = fields
    for step in path:
        node = node[step]
    assert node, (path, fields)
    return node


def assert_money_strings(value: Any, key: str = "") -> None:
    """No float anywhere; every money field a yuan string with exactly two decimals."""
    assert not isinstance(value, float), (key, value)
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "paid_by":
                for part in item.values():
                    assert isinstance(part, str) and YUAN.match(part), (name, part)
            assert_money_strings(item, name)
    elif isinstance(value, list):
        for item in value:
            assert_money_strings(item, key)
    elif key in MONEY_KEYS and value is not None:
        assert isinstance(value, str) and YUAN.match(value), (key, value)


def admit(client, person, department, kind: str = "outpatient", **headers: str):
    return client.post(
        "/api/v1/encounters/",
        {"person": person.pk, "kind": kind, "department": department.pk},
        format="json",
        **headers,
    )


def open_encounter(client, person, department, kind: str = "outpatient") -> SimpleNamespace:
    """An open encounter admitted yesterday with one ¥100.00 line charged today."""
    admitted = admit(client, person, department, kind)
    assert admitted.status_code == 201, admitted.json()
    encounter_id = admitted.json()["id"]
    Encounter.objects.filter(pk=encounter_id).update(admitted_at=timezone.now() - timedelta(days=1))
    posted = client.post(
        f"/api/v1/encounters/{encounter_id}/charges/", {"items": [charge_line()]}, format="json"
    )
    assert posted.status_code == 201, posted.json()
    return SimpleNamespace(
        id=encounter_id, person=person, charge=posted.json()["charges"][0]["id"], body=admitted
    )


def settle(client, encounter_id: str, body: dict[str, Any] | None = None, **headers: str):
    return client.post(
        f"/api/v1/encounters/{encounter_id}/settle/", body or {}, format="json", **headers
    )


def _days(n: int) -> str:
    return (timezone.localdate() + timedelta(days=n)).isoformat()


def _replays(send) -> None:
    """``send()`` twice with one Idempotency-Key: the same answer, and nothing written again."""
    first = send()
    assert first.status_code == 201, first.json()
    after_first = written()
    replay = send()
    assert (replay.status_code, replay.json()) == (first.status_code, first.json())
    assert written() == after_first


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def ward(cashier, make_person, department):
    """An open encounter (no credit line, no deposit) with one charge line."""
    return open_encounter(cashier, make_person("王芳"), department)


@pytest.fixture
def settled(cashier, make_person, department, insurer):
    """A settled encounter, paid at the window, with its receipt."""
    stay = open_encounter(cashier, make_person("林峰"), department)
    answer = settle(cashier, stay.id, {"channel": "wechat"})
    assert answer.status_code == 200, answer.json()
    stay.settle = answer.json()
    stay.receipt_no = answer.json()["receipt_no"]
    return stay


# --- admission --------------------------------------------------------------------------------


ENCOUNTER_CASES = [
    ("everything missing", {}, ("person",)),
    ("no kind", {"kind": None}, ("kind",)),
    ("bad kind", {"kind": "emergency"}, ("kind",)),
    ("unknown person", {"person": 987_654_321}, ("person",)),
    ("person not a number", {"person": "王芳"}, ("person",)),
    ("person out of any range", {"person": 10**30}, ("person",)),
    ("unknown department", {"department": 987_654_321}, ("department",)),
    ("no department", {"department": None}, ("department",)),
]


@pytest.mark.parametrize(
    ("changes", "path"),
    [case[1:] for case in ENCOUNTER_CASES],
    ids=[case[0] for case in ENCOUNTER_CASES],
)
def test_an_admission_with_bad_input_is_refused_naming_the_field(
    cashier, make_person, department, changes, path
):
    body = {"person": make_person().pk, "kind": "inpatient", "department": department.pk}
    body = {} if not changes else {**body, **changes}
    body = {key: value for key, value in body.items() if value is not None}
    before = written()
    response = cashier.post("/api/v1/encounters/", body, format="json")
    field_error(error_of(response, 400, "invalid")["fields"], path)
    assert written() == before


def test_an_admission_replayed_with_its_idempotency_key_writes_nothing(
    cashier, make_person, department
):
    person = make_person()
    _replays(lambda: admit(cashier, person, department, "inpatient", HTTP_IDEMPOTENCY_KEY="a-1"))
    assert Encounter.objects.filter(person=person).count() == 1


# --- deposits ---------------------------------------------------------------------------------


DEPOSIT_CASES = [
    ("money as a JSON number", {"amount": 500}, ("amount",)),
    ("money as a JSON float", {"amount": 500.5}, ("amount",)),
    ("three decimals", {"amount": "500.005"}, ("amount",)),
    ("negative", {"amount": "-500.00"}, ("amount",)),
    ("zero", {"amount": "0.00"}, ("amount",)),
    ("not a number", {"amount": "five hundred"}, ("amount",)),
    ("not finite", {"amount": "NaN"}, ("amount",)),
    ("too large", {"amount": "10000000000000.00"}, ("amount",)),
    ("no amount", {"amount": None}, ("amount",)),
    ("bad channel", {"channel": "bitcoin"}, ("channel",)),
    ("no channel", {"channel": None}, ("channel",)),
]


@pytest.mark.parametrize(
    ("changes", "path"),
    [case[1:] for case in DEPOSIT_CASES],
    ids=[case[0] for case in DEPOSIT_CASES],
)
def test_a_deposit_with_bad_input_is_refused_naming_the_field(cashier, ward, changes, path):
    body = {"amount": "500.00", "channel": "cash", **changes}
    body = {key: value for key, value in body.items() if value is not None}
    before = written()
    response = cashier.post(f"/api/v1/encounters/{ward.id}/deposits/", body, format="json")
    field_error(error_of(response, 400, "invalid")["fields"], path)
    assert written() == before


@pytest.mark.parametrize("amount", ["1e3", "1_000.00"])
def test_a_deposit_in_exponent_or_underscore_notation_is_refused(cashier, ward, amount):
    before = written()
    response = cashier.post(
        f"/api/v1/encounters/{ward.id}/deposits/",
        {"amount": amount, "channel": "cash"},
        format="json",
    )
    field_error(error_of(response, 400, "invalid")["fields"], ("amount",))
    assert written() == before


def test_a_deposit_replayed_with_its_idempotency_key_writes_nothing(cashier, ward):
    path = f"/api/v1/encounters/{ward.id}/deposits/"
    body = {"amount": "500.00", "channel": "card"}
    _replays(lambda: cashier.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="d-1"))
    assert Deposit.objects.filter(encounter_id=ward.id).count() == 1


# --- charges ----------------------------------------------------------------------------------


CHARGE_CASES = [
    ("no items field", None, ("items",)),
    ("empty items", [], ("items",)),
    ("501 items", [charge_line()] * 501, ("items",)),
    ("items not a list", "R100", ("items",)),
    ("unit_price a JSON number", [charge_line(unit_price=100)], ("items", "0", "unit_price")),
    ("unit_price three decimals", [charge_line(unit_price="1.005")], ("items", "0", "unit_price")),
    ("unit_price negative", [charge_line(unit_price="-1.00")], ("items", "0", "unit_price")),
    ("bad insurance_class", [charge_line(insurance_class="D")], ("items", "0", "insurance_class")),
    ("quantity zero", [charge_line(quantity="0")], ("items", "0", "quantity")),
    ("quantity negative", [charge_line(quantity="-1")], ("items", "0", "quantity")),
    ("quantity four decimals", [charge_line(quantity="1.0005")], ("items", "0", "quantity")),
    ("no name", [{k: v for k, v in charge_line().items() if k != "name"}], ("items", "0", "name")),
    ("blank code", [charge_line(code="")], ("items", "0", "code")),
    ("bad service_date", [charge_line(service_date="2024-13-01")], ("items", "0", "service_date")),
    ("second line bad", [charge_line(), charge_line(quantity="0")], ("items", "1", "quantity")),
]


@pytest.mark.parametrize(
    ("items", "path"), [case[1:] for case in CHARGE_CASES], ids=[case[0] for case in CHARGE_CASES]
)
def test_charges_with_bad_input_are_refused_naming_the_field(cashier, ward, items, path):
    body = {} if items is None else {"items": items}
    before = written()
    response = cashier.post(f"/api/v1/encounters/{ward.id}/charges/", body, format="json")
    field_error(error_of(response, 400, "invalid")["fields"], path)
    assert written() == before


@pytest.mark.parametrize(
    ("service_date", "index"),
    [(1, 0), (30, 0), (-2, 0), (-400, 0), (1, 1)],
    ids=["tomorrow", "next month", "before admission", "last year", "second line tomorrow"],
)
def test_a_service_date_in_the_future_or_before_admission_is_refused(
    cashier, ward, service_date, index
):
    items = [charge_line(), charge_line()]
    items[index] = charge_line(service_date=_days(service_date))
    before = written()
    response = cashier.post(
        f"/api/v1/encounters/{ward.id}/charges/", {"items": items}, format="json"
    )
    error = error_of(response, 400, "invalid")
    # Checked by the service, the line is named as a whole; the message names the field.
    assert "service_date" in error["message"]
    assert field_error(error["fields"], (f"items[{index}]",)) == [error["message"]]
    assert written() == before


def test_exactly_500_charge_lines_are_accepted(cashier, ward):
    response = cashier.post(
        f"/api/v1/encounters/{ward.id}/charges/",
        {"items": [charge_line(unit_price="0.01")] * 500},
        format="json",
    )
    assert response.status_code == 201
    assert (len(response.json()["charges"]), response.json()["total"]) == (500, "5.00")


def test_a_charge_amount_beyond_the_ceiling_is_refused_not_a_server_error(cashier, ward):
    huge = charge_line(quantity="999999999.999", unit_price="99999999999.99")
    before = written()
    response = cashier.post(
        f"/api/v1/encounters/{ward.id}/charges/", {"items": [huge]}, format="json"
    )
    field_error(error_of(response, 400, "invalid")["fields"], ("items[0]",))
    assert written() == before


def test_charges_replayed_with_their_idempotency_key_write_nothing(cashier, ward):
    path = f"/api/v1/encounters/{ward.id}/charges/"
    body = {"items": [charge_line(code="D001", category="drug", unit_price="12.34")]}
    _replays(lambda: cashier.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="c-1"))
    assert Charge.objects.filter(encounter_id=ward.id).count() == 2


# --- charge reversal --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [({}, ("reason",)), ({"reason": ""}, ("reason",)), ({"reason": "x" * 201}, ("reason",))],
    ids=["no reason", "blank reason", "reason too long"],
)
def test_a_reversal_with_bad_input_is_refused_naming_the_field(cashier, ward, body, path):
    before = written()
    response = cashier.post(f"/api/v1/charges/{ward.charge}/reverse/", body, format="json")
    field_error(error_of(response, 400, "invalid")["fields"], path)
    assert written() == before


def test_reversing_twice_or_reversing_a_reversal_is_refused(cashier, ward):
    reversed_ = cashier.post(
        f"/api/v1/charges/{ward.charge}/reverse/", {"reason": "charged twice"}, format="json"
    )
    assert reversed_.status_code == 201, reversed_.json()
    reversal = reversed_.json()
    assert (reversal["reverses"], reversal["amount"], reversal["quantity"]) == (
        ward.charge,
        "-100.00",
        "-1",
    )
    before = written()
    twice = cashier.post(
        f"/api/v1/charges/{ward.charge}/reverse/", {"reason": "again"}, format="json"
    )
    assert "already reversed" in error_of(twice, 409, "encounter_state")["message"]
    of_reversal = cashier.post(
        f"/api/v1/charges/{reversal['id']}/reverse/", {"reason": "undo"}, format="json"
    )
    assert "cannot itself be reversed" in error_of(of_reversal, 409, "encounter_state")["message"]
    assert written() == before


# --- settle -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["bitcoin", 5, ""], ids=["unknown", "a number", "blank"])
def test_a_settle_with_a_bad_channel_is_refused_and_the_encounter_stays_open(
    cashier, ward, insurer, channel
):
    before = written()
    response = settle(cashier, ward.id, {"channel": channel})
    field_error(error_of(response, 400, "invalid")["fields"], ("channel",))
    assert written() == before
    assert Encounter.objects.get(pk=ward.id).status == "open"


def test_settle_twice_is_refused_and_changes_nothing(cashier, settled, insurer):
    before = written()
    again = settle(cashier, settled.id, {"channel": "cash"})
    error_of(again, 409, "already_settled")
    assert written() == before
    assert Encounter.objects.get(pk=settled.id).status == "settled"
    bill = cashier.get(f"/api/v1/encounters/{settled.id}/bill/").json()
    assert bill["settlement"] == settled.settle


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/encounters/{id}/charges/", {"items": [charge_line()]}),
        ("/api/v1/encounters/{id}/deposits/", {"amount": "100.00", "channel": "cash"}),
        ("/api/v1/charges/{charge}/reverse/", {"reason": "charged twice"}),
    ],
    ids=["charge", "deposit", "reverse"],
)
def test_a_change_after_settlement_is_refused_and_writes_nothing(cashier, settled, path, body):
    before = written()
    response = cashier.post(path.format(id=settled.id, charge=settled.charge), body, format="json")
    error_of(response, 409, "encounter_state")
    assert written() == before


def test_a_settle_whose_self_pay_is_not_covered_is_refused_and_the_encounter_reopens(
    cashier, ward, insurer
):
    before = written()
    refused = settle(cashier, ward.id)
    error = error_of(refused, 409, "self_pay_not_covered")
    assert "channel" in error["fields"]
    assert Encounter.objects.get(pk=ward.id).status == "open"
    assert written() == before

    paid = settle(cashier, ward.id, {"channel": "alipay"})
    assert paid.status_code == 200, paid.json()
    assert (paid.json()["status"], paid.json()["funded_by"]) == ("settled", "channel")
    assert paid.json()["self_pay"] == "100.00"


def test_a_settlement_replayed_with_its_idempotency_key_is_the_first_answer(cashier, ward, insurer):
    first = settle(cashier, ward.id, {"channel": "cash"}, HTTP_IDEMPOTENCY_KEY="s-1")
    assert first.status_code == 200
    before = written()
    replay = settle(cashier, ward.id, {"channel": "cash"}, HTTP_IDEMPOTENCY_KEY="s-1")
    assert (replay.status_code, replay.json()) == (200, first.json())
    assert written() == before


# --- bills and receipts: a patient's own login ------------------------------------------------


def _patient_session(person) -> APIClient:
    user = patient_user_ensure(actor="test", person=person)
    client = APIClient()
    client.force_login(user)
    return client


def test_a_patients_own_login_sees_its_own_bill_and_receipt_only(
    cashier, settled, make_person, department, insurer
):
    other = open_encounter(cashier, make_person("赵敏"), department)
    other_receipt = settle(cashier, other.id, {"channel": "cash"}).json()["receipt_no"]
    patient = _patient_session(settled.person)
    before = written()

    bill = patient.get(f"/api/v1/encounters/{settled.id}/bill/")
    assert bill.status_code == 200
    assert bill.json()["settlement"]["receipt_no"] == settled.receipt_no
    receipt = patient.get(f"/api/v1/receipts/{settled.receipt_no}/")
    assert receipt.status_code == 200
    assert receipt.json()["receipt_no"] == settled.receipt_no
    assert receipt.json()["verification_code"]

    error_of(patient.get(f"/api/v1/encounters/{other.id}/bill/"), 403, "permission_denied")
    error_of(patient.get(f"/api/v1/receipts/{other_receipt}/"), 403, "permission_denied")
    # A session is no staff token: the staff calls do not accept it.
    error_of(patient.get("/api/v1/insurance/claims/"), 401)
    error_of(
        patient.post(
            f"/api/v1/encounters/{settled.id}/charges/", {"items": [charge_line()]}, format="json"
        ),
        401,
    )
    assert written() == before


def test_a_logged_out_patient_is_refused(cashier, settled):
    patient = _patient_session(settled.person)
    patient.logout()
    error_of(patient.get(f"/api/v1/encounters/{settled.id}/bill/"), 401)


# --- insurance claims -------------------------------------------------------------------------


def test_an_unknown_claim_status_filter_is_refused(staff_client):
    response = staff_client("finance").get("/api/v1/insurance/claims/?status=lost")
    assert "status" in error_of(response, 400, "invalid")["fields"]


def test_finance_reads_bills_and_claims_and_retries_deferred_claims(staff_client, settled):
    finance = staff_client("finance")
    assert finance.get(f"/api/v1/encounters/{settled.id}/bill/").status_code == 200
    assert finance.get(f"/api/v1/receipts/{settled.receipt_no}/").status_code == 200
    claims = finance.get("/api/v1/insurance/claims/?status=settled")
    assert claims.status_code == 200
    assert [claim["encounter"] for claim in claims.json()["results"]] == [settled.id]
    retried = finance.post("/api/v1/insurance/claims/retry/")
    assert retried.status_code == 202
    assert retried.json() == {"queued": True, "deferred": 0}


# --- every staff call: tokens, roles, bodies, ids and idempotency keys ------------------------


STAFF_CALLS = [
    ("post", "/api/v1/encounters/", {"person": 1, "kind": "outpatient", "department": 1}),
    ("post", "/api/v1/encounters/{id}/deposits/", {"amount": "1.00", "channel": "cash"}),
    ("post", "/api/v1/encounters/{id}/charges/", {"items": [charge_line()]}),
    ("post", "/api/v1/charges/{charge}/reverse/", {"reason": "wrong"}),
    ("get", "/api/v1/encounters/{id}/bill/", None),
    ("post", "/api/v1/encounters/{id}/settle/", {"channel": "cash"}),
    ("get", "/api/v1/receipts/{receipt}/", None),
    ("get", "/api/v1/insurance/claims/", None),
    ("post", "/api/v1/insurance/claims/retry/", None),
]


STAFF_CALL_IDS = ["admit", "deposit", "charge", "reverse", "bill", "settle", "receipt", "claims"]


STAFF_CALL_IDS += ["retry"]


def _call(client, method: str, path: str, body: Any, stay: SimpleNamespace):
    path = path.format(id=stay.id, charge=stay.charge, receipt=getattr(stay, "receipt_no", "x"))
    if method == "get":
        return client.get(path)
    return client.post(path, body, format="json")


@pytest.mark.parametrize(
    "credentials", [None, "Token not-a-real-key", "Bearer abc"], ids=["none", "bad", "scheme"]
)
@pytest.mark.parametrize(("method", "path", "body"), STAFF_CALLS, ids=STAFF_CALL_IDS)
def test_a_staff_call_without_a_valid_token_is_refused(settled, credentials, method, path, body):
    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)
    before = written()
    error_of(_call(client, method, path, body, settled), 401)
    assert written() == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [call for call in STAFF_CALLS if call[0] == "post" and "claims" not in call[1]],
    ids=["admit", "deposit", "charge", "reverse", "settle"],
)
def test_finance_cannot_admit_charge_or_take_money_at_the_window(
    staff_client, ward, method, path, body
):
    finance = staff_client("finance")
    before = written()
    error_of(_call(finance, method, path, body, ward), 403, "permission_denied")
    assert written() == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/encounters/",
        "/api/v1/encounters/{id}/deposits/",
        "/api/v1/encounters/{id}/charges/",
        "/api/v1/charges/{charge}/reverse/",
        "/api/v1/encounters/{id}/settle/",
    ],
)
def test_a_body_that_is_not_json_is_refused(cashier, ward, insurer, path):
    before = written()
    response = cashier.post(
        path.format(id=ward.id, charge=ward.charge), "{not json", content_type="application/json"
    )
    error_of(response, 400)
    assert written() == before


UNKNOWN = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", f"/api/v1/encounters/{UNKNOWN}/", None),
        ("post", f"/api/v1/encounters/{UNKNOWN}/deposits/", {"amount": "1.00", "channel": "cash"}),
        ("post", f"/api/v1/encounters/{UNKNOWN}/charges/", {"items": [charge_line()]}),
        ("post", "/api/v1/charges/987654321/reverse/", {"reason": "wrong patient"}),
        ("post", f"/api/v1/charges/{10**30}/reverse/", {"reason": "wrong patient"}),
        ("get", f"/api/v1/encounters/{UNKNOWN}/bill/", None),
        ("post", f"/api/v1/encounters/{UNKNOWN}/settle/", {}),
        ("get", "/api/v1/receipts/XMH120240101000000/", None),
    ],
    ids=[
        "encounter",
        "deposit",
        "charges",
        "reverse",
        "reverse huge id",
        "bill",
        "settle",
        "receipt",
    ],
)
def test_an_unknown_id_is_not_found(cashier, method, path, body):
    before = written()
    if method == "get":
        response = cashier.get(path)
    else:
        response = cashier.post(path, body, format="json")
    error_of(response, 404, "not_found")
    assert written() == before


def test_an_idempotency_key_over_200_characters_is_refused(cashier, make_person, department):
    person = make_person()
    before = written()
    response = admit(cashier, person, department, HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert "Idempotency-Key" in error_of(response, 400)["fields"]
    assert written() == before


def test_an_idempotency_key_reused_with_another_body_is_refused(cashier, ward):
    path = f"/api/v1/encounters/{ward.id}/deposits/"
    first = cashier.post(
        path, {"amount": "300.00", "channel": "cash"}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1"
    )
    assert first.status_code == 201
    before = written()
    other = cashier.post(
        path, {"amount": "301.00", "channel": "cash"}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1"
    )
    error_of(other, 409, "conflict")
    assert written() == before


def test_a_failed_request_does_not_burn_its_idempotency_key(cashier, ward):
    path = f"/api/v1/encounters/{ward.id}/charges/"
    late = {"items": [charge_line(service_date=_days(1))]}
    refused = cashier.post(path, late, format="json", HTTP_IDEMPOTENCY_KEY="c-2")
    error_of(refused, 400)
    ok = cashier.post(path, {"items": [charge_line()]}, format="json", HTTP_IDEMPOTENCY_KEY="c-2")
    assert ok.status_code == 201


# --- partner calls: repayments, receivables, statements ---------------------------------------


@pytest.fixture
def bank_receivable(cashier, make_partner, make_person, department, insurer):
    """A bank, a borrower with a ¥3,000 line there, and a ¥100.00 receivable from one stay."""
    partner, bank = make_partner()
    person = make_person("陈静")
    line = grant_line(partner, person, limit=300_000)
    stay = open_encounter(cashier, person, department)
    answer = settle(cashier, stay.id)
    assert answer.status_code == 200 and answer.json()["funded_by"] == "credit", answer.json()
    receivable = Receivable.objects.get(encounter_id=stay.id)
    return SimpleNamespace(partner=partner, bank=bank, line=line, receivable=receivable)


def repayment_body(receivable_id: str, **changes: Any) -> dict[str, Any]:
    body = {
        "receivable": receivable_id,
        "amount": "40.00",
        "bank_txn_id": f"TXN-{uuid.uuid4().hex[:12]}",
        "paid_at": timezone.now().isoformat(),
        **changes,
    }
    return {key: value for key, value in body.items() if value is not None}


REPAYMENT_CASES = [
    ("money as a JSON number", {"amount": 40}, "amount"),
    ("three decimals", {"amount": "40.005"}, "amount"),
    ("negative", {"amount": "-40.00"}, "amount"),
    ("zero", {"amount": "0.00"}, "amount"),
    ("no amount", {"amount": None}, "amount"),
    ("no bank_txn_id", {"bank_txn_id": None}, "bank_txn_id"),
    ("blank bank_txn_id", {"bank_txn_id": "  "}, "bank_txn_id"),
    ("bank_txn_id too long", {"bank_txn_id": "T" * 65}, "bank_txn_id"),
    ("bad paid_at", {"paid_at": "yesterday"}, "paid_at"),
    ("no paid_at", {"paid_at": None}, "paid_at"),
    ("receivable not a uuid", {"receivable": "DR0001"}, "receivable"),
    ("no receivable", {"receivable": None}, "receivable"),
    ("over the outstanding", {"amount": "100.01"}, "amount"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [case[1:] for case in REPAYMENT_CASES],
    ids=[case[0] for case in REPAYMENT_CASES],
)
def test_a_repayment_with_bad_input_is_refused_naming_the_field(bank_receivable, changes, field):
    body = repayment_body(str(bank_receivable.receivable.pk), **changes)
    before = written()
    response = bank_receivable.bank.post("/api/partner/v1/repayments/", body)
    field_error(error_of(response, 400, "invalid")["fields"], (field,))
    assert written() == before
    bank_receivable.receivable.refresh_from_db()
    assert (bank_receivable.receivable.outstanding, bank_receivable.receivable.status) == (
        10_000,
        "open",
    )


def test_a_repayment_of_an_unknown_receivable_is_not_found(bank_receivable):
    before = written()
    response = bank_receivable.bank.post(
        "/api/partner/v1/repayments/", repayment_body(str(uuid.uuid4()))
    )
    error_of(response, 404, "not_found")
    assert written() == before


def test_an_unknown_receivable_status_filter_is_refused(make_partner):
    _, bank = make_partner()
    response = bank.get("/api/partner/v1/receivables/?status=late")
    assert "status" in error_of(response, 400, "invalid")["fields"]


@pytest.mark.parametrize("day", ["2024-02-30", "yesterday", "2024-1-1", "2024-13-01"])
def test_a_statement_for_a_bad_date_is_refused(make_partner, day):
    _, bank = make_partner()
    response = bank.get(f"/api/partner/v1/statements/{day}/")
    assert "date" in error_of(response, 400, "invalid")["fields"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/partner/v1/receivables/"),
        ("POST", "/api/partner/v1/repayments/"),
        ("GET", "/api/partner/v1/statements/2024-01-01/"),
    ],
)
def test_a_partner_call_with_a_bad_signature_or_a_staff_token_is_refused(
    bank_receivable, cashier, method, path
):
    body = repayment_body(str(bank_receivable.receivable.pk))
    before = written()
    wrong_secret = bank_receivable.bank.request(method, path, body, secret="not-the-secret")
    error_of(wrong_secret, 401)
    unsigned = APIClient().generic(method, path, json.dumps(body), "application/json")
    error_of(unsigned, 401)
    staff = cashier.generic(method, path, json.dumps(body), "application/json")
    error_of(staff, 401)
    assert written() == before


def test_partner_answers_have_the_fields_of_api_md_and_money_as_yuan_strings(bank_receivable):
    bank, receivable = bank_receivable.bank, bank_receivable.receivable
    listed = bank.get("/api/partner/v1/receivables/")
    assert {"count", "next", "results"} <= set(listed.json())
    fields = {"id", "credit_line", "encounter", "amount", "outstanding", "due_date", "status"}
    assert fields <= set(listed.json()["results"][0])
    repaid = bank.post("/api/partner/v1/repayments/", repayment_body(str(receivable.pk)))
    assert repaid.status_code == 201
    assert {"receivable", "amount", "bank_txn_id", "paid_at"} <= set(repaid.json())
    statement = bank.get(f"/api/partner/v1/statements/{timezone.localdate().isoformat()}/")
    assert set(statement.json()) >= {"reference", "date", "net_amount", "items"}
    assert set(statement.json()["items"][0]) == {"reference", "kind", "amount"}
    line = bank.get(f"/api/partner/v1/credit-lines/{bank_receivable.line.pk}/")
    for answer in (listed, repaid, statement, line):
        assert answer.status_code in (200, 201)
        assert_money_strings(answer.json())


# --- a whole stay, admission to claims: the fields of API.md, money as yuan strings -----------


def test_every_answer_has_the_fields_of_api_md_and_money_as_yuan_strings(
    cashier, staff_client, make_person, department, insurer
):
    person = make_person("黄磊")
    admitted = admit(cashier, person, department, "inpatient")
    assert admitted.status_code == 201
    body = admitted.json()
    assert {"id", "status", "deposit", "funding_line"} <= set(body)
    assert body["status"] == "open" and body["funding_line"] is None
    assert body["deposit"] == {"required": "2000.00", "waived": False, "paid": "0.00"}
    encounter_id = body["id"]
    Encounter.objects.filter(pk=encounter_id).update(admitted_at=timezone.now() - timedelta(days=1))
    answers = [admitted]

    deposit = cashier.post(
        f"/api/v1/encounters/{encounter_id}/deposits/",
        {"amount": "2000.00", "channel": "unionpay"},
        format="json",
    )
    assert deposit.status_code == 201
    assert {"amount": "2000.00", "channel": "unionpay"}.items() <= deposit.json().items()
    answers.append(deposit)

    charged = cashier.post(
        f"/api/v1/encounters/{encounter_id}/charges/",
        {
            "items": [
                charge_line(service_date=_days(-1)),
                charge_line(code="D002", category="drug", quantity="1.5", unit_price="33.33"),
            ]
        },
        format="json",
    )
    assert charged.status_code == 201
    assert set(charged.json()) == {"charges", "total"}
    assert charged.json()["total"] == "150.00"  # 100.00 + round(1.5 × 33.33 = 49.995) = 50.00
    line_fields = {"code", "name", "category", "insurance_class", "quantity", "unit_price"}
    for charge in charged.json()["charges"]:
        assert line_fields | {"id", "amount", "service_date"} <= set(charge)
    answers.append(charged)

    reversed_ = cashier.post(
        f"/api/v1/charges/{charged.json()['charges'][1]['id']}/reverse/",
        {"reason": "not given"},
        format="json",
    )
    assert reversed_.status_code == 201
    assert reversed_.json()["amount"] == "-50.00"
    answers.append(reversed_)

    bill = cashier.get(f"/api/v1/encounters/{encounter_id}/bill/")
    assert {"total", "days", "paid", "outstanding", "settlement"} <= set(bill.json())
    assert (bill.json()["total"], bill.json()["paid"], bill.json()["settlement"]) == (
        "100.00",
        "2000.00",
        None,
    )
    assert [set(day) for day in bill.json()["days"]] == [{"date", "items", "subtotal"}] * 2
    answers.append(bill)

    settled = settle(cashier, encounter_id)
    assert settled.status_code == 200, settled.json()
    result = settled.json()
    assert {
        "status",
        "total",
        "insurance_fund",
        "personal_account",
        "self_pay",
        "funded_by",
        "due_date",
        "receipt_no",
    } <= set(result)
    assert (result["status"], result["funded_by"], result["self_pay"]) == (
        "settled",
        "deposit",
        "100.00",
    )
    answers.append(settled)

    bill = cashier.get(f"/api/v1/encounters/{encounter_id}/bill/")
    assert bill.json()["settlement"] == result
    answers.append(bill)
    receipt = cashier.get(f"/api/v1/receipts/{result['receipt_no']}/")
    assert {"receipt_no", "verification_code", "total", "self_pay"} <= set(receipt.json())
    answers.append(receipt)

    claims = staff_client("finance").get("/api/v1/insurance/claims/")
    assert {"count", "next", "results"} <= set(claims.json())
    claim_fields = {"id", "encounter", "status", "attempts", "last_error"}
    claim_fields |= {"insurance_fund", "personal_account", "self_pay"}
    assert claim_fields <= set(claims.json()["results"][0])
    answers.append(claims)
    retried = cashier.post("/api/v1/insurance/claims/retry/")
    assert retried.status_code == 202
    answers.append(retried)

    for answer in answers:
        assert_money_strings(answer.json())
