"""The API against its own OpenAPI schema, served by the app at ``/api/schema/``.

Two halves:

- schemathesis generates requests for every operation from the schema (its pytest
  integration: one test per operation) and sends them to the WSGI app, with an admin's staff
  token, signed as a bank signs partner requests, a fresh ``Idempotency-Key`` on every POST, and
  half the time the ids of real objects in the path. No answer may be a 5xx, and every answer
  must be one the schema declares: its status, content type, headers and body.
- a worked example calls every operation once with input that succeeds and holds each answer to
  the schema the same way, so every success body is checked against its exact schema (objects
  allow no field the schema does not list), and asserts that it covered every operation.

The insurer is the shipped simulator, as a child process.
"""

import hashlib
import hmac
import io
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
import schemathesis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from django.urls import URLResolver, get_resolver
from django.utils import timezone
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts import crypto
from accounts.models import SmsMessage
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create
from accounts.services.patient_tokens import patient_token_issue
from accounts.services.staff import staff_create
from core.api import ApiView
from settlement.models import CreditMovement
from settlement.reconciliation.batches import batch_run
from settlement.reconciliation.models import ReconItem
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.accounts.simulators import SimulatorProcess, started
from tests.factories import (
    charge_item,
    grant_line,
    home_institution,
    link_family,
    make_id_number,
    statement_csv,
)
from tests.settlement.conftest import Simulator
from tests.settlement.refunds_owed import refund_owed

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

# Fuzzed examples per operation; with the coverage phase's own cases this keeps the module to
# about a minute on the CI machine.
EXAMPLES = 15

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class SignedApp:
    """The product's WSGI app behind a bank's client: each request under ``/api/partner/`` gets
    ``X-Partner-Key``, ``X-Timestamp``, a new ``X-Nonce`` and ``X-Signature`` over the body
    and the path with its query as the server reads them (API.md § Partner API)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.key_id = ""
        self.secret = ""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith("/api/partner/") and self.secret:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(body)
            path_with_query = WSGIRequest(dict(environ)).get_full_path()
            environ["wsgi.input"] = io.BytesIO(body)
            timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
            method = environ["REQUEST_METHOD"]
            environ["HTTP_X_PARTNER_KEY"] = self.key_id
            environ["HTTP_X_TIMESTAMP"] = timestamp
            environ["HTTP_X_NONCE"] = nonce
            # API.md's rule, written out here rather than borrowed from accounts.signing.
            text = "\n".join(
                [method, path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()]
            )
            environ["HTTP_X_SIGNATURE"] = hmac.new(
                self.secret.encode(), text.encode(), hashlib.sha256
            ).hexdigest()
        return self.app(environ, start_response)


APP = SignedApp(get_wsgi_application())
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP)
OPERATIONS = {
    (operation.method.upper(), operation.path)
    for operation in (result.ok() for result in schema.get_all_operations())
}
TURN = itertools.count()


@pytest.fixture(scope="module")
def insurer_sim(tmp_path_factory) -> Iterator[Simulator]:
    folder = tmp_path_factory.mktemp("contract-insurer")
    simulator = Simulator(folder / "insurer-sim.json", folder / "insurer-sim.log")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def score_sim(tmp_path_factory) -> Iterator[SimulatorProcess]:
    simulator = started("run_credit_score_simulator", tmp_path_factory.mktemp("s") / "s.log")
    yield simulator
    simulator.stop()


@pytest.fixture
def world(insurer_sim, score_sim, tmp_path, settings) -> Iterator[SimpleNamespace]:
    """An admin's token, a bank, and one of each object an operation's path can name."""
    settings.RECON_UPLOAD_DIR = tmp_path / "uploads"
    settings.CREDIT_SCORE_URL = score_sim.url
    _, token = staff_create(
        actor="test",
        institution=home_institution(),
        username=f"admin-{uuid4().hex[:8]}",
        role="admin",
    )
    partner, key, secret = partner_create(actor="test", name=f"bank-{uuid4().hex[:8]}")
    APP.key_id, APP.secret = key.key_id, secret
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="GEN", name="内科", default_deposit=0
    )
    department.refresh_from_db()

    from accounts.services.persons import person_create

    parent = person_create(actor="test", name="林母", id_number=make_id_number(date(1950, 3, 1)))
    child = person_create(actor="test", name="林子", id_number=make_id_number(date(1980, 3, 1)))
    line = grant_line(partner, child)
    link = link_family(child, parent, "child_of_parent")
    with override_settings(INSURER_URL=insurer_sim.url, INSURER_TIMEOUT_SECONDS=3):
        settled = encounter_admit(
            actor="test", person=child, department=department, kind="outpatient"
        )
        charges_post(
            key=uuid4().hex, actor="test", encounter_id=settled.pk, items=[charge_item(12_000)]
        )
        settlement = encounter_settle(actor="test", encounter_id=settled.pk)
        stay = encounter_admit(
            actor="test", person=parent, department=department, kind="outpatient"
        )
        charge = charges_post(
            key=uuid4().hex, actor="test", encounter_id=stay.pk, items=[charge_item(3_000)]
        )[0]
    # A refund owed: paid in cash while the insurer was down, then the claim settled.
    walk_in = person_create(actor="test", name="黄河", id_number=make_id_number(date(1970, 5, 5)))
    owed = refund_owed(insurer_sim, department, walk_in, 50_000)
    # A reconciled statement with one line the ledger does not know, uploaded as finance does.
    finance = APIClient()
    finance.credentials(HTTP_AUTHORIZATION=f"Token {token}", HTTP_IDEMPOTENCY_KEY=uuid4().hex)
    draw = CreditMovement.objects.get(partner=partner)
    content = statement_csv(
        [("W1", f"{draw.amount / 100:.2f}", draw.reference), ("W2", "1.00", "NO-SUCH-REF")]
    )
    uploaded = finance.post(
        "/api/v1/reconciliation/bank-statements/",
        {"bank": partner.name, "file": SimpleUploadedFile("statement.csv", content)},
        format="multipart",
    )
    assert uploaded.status_code == 202, uploaded.content
    batch = batch_run(uploaded.json()["batch"]["id"])
    unknown = ReconItem.objects.get(batch=batch, kind="unknown_reference")
    _, platform_token = staff_create(
        actor="test", institution=None, username=f"ops-{uuid4().hex[:8]}", role="platform"
    )
    # The child's own bearer token (the patient API's reads), and a citizen with no line yet
    # signed in through the city's app, who enrols.
    patient_token = patient_token_issue(person=child, actor="test")
    citizen = person_create(actor="test", name="陈新", id_number=make_id_number(date(1985, 6, 6)))
    citizen_token = patient_token_issue(person=citizen, actor="test")
    yield SimpleNamespace(
        token=token,
        platform_token=platform_token,
        patient_token=patient_token,
        citizen_token=citizen_token,
        partner=partner,
        department=department,
        person=child,
        parent=parent,
        line=line,
        settled=settled,
        stay=stay,
        refund=owed,
        ids={
            "person_id": child.pk,
            "link_id": link.pk,
            "encounter_id": str(stay.pk),
            "charge_id": charge.pk,
            "receipt_no": settlement.receipt_no,
            "line_id": str(line.pk),
            "day": timezone.localdate().isoformat(),
            "batch_id": str(batch.pk),
            "item_id": unknown.pk,
            "refund_id": owed.pk,
        },
    )
    APP.key_id = APP.secret = ""


def _send(case: Any, world: SimpleNamespace) -> Any:
    """Send ``case`` as a client would: a staff token on the staff API, a new key per POST."""
    if case.method.upper() == "POST":
        case.headers = {**(case.headers or {}), "Idempotency-Key": f"contract-{uuid4().hex}"}
    headers = {}
    if case.path.startswith("/api/v1/platform/"):  # the city platform's operators
        headers["Authorization"] = f"Token {world.platform_token}"
    elif case.path.startswith("/api/v1/"):
        headers["Authorization"] = f"Token {world.token}"
    elif case.path.startswith(("/api/patient/v1/enrolment/", "/api/patient/v1/consents/")):
        headers["Authorization"] = f"Bearer {world.citizen_token}"
    elif case.path.startswith("/api/patient/v1/"):
        headers["Authorization"] = f"Bearer {world.patient_token}"
    # The request runs in this thread and the test's transaction: Django must not close that
    # connection when the request ends (its own test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = case.call(headers=headers)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


# --- generated requests -----------------------------------------------------------------------


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_one_the_schema_declares(case, world, insurer_sim):
    if case.path_parameters and next(TURN) % 2 == 0:
        real = {name: world.ids[name] for name in case.path_parameters if name in world.ids}
        case.path_parameters = {**case.path_parameters, **real}
    with override_settings(INSURER_URL=insurer_sim.url, INSURER_TIMEOUT_SECONDS=3):
        _send(case, world)


# --- a worked example through every operation -------------------------------------------------


def test_every_operation_succeeds_with_an_answer_exactly_as_declared(world, insurer_sim):
    called: set[tuple[str, str]] = set()

    def call(method: str, path: str, status: int, **data: Any) -> Any:
        if "body" in data:
            data.setdefault("media_type", "application/json")
        case = schema[path][method].Case(**data)
        response = _send(case, world)
        assert response.status_code == status, (method, path, response.content[:1000])
        called.add((method, path))
        return response.json() if "json" in response.headers.get("content-type", [""])[0] else None

    number = make_id_number(date(2012, 5, 1))
    person = call("POST", "/api/v1/persons/", 201, body={"name": "林小", "id_number": number})
    call("GET", "/api/v1/persons/", 200, query={"name": "林"})
    call("POST", "/api/v1/persons/find/", 200, body={"id_number": number})
    departments = call("GET", "/api/v1/departments/", 200)
    summary = call("GET", "/api/v1/platform/summary/", 200)
    assert "XMH1" in {row["code"] for row in summary["institutions"]}
    assert [d["code"] for d in departments["results"]] == ["GEN"]
    call("GET", "/api/v1/persons/{person_id}/", 200, path_parameters={"person_id": world.person.pk})
    link = call(
        "POST",
        "/api/v1/family-links/",
        201,
        body={
            "payer": world.person.pk,
            "beneficiary": person["id"],
            "relation": "parent_of_minor",
            "consent": True,
            "cap": "500.00",
        },
    )
    call(
        "POST",
        "/api/v1/family-links/{link_id}/revoke/",
        200,
        path_parameters={"link_id": link["id"]},
    )

    # A bank grants a line to a new person, and manages it.
    grantee = make_id_number(date(1975, 8, 8))
    granted = call(
        "POST",
        "/api/partner/v1/credit-lines/",
        201,
        body={
            "id_number": grantee,
            "name": "陈一",
            "score": 610,
            "score_provider": "白鹭分",
            "expires_on": (timezone.localdate() + timedelta(days=365)).isoformat(),
        },
    )
    line = {"line_id": granted["id"]}
    call("GET", "/api/partner/v1/credit-lines/{line_id}/", 200, path_parameters=line)
    for action in ("freeze", "unfreeze", "close"):
        call(
            "POST", f"/api/partner/v1/credit-lines/{{line_id}}/{action}/", 200, path_parameters=line
        )

    # An encounter on the world's credit line: admitted, charged, a line reversed, settled.
    admitted = call(
        "POST",
        "/api/v1/encounters/",
        201,
        body={"person": world.person.pk, "kind": "outpatient", "department": "GEN"},
    )
    stay = {"encounter_id": admitted["id"]}
    call("GET", "/api/v1/encounters/{encounter_id}/", 200, path_parameters=stay)
    today = timezone.localdate().isoformat()
    line_of = {"insurance_class": "C", "category": "exam", "service_date": today}
    charged = call(
        "POST",
        "/api/v1/encounters/{encounter_id}/charges/",
        201,
        path_parameters=stay,
        body={
            "items": [
                {**line_of, "code": "C1", "name": "诊查", "quantity": "2", "unit_price": "40.00"},
                {**line_of, "code": "C2", "name": "化验", "quantity": 1, "unit_price": "15.50"},
            ]
        },
    )
    call(
        "POST",
        "/api/v1/charges/{charge_id}/reverse/",
        201,
        path_parameters={"charge_id": charged["charges"][1]["id"]},
        body={"reason": "重复收费"},
    )
    call("GET", "/api/v1/encounters/{encounter_id}/bill/", 200, path_parameters=stay)
    with override_settings(INSURER_URL=insurer_sim.url, INSURER_TIMEOUT_SECONDS=3):
        settled = call(
            "POST", "/api/v1/encounters/{encounter_id}/settle/", 200, path_parameters=stay
        )
    assert settled["funded_by"] == "credit"
    bill = call("GET", "/api/v1/encounters/{encounter_id}/bill/", 200, path_parameters=stay)
    assert bill["settlement"] == settled
    receipt = call(
        "GET",
        "/api/v1/receipts/{receipt_no}/",
        200,
        path_parameters={"receipt_no": settled["receipt_no"]},
        query={"code": "not-the-code"},
    )
    assert receipt["verified"] is False

    # A deposit at the window, on the world's open encounter of a person without a line.
    call(
        "POST",
        "/api/v1/encounters/{encounter_id}/deposits/",
        201,
        path_parameters={"encounter_id": str(world.stay.pk)},
        body={"amount": "100.00", "channel": "cash"},
    )

    # Insurance claims: listed, and a retry asked for.
    claims = call("GET", "/api/v1/insurance/claims/", 200)
    assert claims["count"] >= 1
    call("POST", "/api/v1/insurance/claims/retry/", 202)

    # The bank: its receivables, the day's statement, a repayment.
    receivables = call("GET", "/api/partner/v1/receivables/", 200, query={"status": "open"})
    owed = receivables["results"][0]
    call("GET", "/api/partner/v1/statements/{day}/", 200, path_parameters={"day": today})
    call(
        "POST",
        "/api/partner/v1/repayments/",
        201,
        body={
            "receivable": owed["id"],
            "amount": "10.00",
            "bank_txn_id": f"TXN-{uuid4().hex[:12]}",
            "paid_at": timezone.now().isoformat(),
        },
    )

    # Finance reconciles the bank's statement: one line paid, one the ledger does not know.
    draws = CreditMovement.objects.filter(partner=world.partner).order_by("pk")
    content = statement_csv(
        [
            (f"B{index}", f"{draw.amount / 100:.2f}", draw.reference)
            for index, draw in enumerate(draws)
        ]
        + [("B-unknown", "12.34", "NO-SUCH-REFERENCE")]
    )
    uploaded = call(
        "POST",
        "/api/v1/reconciliation/bank-statements/",
        202,
        body={"bank": world.partner.name, "file": content},
        media_type="multipart/form-data",
    )
    batch = {"batch_id": uploaded["batch"]["id"]}
    batch_run(batch["batch_id"])
    read = call("GET", "/api/v1/reconciliation/batches/{batch_id}/", 200, path_parameters=batch)
    assert read["status"] == "done" and read["exceptions"], read
    call("GET", "/api/v1/reconciliation/batches/{batch_id}/export/", 200, path_parameters=batch)
    unknown = ReconItem.objects.get(batch_id=batch["batch_id"], kind="unknown_reference")
    call(
        "POST",
        "/api/v1/reconciliation/items/{item_id}/resolve/",
        200,
        path_parameters={"item_id": unknown.pk},
        body={"comment": "another hospital's transfer; returned to the bank"},
    )

    # A refund owed to a patient who paid cash while the insurer was down: listed, paid out.
    refunds = call("GET", "/api/v1/refunds/", 200, query={"status": "owed"})
    assert [r["id"] for r in refunds["results"]] == [world.refund.pk]
    paid = call(
        "POST",
        "/api/v1/refunds/{refund_id}/pay/",
        200,
        path_parameters={"refund_id": world.refund.pk},
        body={"channel": "cash", "reference": "CASH-20261206-001"},
    )
    assert paid["status"] == "paid"

    # A patient reads their encounters, a bill, their refunds and messages.
    mine = call("GET", "/api/patient/v1/encounters/", 200)
    assert str(world.settled.pk) in {row["id"] for row in mine["results"]}
    call(
        "GET",
        "/api/patient/v1/encounters/{encounter_id}/bill/",
        200,
        path_parameters={"encounter_id": str(world.settled.pk)},
    )
    call("GET", "/api/patient/v1/refunds/", 200)
    call("GET", "/api/patient/v1/messages/", 200)

    # A citizen enrols with the only bank on the score the credit-score simulator gives.
    enrolled = call("POST", "/api/patient/v1/enrolment/", 201, body={"consent": True})
    assert enrolled["status"] in {"granted", "declined"} and enrolled["bank"] == world.partner.name
    revoked = call(
        "POST",
        "/api/patient/v1/consents/{consent_id}/revoke/",
        200,
        path_parameters={"consent_id": enrolled["consent"]},
    )
    assert revoked["revoked_at"] is not None

    # A patient signs in with the SMS code (read from the outbox, as the phone would get it),
    # reads their own data and signs out.
    phone = "13900009999"
    call("POST", "/api/patient/v1/auth/sms/", 202, body={"phone": phone})
    message = SmsMessage.objects.get(template="LOGIN_CODE")
    code = json.loads(crypto.decrypt(message.params_encrypted))["code"]
    signed_in = call(
        "POST",
        "/api/patient/v1/auth/token/",
        200,
        body={
            "phone": phone,
            "code": code,
            "name": "郑新",
            "id_number": make_id_number(date(1993, 7, 7)),
        },
    )
    world.patient_token = signed_in["token"]
    me = call("GET", "/api/patient/v1/me/", 200)
    assert me["name"] == "郑新" and me["owed"] == "0.00"
    call("POST", "/api/patient/v1/auth/logout/", 204)

    assert called == OPERATIONS, OPERATIONS ^ called


def _routes(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(METHOD, path template) of every API view the URLconf routes, as the schema spells it."""
    for pattern in patterns:
        route = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
            continue
        view = getattr(pattern.callback, "cls", None)
        if route.startswith("api/") and view is not None and issubclass(view, ApiView):
            for method in ("get", "post", "put", "patch", "delete"):
                if hasattr(view, method):
                    yield method.upper(), "/" + route


def test_the_schema_has_every_operation_the_app_routes():
    routed = set(_routes(get_resolver().url_patterns))
    assert len(routed) == 42
    assert routed == OPERATIONS, routed ^ OPERATIONS
