"""Input a hostile or careless client can send: never a 500, never HTML under ``/api/``.

Every answer under ``/api/`` is JSON with the error shape (API.md § Common rules): a NUL byte in
a path, a query or a header, a body too large or nested too deep, too many form fields, a
malformed id in a path, an unknown path. Pages answer such input with a plain 400 or 404.
Input that parses but makes no sense is refused with a field error: a quantity in exponent
notation, a birth date before 1900, a name with nothing visible in it.
"""

import json
import secrets
import time
from datetime import date
from typing import Any
from uuid import uuid4

import pytest
from django.test import Client, override_settings

from accounts import signing
from accounts.models import AuditEvent, Person
from accounts.services.staff import patient_user_ensure
from core.models import IdempotentRequest
from settlement.models import Charge, Encounter
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import INSURER_DOWN, charge_item, charge_line, make_id_number

pytestmark = pytest.mark.django_db


def error_of(response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the status, a JSON content type and the one error shape; return the error."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b', "id_number": "x"}'


@pytest.fixture
def cashier(staff_client):
    return staff_client("cashier")


@pytest.fixture
def stay(cashier, make_person, department):
    """An open outpatient encounter, admitted through the API."""
    answer = cashier.post(
        "/api/v1/encounters/",
        {"person": make_person("王芳").pk, "kind": "outpatient", "department": department.pk},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    return answer.json()["id"]


@pytest.fixture
def department():
    from accounts.services.institutions import department_ensure, institution_ensure

    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    return department_ensure(actor="test", institution=institution, code="GEN", name="内科")


# --- NUL bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/persons/?name=%00",
        "/api/v1/persons/?name=%E5%BC%A0%00",
        "/api/v1/receipts/%00/",
        "/api/v1/receipts/R%00X/?code=1",
        "/api/v1/receipts/R1/?code=%00",
        "/api/v1/insurance/claims/?status=%00",
        "/api/v1/reconciliation/batches/00000000-0000-0000-0000-000000000000/?limit=%00",
    ],
)
def test_a_nul_byte_in_an_api_path_or_query_is_a_400_with_the_error_shape(cashier, path):
    error_of(cashier.get(path), 400, "invalid")


def test_a_nul_byte_in_a_partner_path_is_a_400_with_the_error_shape(make_partner):
    _, bank = make_partner()
    error_of(bank.get("/api/partner/v1/statements/%00/"), 400, "invalid")
    error_of(bank.get("/api/partner/v1/receivables/?status=%00"), 400, "invalid")


def test_a_nul_byte_in_an_idempotency_key_is_a_400_and_writes_nothing(cashier, id_number):
    body = {"name": "张三", "id_number": id_number(date(1980, 1, 1))}
    answer = cashier.post("/api/v1/persons/", body, format="json", HTTP_IDEMPOTENCY_KEY="k\x00")
    error_of(answer, 400)
    assert Person.objects.count() == 0
    assert IdempotentRequest.objects.count() == 0


def test_a_nul_byte_in_a_json_body_is_a_400_naming_the_field(cashier, id_number):
    body = {"name": "张\x00三", "id_number": id_number(date(1980, 1, 1))}
    error = error_of(cashier.post("/api/v1/persons/", body, format="json"), 400, "invalid")
    assert "name" in error["fields"]
    assert Person.objects.count() == 0


def test_a_nul_byte_in_a_page_path_or_query_is_a_400_not_a_500(make_person):
    person = make_person("林峰")
    user = patient_user_ensure(actor="test", person=person)
    browser = Client()
    browser.force_login(user)
    for path in ("/portal/receipts/%00/", "/portal/receipts/R1/?code=%00", "/login/?next=%00"):
        answer = browser.get(path)
        assert answer.status_code == 400, (path, answer.status_code)
        assert answer["Content-Type"].startswith("text/html")


# --- bodies too large, too deep, too many fields ----------------------------------------------


def test_json_nested_a_thousand_deep_is_a_400_with_the_error_shape(cashier):
    answer = cashier.generic(
        "POST", "/api/v1/persons/", nested(1000), content_type="application/json"
    )
    error_of(answer, 400, "parse_error")
    assert Person.objects.count() == 0


def test_json_nested_a_hundred_thousand_deep_is_a_400_too(cashier):
    answer = cashier.generic(
        "POST", "/api/v1/persons/", nested(100_000), content_type="application/json"
    )
    error_of(answer, 400, "parse_error")


def test_json_nested_a_little_is_still_parsed(cashier):
    """Nesting far below the limit is an ordinary field error, not a parse error."""
    answer = cashier.generic("POST", "/api/v1/persons/", nested(5), content_type="application/json")
    error = error_of(answer, 400, "invalid")
    assert "name" in error["fields"]


def signed_raw(bank, method: str, path: str, raw: bytes):
    """A request signed over ``raw``, as a bank would sign any body it sends."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
    return bank.client.generic(
        method,
        path,
        raw,
        content_type="application/json",
        HTTP_X_PARTNER_KEY=bank.key_id,
        HTTP_X_TIMESTAMP=timestamp,
        HTTP_X_NONCE=nonce,
        HTTP_X_SIGNATURE=signing.sign(bank.secret, method, path, timestamp, nonce, raw),
        HTTP_IDEMPOTENCY_KEY=f"test-{nonce}",
    )


def test_a_signed_partner_body_nested_too_deep_is_a_400(make_partner):
    _, bank = make_partner()
    answer = signed_raw(bank, "POST", "/api/partner/v1/credit-lines/", nested(1000))
    error_of(answer, 400, "parse_error")


def test_a_lone_surrogate_in_a_json_string_is_a_400_not_a_500(cashier, make_partner):
    raw = b'{"name": "\\ud800", "id_number": "x"}'
    answer = cashier.generic("POST", "/api/v1/persons/", raw, content_type="application/json")
    error_of(answer, 400, "parse_error")
    _, bank = make_partner()
    error_of(signed_raw(bank, "POST", "/api/partner/v1/credit-lines/", raw), 400, "parse_error")
    assert Person.objects.count() == 0


def test_a_ten_megabyte_json_body_is_a_400_with_the_error_shape(cashier):
    body = json.dumps({"name": "张" * 5_000_000, "id_number": "x"}).encode()
    assert len(body) > 10_000_000
    answer = cashier.generic("POST", "/api/v1/persons/", body, content_type="application/json")
    error_of(answer, 400, "too_large")
    assert Person.objects.count() == 0


def test_a_ten_megabyte_signed_partner_body_is_a_400_with_the_error_shape(make_partner):
    _, bank = make_partner()
    answer = bank.post(
        "/api/partner/v1/credit-lines/", {"name": "a" * 10_000_000, "id_number": "x"}
    )
    error_of(answer, 400, "too_large")


def test_a_ten_megabyte_form_body_is_a_400_with_the_error_shape(cashier):
    answer = cashier.generic(
        "POST",
        "/api/v1/persons/",
        "name=" + "a" * 10_000_000,
        content_type="application/x-www-form-urlencoded",
    )
    error_of(answer, 400, "too_large")


def test_five_thousand_form_fields_are_a_400_with_the_error_shape(cashier):
    fields = "&".join(f"f{index}=1" for index in range(5000))
    answer = cashier.generic(
        "POST", "/api/v1/persons/", fields, content_type="application/x-www-form-urlencoded"
    )
    error_of(answer, 400, "too_many_fields")
    assert Person.objects.count() == 0


def test_five_thousand_multipart_fields_are_a_400_with_the_error_shape(staff_client):
    finance = staff_client("finance")
    answer = finance.post(
        "/api/v1/reconciliation/bank-statements/",
        {f"f{index}": "1" for index in range(5000)},
        format="multipart",
    )
    error_of(answer, 400, "too_many_fields")


def test_a_body_that_is_not_utf8_json_is_a_400_with_the_error_shape(cashier):
    answer = cashier.generic(
        "POST", "/api/v1/persons/", b'{"name": "\xff"}', content_type="application/json"
    )
    error_of(answer, 400, "parse_error")


# --- malformed ids and unknown paths ----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/persons/abc/",
        "/api/v1/persons/-1/",
        "/api/v1/persons/99999999999999999999999/",
        "/api/v1/encounters/not-a-uuid/bill/",
        "/api/v1/encounters/not-a-uuid/",
        "/api/v1/charges/x/reverse/",
        "/api/v1/reconciliation/batches/1/",
        "/api/v1/no-such-thing/",
        "/api/",
        "/api/v2/persons/",
    ],
)
def test_a_malformed_id_or_unknown_api_path_is_a_404_with_the_error_shape(cashier, path):
    error_of(cashier.get(path), 404, "not_found")


def test_a_malformed_id_in_a_post_is_a_404_with_the_error_shape(cashier):
    error_of(cashier.post("/api/v1/encounters/nope/settle/", {}, format="json"), 404, "not_found")
    error_of(cashier.post("/api/v1/family-links/abc/revoke/"), 404, "not_found")


def test_a_malformed_id_in_a_partner_path_is_a_404_with_the_error_shape(make_partner):
    _, bank = make_partner()
    error_of(bank.get("/api/partner/v1/credit-lines/not-a-uuid/"), 404, "not_found")
    error_of(bank.post("/api/partner/v1/credit-lines/x/freeze/"), 404, "not_found")


def test_an_unknown_api_path_is_json_even_without_credentials():
    error_of(Client().get("/api/v1/persons/abc/"), 404, "not_found")
    error_of(Client().post("/api/v1/nothing/", {}), 404, "not_found")


def test_a_method_the_api_does_not_take_is_a_405_with_the_error_shape(cashier):
    error_of(cashier.delete("/api/v1/persons/"), 405, "method_not_allowed")


def test_an_unknown_page_is_still_an_html_404():
    answer = Client().get("/portal/no-such-page/")
    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("text/html")


# --- values that parse but make no sense ------------------------------------------------------


def _charge(cashier, stay, quantity: Any):
    item = charge_line(quantity=quantity, unit_price="1.00")
    return cashier.post(f"/api/v1/encounters/{stay}/charges/", {"items": [item]}, format="json")


@pytest.mark.parametrize(
    "quantity", ["1e3", "1E3", "1e-3", "1_000", " 1", "+1", "0x10", "NaN", "Infinity", True, ""]
)
def test_a_quantity_not_in_plain_decimal_notation_is_a_400(cashier, stay, quantity):
    error = error_of(_charge(cashier, stay, quantity), 400, "invalid")
    assert "quantity" in error["fields"]["items"]["0"]
    assert Charge.objects.count() == 0


@pytest.mark.parametrize(
    ("quantity", "echoed"),
    [
        ("1000", "1000"),
        ("2.5", "2.5"),
        ("0.125", "0.125"),
        ("10.000", "10"),
        (3, "3"),
        (2.5, "2.5"),
    ],
)
def test_a_quantity_is_echoed_in_plain_decimal_notation(cashier, stay, quantity, echoed):
    answer = _charge(cashier, stay, quantity)
    assert answer.status_code == 201, answer.json()
    assert answer.json()["charges"][0]["quantity"] == echoed
    bill = cashier.get(f"/api/v1/encounters/{stay}/bill/").json()
    assert bill["days"][0]["items"][0]["quantity"] == echoed


@pytest.mark.parametrize("born", [date(1899, 12, 31), date(1800, 1, 1)])
def test_a_birth_date_before_1900_is_a_400_naming_the_id_number(cashier, born):
    number = make_id_number(born)
    answer = cashier.post("/api/v1/persons/", {"name": "张三", "id_number": number}, format="json")
    error = error_of(answer, 400, "invalid")
    assert "id_number" in error["fields"]
    assert Person.objects.count() == 0


def test_a_birth_date_in_1900_is_accepted(cashier):
    number = make_id_number(date(1900, 1, 1))
    answer = cashier.post("/api/v1/persons/", {"name": "张三", "id_number": number}, format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["birth_date"] == "1900-01-01"


def test_a_partner_grant_for_a_birth_date_before_1900_is_a_400(make_partner):
    _, bank = make_partner()
    answer = bank.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": make_id_number(date(1890, 6, 1)),
            "name": "张三",
            "score": 650,
            "score_provider": "白鹭分",
        },
    )
    assert "id_number" in error_of(answer, 400)["fields"]
    assert Person.objects.count() == 0


INVISIBLE_NAMES = {
    "zero-width space": "\u200b",
    "zero-width joiner and non-joiner": "\u200d\u200c",
    "direction marks": "\u200e\u200f",
    "right-to-left override": "\u202e",
    "direction isolates": "\u2066\u2067\u2068\u2069",
    "byte order mark": "\ufeff",
    "word joiner": "\u2060",
    "soft hyphen": "\u00ad",
    "hangul filler": "\u3164",
    "ideographic space and a mark": "\u3000\u200e",
    "combining mark alone": "\u0301",
    "tag characters": "\U000e0041\U000e0042",
}


@pytest.mark.parametrize("name", INVISIBLE_NAMES.values(), ids=INVISIBLE_NAMES.keys())
def test_a_name_with_nothing_visible_is_a_400_naming_the_name(cashier, name):
    number = make_id_number(date(1980, 1, 1))
    answer = cashier.post("/api/v1/persons/", {"name": name, "id_number": number}, format="json")
    error = error_of(answer, 400, "invalid")
    assert "name" in error["fields"]
    assert Person.objects.count() == 0
    assert AuditEvent.objects.filter(action="person.create").count() == 0


def test_a_name_with_a_control_character_is_a_400(cashier):
    number = make_id_number(date(1980, 1, 1))
    answer = cashier.post(
        "/api/v1/persons/", {"name": "张\x07三", "id_number": number}, format="json"
    )
    assert "name" in error_of(answer, 400, "invalid")["fields"]


def test_a_partner_grant_with_an_invisible_name_is_a_400(make_partner):
    _, bank = make_partner()
    answer = bank.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": make_id_number(date(1980, 6, 1)),
            "name": "\u202e\u200b",
            "score": 650,
            "score_provider": "白鹭分",
        },
    )
    assert "name" in error_of(answer, 400)["fields"]
    assert Person.objects.count() == 0


@pytest.mark.parametrize("name", ["张三", "阿依古丽·买买提", "O'Brien", "Zoë", "李\u200d四"])
def test_real_names_are_accepted(cashier, name):
    number = make_id_number(date(1980, 1, 1))
    answer = cashier.post("/api/v1/persons/", {"name": name, "id_number": number}, format="json")
    assert answer.status_code == 201, answer.json()
    assert Encounter.objects.count() == 0


@pytest.mark.parametrize("code", ["é", "验证码", "\u202e1234", "x" * 5000])
def test_a_receipt_code_of_any_text_is_checked_not_a_500(cashier, make_person, department, code):
    encounter = encounter_admit(
        actor="test", person=make_person("林峰"), department=department, kind="outpatient"
    )
    charges_post(
        key=uuid4().hex, actor="test", encounter_id=encounter.pk, items=[charge_item(1_000)]
    )
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        settlement = encounter_settle(actor="test", encounter_id=encounter.pk, channel="cash")
    answer = cashier.get(f"/api/v1/receipts/{settlement.receipt_no}/", {"code": code})
    assert answer.status_code == 200, answer.content
    assert answer.json()["verified"] is False
    right = cashier.get(
        f"/api/v1/receipts/{settlement.receipt_no}/", {"code": answer.json()["verification_code"]}
    )
    assert right.json()["verified"] is True


def test_api_errors_stay_json_with_debug_on(cashier, settings):
    """With DEBUG on (``make run``) Django answers a 404 with its own page; not under /api/."""
    settings.DEBUG = True
    error_of(cashier.get("/api/v1/persons/abc/"), 404, "not_found")
    error_of(cashier.get("/api/v1/receipts/%00/"), 400)


def test_a_limit_refusal_names_no_internal_account_or_fen_amount():
    from core.api_errors import exception_handler
    from ledger.exceptions import LimitExceeded

    answer = exception_handler(LimitExceeded("L-CAP-8f3a", 1200, 50_000), {})
    assert answer.status_code == 409
    error = answer.data["error"]
    assert error["code"] == "limit_exceeded"
    assert "L-CAP" not in error["message"] and "fen" not in error["message"]
