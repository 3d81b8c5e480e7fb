"""Fixtures for people, staff clients and signed partner clients, and the charge lines and
credit lines scenarios are built of, shared by every test app.

Loaded as a plugin by ``tests/conftest.py``.
"""

import dataclasses
import itertools
import json
import secrets
import time
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from stdnum.cn import ric

from accounts import crypto, signing
from accounts.models import CreditLine, FamilyLink, Institution
from accounts.selectors import person_id_number
from accounts.services.credit_lines import credit_line_grant
from accounts.services.family import family_link_create
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create
from accounts.services.persons import person_create
from accounts.services.staff import staff_create
from settlement.models import CreditMovement
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.settle import encounter_settle

_sequence = itertools.count(1)


def make_id_number(birth: date, *, female: bool = False, region: str = "350203") -> str:
    """A valid 18-character resident ID number born on ``birth`` (unique per call)."""
    seq = next(_sequence) % 500
    code = seq * 2 + (0 if female else 1)  # odd: male, even: female
    base = f"{region}{birth:%Y%m%d}{code:03d}"
    return base + ric.calc_check_digit(base + "0")  # it expects a placeholder check digit


@pytest.fixture
def id_number():
    return make_id_number


@pytest.fixture
def make_person():
    def make(name: str = "张三", birth: date = date(1980, 5, 17), **kwargs: Any):
        return person_create(actor="test", name=name, id_number=make_id_number(birth), **kwargs)

    return make


class KeyedClient(APIClient):
    """An API client that sends a fresh Idempotency-Key with every POST unless one is given,
    as a well-behaved client does; tests of replays pass their own key."""

    def generic(self, method: str, path: str, *args: Any, **extra: Any) -> Any:
        if method.upper() == "POST" and "HTTP_IDEMPOTENCY_KEY" not in extra:
            extra["HTTP_IDEMPOTENCY_KEY"] = f"test-{uuid4().hex}"
        return super().generic(method, path, *args, **extra)


def home_institution() -> Institution:
    """The institution the tests' staff work at: 厦门市第一医院 (the settlement tests' ward
    and hospital fixtures are there too)."""
    found = Institution.objects.filter(code="XMH1").first()
    return found or institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")


@pytest.fixture
def staff_client():
    """``staff_client("cashier")``: an API client authenticated with a new token in that role,
    at the tests' hospital or at ``institution`` (staff see their own institution's objects);
    the platform's operators work at none."""

    def make(role: str = "cashier", institution: Institution | None = None) -> APIClient:
        _, token = staff_create(
            actor="test",
            institution=None if role == "platform" else institution or home_institution(),
            username=f"{role}-{next(_sequence)}",
            role=role,
        )
        client = KeyedClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return make


class SignedClient:
    """Signs each request as API.md says; ``tamper`` hooks let tests break one part."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id, self.secret = key_id, secret
        self.client = APIClient()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        secret: str | None = None,
        key_id: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
        sent_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ):
        raw = b"" if body is None else json.dumps(body).encode()
        timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(12)
        signature = signing.sign(secret or self.secret, method, path, timestamp_text, nonce, raw)
        extra = {
            "HTTP_X_PARTNER_KEY": key_id or self.key_id,
            "HTTP_X_TIMESTAMP": timestamp_text,
            "HTTP_X_NONCE": nonce,
            "HTTP_X_SIGNATURE": signature,
        }
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        if method.upper() == "POST":
            extra.setdefault("HTTP_IDEMPOTENCY_KEY", f"test-{uuid4().hex}")
        payload = raw if sent_body is None else sent_body
        return self.client.generic(method, path, payload, content_type="application/json", **extra)

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("POST", path, body, **kwargs)


@pytest.fixture
def make_partner():
    """``make_partner("厦门银行")`` → (partner, SignedClient)."""

    def make(name: str | None = None, **kwargs: Any):
        partner, key, secret = partner_create(
            actor="test", name=name or f"bank-{next(_sequence)}", **kwargs
        )
        return partner, SignedClient(key.key_id, secret)

    return make


def grant_line(partner: Any, person: Any, *, limit: int | None = None) -> CreditLine:
    """The bank ``partner`` grants ``person`` a line on a 白鹭分 score of 640: ¥3,000.00 by
    the default tier table, or ``limit`` fen."""
    line, _ = credit_line_grant(
        actor="test",
        partner=partner,
        id_number=person_id_number(person),
        name=person.name,
        score=640,
        score_provider="白鹭分",
        limit=limit,
    )
    return line


def link_family(
    payer: Any, beneficiary: Any, relation: str = "parent_of_minor", **changes: Any
) -> FamilyLink:
    """``payer``'s line pays for ``beneficiary``, with the payer's consent given in person at
    the cashier's desk unless ``changes`` say otherwise."""
    fields = {"consent": True, "consent_by": payer.name, "consent_channel": "cashier", **changes}
    return family_link_create(
        actor="test", payer=payer, beneficiary=beneficiary, relation=relation, **fields
    )


def charge_line(**changes: Any) -> dict[str, Any]:
    """One charge line as the API takes it: a class C bed day (all self-pay) of ¥100.00 served
    today, unless ``changes`` say otherwise."""
    return {
        "code": "R100",
        "name": "单人病房",
        "category": "bed",
        "insurance_class": "C",
        "quantity": "1",
        "unit_price": "100.00",
        "service_date": timezone.localdate().isoformat(),
        **changes,
    }


def charge_item(unit_price: int, **changes: Any) -> ChargeItem:
    """One charge line as the services take it: a class C bed day (all self-pay) of
    ``unit_price`` fen served today, unless ``changes`` say otherwise."""
    line = ChargeItem(
        code="R100",
        name="单人病房",
        category="bed",
        insurance_class="C",
        quantity=Decimal(1),
        unit_price=unit_price,
        service_date=timezone.localdate(),
    )
    return dataclasses.replace(line, **changes)


INSURER_DOWN = "http://127.0.0.1:9"  # nothing listens: every settle is all self-pay, on credit


@pytest.fixture
def draws(make_person, make_partner):
    """A bank with three settled credit draws of ¥100, ¥200 and ¥300 today."""
    partner, _ = make_partner("厦门国际银行")
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=0
    )
    department.refresh_from_db()
    for index, amount in enumerate((10_000, 20_000, 30_000)):
        person = make_person(f"病人{index}", birth=date(1970 + index, 1, 1))
        grant_line(partner, person)
        encounter = encounter_admit(
            actor="test", person=person, department=department, kind="outpatient"
        )
        charges_post(
            key=uuid4().hex,
            actor="test",
            encounter_id=encounter.pk,
            items=[charge_item(amount, code="C1", name="诊查", category="exam")],
        )
        with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
            encounter_settle(actor="test", encounter_id=encounter.pk)
    movements = list(CreditMovement.objects.order_by("amount").values_list("reference", "amount"))
    assert [amount for _, amount in movements] == [10_000, 20_000, 30_000]
    return partner, [reference for reference, _ in movements]


def statement_csv(rows: list[tuple[str, str, str]]) -> bytes:
    today = timezone.localdate().isoformat()
    lines = ["bank_txn_id,value_date,amount,reference"]
    lines += [f"{txn},{today},{amount},{reference}" for txn, amount, reference in rows]
    return ("\n".join(lines) + "\n").encode()


def signed_in(client, username: str, password: str) -> bool:
    """Sign ``client`` in through the sign-in page, as a person would (the test client's
    ``login`` skips the request the sign-in limits count by); whether it worked."""
    return client.post("/login/", {"username": username, "password": password}).status_code == 302


def outbox_code(phone: str) -> str:
    """The code of the newest sign-in message queued for ``phone`` (before a worker sends it
    and wipes it): what the phone receives."""
    from accounts.models import SmsMessage

    for message in SmsMessage.objects.filter(template="LOGIN_CODE").order_by("-created_at"):
        if crypto.decrypt(message.phone_encrypted) == phone:
            return str(json.loads(crypto.decrypt(message.params_encrypted))["code"])
    raise AssertionError(f"no code queued for {phone}")


def sms_signed_in(client, phone: str) -> bool:
    """Sign ``client`` in on the portal's page as a patient does: ask a code for ``phone``,
    enter it from the outbox; whether it worked."""
    client.post("/portal/sign-in/", {"phone": phone, "action": "send"})
    body = {"phone": phone, "code": outbox_code(phone), "action": "sign_in"}
    return client.post("/portal/sign-in/", body).status_code == 302
