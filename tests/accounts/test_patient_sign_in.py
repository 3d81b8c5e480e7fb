"""Patients sign in (and register) with an SMS code: the patient API's auth/sms, auth/token,
auth/logout and me, the code's rules, and the code travelling through the real SMS simulator.
"""

import json
from datetime import date, timedelta
from uuid import uuid4

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import AuditEvent, PatientToken, Person, SmsCode, SmsMessage
from accounts.selectors import person_id_number
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.notices import sms_deliver
from accounts.services.sms_codes import CODE_TRIES, DAILY_CODES, RESEND_SECONDS
from accounts.sms.client import SmsClient
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.accounts.simulators import started
from tests.factories import (
    INSURER_DOWN,
    charge_item,
    grant_line,
    make_id_number,
)

pytestmark = pytest.mark.django_db

SMS = "/api/patient/v1/auth/sms/"
TOKEN = "/api/patient/v1/auth/token/"
LOGOUT = "/api/patient/v1/auth/logout/"
ME = "/api/patient/v1/me/"


def ask_code(client: APIClient, phone: str):
    return client.post(SMS, {"phone": phone}, format="json")


def sent_code(phone: str) -> str:
    """The code in the outbox's newest message to ``phone`` (before a worker sends it and
    wipes it): what the phone would receive."""
    messages = [
        m
        for m in SmsMessage.objects.filter(template="LOGIN_CODE").order_by("-created_at")
        if crypto.decrypt(m.phone_encrypted) == phone
    ]
    return json.loads(crypto.decrypt(messages[0].params_encrypted))["code"]


def sign_in(client: APIClient, phone: str, code: str, **extra: str):
    return client.post(TOKEN, {"phone": phone, "code": code, **extra}, format="json")


def code_row(phone: str) -> SmsCode:
    return SmsCode.objects.filter(phone_hash=crypto.lookup_hash(phone)).latest("created_at")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def age(phone: str, seconds: float) -> None:
    """Move the phone's codes ``seconds`` into the past: time travel without waiting."""
    for row in SmsCode.objects.filter(phone_hash=crypto.lookup_hash(phone)):
        row.created_at -= timedelta(seconds=seconds)
        row.expires_at -= timedelta(seconds=seconds)
        row.save(update_fields=["created_at", "expires_at"])


# --- asking for a code ------------------------------------------------------------------------


def test_auth_sms_answers_the_same_for_a_known_and_an_unknown_phone(make_person):
    make_person("陈静", phone="13900000101")
    client = APIClient()
    known = ask_code(client, "13900000101")
    unknown = ask_code(client, "13900000102")
    assert known.status_code == unknown.status_code == 202
    assert (
        known.json()
        == unknown.json()
        == {"detail": "a code is on its way by SMS", "expires_in": 300}
    )
    assert sorted(known.headers) == sorted(unknown.headers)
    # Both get a code by SMS: the unknown one may be a new patient about to register.
    for phone in ("13900000101", "13900000102"):
        assert len(sent_code(phone)) == 6
        assert code_row(phone).purpose == "sign_in"


def test_a_bad_phone_is_a_400_on_the_phone():
    answer = ask_code(APIClient(), "12345")
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"].keys() == {"phone"}
    assert not SmsCode.objects.exists()


def test_one_code_a_minute_per_phone_with_retry_after():
    client = APIClient()
    assert ask_code(client, "13900000103").status_code == 202
    again = ask_code(client, "139 0000 0103")  # the same phone, however it is typed
    assert again.status_code == 429
    body = again.json()
    assert body["error"]["code"] == "too_many_codes"
    assert 0 < body["retry_after"] <= RESEND_SECONDS
    assert again["Retry-After"] == str(body["retry_after"])
    assert SmsCode.objects.count() == 1 and SmsMessage.objects.count() == 1
    # Another phone is not held back; and a minute later this one may ask again.
    assert ask_code(client, "13900000104").status_code == 202
    age("13900000103", RESEND_SECONDS + 1)
    assert ask_code(client, "13900000103").status_code == 202


def test_ten_codes_a_day_then_429_until_the_oldest_is_a_day_old():
    client = APIClient()
    phone = "13900000105"
    for index in range(DAILY_CODES):
        assert ask_code(client, phone).status_code == 202, index
        age(phone, 2 * 3600)  # each two hours before the next: 18 hours for ten
    refused = ask_code(client, phone)
    assert refused.status_code == 429
    # The oldest of the ten was asked 20 hours ago: 4 hours to wait.
    assert refused.json()["retry_after"] == pytest.approx(4 * 3600, abs=5)
    assert "ten codes a day" in refused.json()["error"]["message"]
    age(phone, 4 * 3600 + 1)
    assert ask_code(client, phone).status_code == 202


def test_a_new_code_voids_the_earlier_one():
    client = APIClient()
    phone = "13900000106"
    ask_code(client, phone)
    first = sent_code(phone)
    age(phone, RESEND_SECONDS + 1)
    ask_code(client, phone)
    second = sent_code(phone)
    assert SmsCode.objects.filter(voided_at__isnull=False).count() == 1
    if first != second:
        assert sign_in(client, phone, first).json()["error"]["code"] == "wrong_code"


def test_codes_are_stored_only_as_keyed_hashes(make_person):
    make_person("陈静", phone="13900000107")
    ask_code(APIClient(), "13900000107")
    code = sent_code("13900000107")
    row = code_row("13900000107")
    assert code not in row.code_hash and len(row.code_hash) == 64
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_smscode")
        assert code not in repr(cursor.fetchall())
        cursor.execute("SELECT * FROM accounts_smsmessage")
        assert code not in repr(cursor.fetchall())  # the outbox keeps it encrypted


# --- signing in -------------------------------------------------------------------------------


def test_a_known_phone_signs_in_reads_me_and_signs_out(make_person):
    person = make_person("陈静", phone="13900000108")
    client = APIClient()
    ask_code(client, "13900000108")
    answer = sign_in(client, "13900000108", sent_code("13900000108"))
    assert answer.status_code == 200
    assert answer.json()["registered"] is False
    token = answer.json()["token"]
    assert PatientToken.objects.get(person=person).key_hash != token
    me = bearer(token).get(ME)
    assert me.status_code == 200
    assert me.json() == {
        "id": person.pk,
        "name": "陈静",
        "id_number_masked": person.id_number_masked,
        "credit_lines": [],
        "family_links": [],
        "owed": "0.00",
    }
    assert AuditEvent.objects.filter(
        action="patient.sign_in", object_id=str(person.pk), actor=f"patient:{person.pk}"
    ).exists()
    # The code is used: once only.
    again = sign_in(client, "13900000108", sent_code("13900000108"))
    assert (again.status_code, again.json()["error"]["code"]) == (400, "code_not_valid")

    assert bearer(token).post(LOGOUT).status_code == 204
    assert bearer(token).get(ME).status_code == 401
    assert PatientToken.objects.get(person=person).revoked_at is not None


def test_the_fifth_wrong_code_voids_it():
    client = APIClient()
    phone = "13900000109"
    ask_code(client, phone)
    code = sent_code(phone)
    for tries_left in range(CODE_TRIES - 1, 0, -1):
        answer = sign_in(client, phone, wrong(code))
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "wrong_code"
        assert f"{tries_left} more tries" in answer.json()["error"]["message"]
    fifth = sign_in(client, phone, wrong(code))
    assert (
        fifth.json()["error"]["code"] == "wrong_code" and "void" in fifth.json()["error"]["message"]
    )
    assert code_row(phone).voided_at is not None and code_row(phone).attempts == CODE_TRIES
    # Now even the right code is refused, as no code at all.
    right = sign_in(client, phone, code, name="新人", id_number=make_id_number(date(1990, 1, 1)))
    assert (right.status_code, right.json()["error"]["code"]) == (400, "code_not_valid")
    assert not Person.objects.exists()


def test_an_expired_code_is_refused():
    client = APIClient()
    ask_code(client, "13900000110")
    code = sent_code("13900000110")
    age("13900000110", 5 * 60 + 1)
    answer = sign_in(client, "13900000110", code)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "code_not_valid")


def test_a_phone_without_a_code_is_refused_the_same():
    answer = sign_in(APIClient(), "13900000111", "123456")
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "code_not_valid")


def test_a_token_expires():
    client = APIClient()
    ask_code(client, "13900000112")
    token = sign_in(
        client,
        "13900000112",
        sent_code("13900000112"),
        name="林一",
        id_number=make_id_number(date(1991, 2, 3)),
    ).json()["token"]
    assert bearer(token).get(ME).status_code == 200
    PatientToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = bearer(token).get(ME)
    assert refused.status_code == 401
    assert bearer("not-a-token").get(ME).status_code == 401
    assert APIClient().get(ME).status_code == 401


# --- registering ------------------------------------------------------------------------------


def test_a_new_phone_registers_a_new_person_with_name_and_id_number():
    client = APIClient()
    phone = "13900000113"
    number = make_id_number(date(1992, 3, 4))
    ask_code(client, phone)
    code = sent_code(phone)
    bare = sign_in(client, phone, code)
    assert (bare.status_code, bare.json()["error"]["code"]) == (400, "registration_needed")
    assert not Person.objects.exists()
    answer = sign_in(client, phone, code, name="林 二", id_number=number)
    assert answer.status_code == 200 and answer.json()["registered"] is True
    person = Person.objects.get()
    assert person.name == "林 二" and person_id_number(person) == number
    assert person.phone_hash == crypto.lookup_hash(phone)
    actions = set(
        AuditEvent.objects.filter(object_id=str(person.pk)).values_list("action", flat=True)
    )
    assert {"person.create", "patient.register"} <= actions
    assert AuditEvent.objects.filter(action="patient.token_issue").count() == 1
    assert bearer(answer.json()["token"]).get(ME).json()["name"] == "林 二"


def test_a_person_without_a_phone_gets_this_one_when_the_name_matches(make_person):
    holder = make_person("王 磊", birth=date(1985, 6, 2))
    number = person_id_number(holder)
    client = APIClient()
    ask_code(client, "13900000114")
    code = sent_code("13900000114")
    mismatch = sign_in(client, "13900000114", code, name="王五", id_number=number)
    assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (400, "identity_mismatch")
    holder.refresh_from_db()
    assert holder.phone_hash == ""
    assert code_row("13900000114").attempts == 1  # a refused registration is a wrong try
    answer = sign_in(client, "13900000114", code, name="王磊", id_number=number)
    assert answer.status_code == 200 and answer.json()["registered"] is True
    holder.refresh_from_db()
    assert holder.phone_hash == crypto.lookup_hash("13900000114")
    assert Person.objects.count() == 1
    assert bearer(answer.json()["token"]).get(ME).json()["id"] == holder.pk


def test_a_person_with_another_phone_is_a_409(make_person):
    holder = make_person("赵六", phone="13900000115")
    client = APIClient()
    ask_code(client, "13900000116")
    answer = sign_in(
        client,
        "13900000116",
        sent_code("13900000116"),
        name="赵六",
        id_number=person_id_number(holder),
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "phone_elsewhere")
    assert answer.json()["error"]["fields"].keys() == {"phone"}
    holder.refresh_from_db()
    assert holder.phone_hash == crypto.lookup_hash("13900000115")
    assert not PatientToken.objects.exists()


def test_a_bad_id_number_is_a_400_on_it():
    client = APIClient()
    ask_code(client, "13900000117")
    answer = sign_in(client, "13900000117", sent_code("13900000117"), name="某", id_number="123")
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"].keys() == {"id_number"}
    assert not Person.objects.exists()


def test_a_shared_phone_signs_in_the_adult(make_person):
    parent = make_person("陈静", birth=date(1988, 3, 14), phone="13900000118")
    make_person("陈小雨", birth=date(2015, 9, 1), phone="13900000118")
    client = APIClient()
    ask_code(client, "13900000118")
    token = sign_in(client, "13900000118", sent_code("13900000118")).json()["token"]
    assert bearer(token).get(ME).json()["id"] == parent.pk


def test_me_says_what_is_owed_on_own_lines(make_person, make_partner):
    partner, _ = make_partner("厦门国际银行")
    person = make_person("陈静", phone="13900000119")
    grant_line(partner, person, limit=300_000)
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=0
    )
    visit = encounter_admit(actor="test", person=person, department=department, kind="outpatient")
    charges_post(
        key=uuid4().hex,
        actor="test",
        encounter_id=visit.pk,
        items=[charge_item(12_345, code="C1", name="诊查", category="exam")],
    )
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=visit.pk)
    client = APIClient()
    ask_code(client, "13900000119")
    token = sign_in(client, "13900000119", sent_code("13900000119")).json()["token"]
    me = bearer(token).get(ME).json()
    assert me["owed"] == "123.45"
    [line] = me["credit_lines"]
    assert (line["limit"], line["drawn"], line["available"]) == ("3000.00", "123.45", "2876.55")


# --- through the real SMS simulator -----------------------------------------------------------


@pytest.fixture
def gateway(tmp_path):
    simulator = started("run_sms_simulator", tmp_path / "sms-sim.log")
    yield simulator
    simulator.stop()


def test_the_code_reaches_the_sms_simulator_and_signs_in(gateway, make_person):
    person = make_person("陈静", phone="13900000120")
    client = APIClient()
    ask_code(client, "13900000120")
    sender = SmsClient(gateway.url + "/", sign_name="信用就医", timeout=5)
    assert sms_deliver(client=sender) == 1
    (message,) = gateway.request("GET", "/sim/messages?phone=13900000120")["messages"]
    assert message["template"] == "LOGIN_CODE"
    code = message["params"]["code"]
    assert code in message["text"] and len(code) == 6
    # Sent: the outbox keeps no copy of the code any more.
    assert SmsMessage.objects.get().params_encrypted == ""
    answer = sign_in(client, "13900000120", code)
    assert answer.status_code == 200
    assert bearer(answer.json()["token"]).get(ME).json()["id"] == person.pk


# --- at once ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_codes_asked_at_once_for_one_phone_make_one_code():
    from accounts.exceptions import TooManyCodes
    from accounts.services.sms_codes import sign_in_code_send
    from tests.threads import THREADS, run_threads

    results = run_threads(lambda i: sign_in_code_send(phone="13900000130"))
    made = [r for r in results if isinstance(r, SmsCode)]
    refused = [r for r in results if isinstance(r, TooManyCodes)]
    assert (len(made), len(refused)) == (1, THREADS - 1), results
    assert SmsCode.objects.count() == 1 and SmsMessage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_code_used_at_once_signs_in_once():
    from accounts.services.sms_codes import patient_sign_in, sign_in_code_send
    from tests.threads import run_threads

    sign_in_code_send(phone="13900000131")
    code = sent_code("13900000131")
    number = make_id_number(date(1989, 9, 9))

    def register(_: int) -> object:
        return patient_sign_in(
            phone="13900000131", code=code, name="周七", id_number=number, channel="app"
        )

    results = run_threads(register)
    signed_in = [r for r in results if not isinstance(r, Exception)]
    assert len(signed_in) == 1, results
    assert {type(r).__name__ for r in results if isinstance(r, Exception)} == {"CodeNotValid"}
    assert Person.objects.count() == 1 and PatientToken.objects.count() == 1
