"""The bank's side: receivables, repayments, daily statements, overdue lines and webhooks.

Stays are outpatient and charged class C (丙, all self-pay) so each settlement draws exactly
its bill on the borrower's own line; the insurer is the shipped simulator. Webhooks go to a real
HTTP server in a thread standing in for the bank.
"""

import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts import signing
from accounts.models import AuditEvent, CreditLine
from ledger.models import Transaction
from settlement.models import CreditMovement, Encounter, OutboxEvent, Receivable, Repayment
from settlement.services.claim_retries import claims_retry
from settlement.services.outbox import outbox_deliver
from settlement.services.repayments import receivables_mark_overdue
from tests.factories import charge_line, grant_line

pytestmark = pytest.mark.django_db

TODAY_PATH = "/api/partner/v1/statements/{}/"


# --- helpers ----------------------------------------------------------------------------------


def error_of(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def written() -> dict[str, int]:
    models = (Repayment, Receivable, CreditMovement, OutboxEvent, Transaction, AuditEvent)
    return {model.__name__: model.objects.count() for model in models}


def borrower(make_partner, make_person, name: str, **partner_kwargs: Any) -> SimpleNamespace:
    """A bank and a person with a ¥3,000.00 line there."""
    partner, bank = make_partner(**partner_kwargs)
    person = make_person(name)
    line = grant_line(partner, person, limit=300_000)
    return SimpleNamespace(partner=partner, bank=bank, person=person, line=line)


def admit(cashier, person, department, kind: str = "outpatient") -> dict[str, Any]:
    admitted = cashier.post(
        "/api/v1/encounters/",
        {"person": person.pk, "kind": kind, "department": department.pk},
        format="json",
    )
    assert admitted.status_code == 201, admitted.json()
    return admitted.json()


def stay_on_credit(
    cashier, person, department, amount: str = "100.00", insurance_class: str = "C"
) -> Receivable:
    """Admit, charge one line, settle: the self-pay is drawn on the person's line."""
    encounter = admit(cashier, person, department)
    charged = cashier.post(
        f"/api/v1/encounters/{encounter['id']}/charges/",
        {"items": [charge_line(unit_price=amount, insurance_class=insurance_class)]},
        format="json",
    )
    assert charged.status_code == 201, charged.json()
    settled = cashier.post(f"/api/v1/encounters/{encounter['id']}/settle/", {}, format="json")
    assert settled.status_code == 200, settled.json()
    assert settled.json()["funded_by"] == "credit"
    return Receivable.objects.get(encounter_id=encounter["id"])


def repay(bank, receivable: Receivable, amount: str, txn: str | None = None, **changes: Any):
    body = {
        "receivable": str(receivable.pk),
        "amount": amount,
        "bank_txn_id": txn or f"TXN-{uuid.uuid4().hex[:12]}",
        "paid_at": "2026-01-05T10:30:00+08:00",
        **changes,
    }
    return bank.post("/api/partner/v1/repayments/", body)


def listed(bank, status: str | None = None) -> list[dict[str, Any]]:
    response = bank.get("/api/partner/v1/receivables/" + (f"?status={status}" if status else ""))
    assert response.status_code == 200, response.json()
    return response.json()["results"]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def no_proxy(monkeypatch):
    """Webhooks go straight to 127.0.0.1 whatever proxy the environment names."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)


@pytest.fixture
def hook(no_proxy):
    """A bank's webhook endpoint: records each request, answers ``hook.status``."""
    received: list[SimpleNamespace] = []
    state = SimpleNamespace(status=200)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(SimpleNamespace(path=self.path, headers=self.headers, body=body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/hooks/tfpl?source=xmh1"
    state.received = received
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def assert_signed(request: SimpleNamespace, key_id: str, secret: str) -> dict[str, Any]:
    """The webhook carries the partner headers and verifies with the partner secret."""
    headers = request.headers
    assert request.path == "/hooks/tfpl?source=xmh1"
    assert headers["X-Partner-Key"] == key_id
    assert abs(int(headers["X-Timestamp"]) - time.time()) <= signing.MAX_SKEW_SECONDS
    assert headers["X-Nonce"]
    expected = signing.sign(
        secret, "POST", request.path, headers["X-Timestamp"], headers["X-Nonce"], request.body
    )
    assert signing.signature_matches(expected, headers["X-Signature"])
    assert headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert set(body) == {"id", "type", "created_at", "data"}
    assert headers["X-Event-Id"] == body["id"]
    return body


# --- receivables ------------------------------------------------------------------------------


def test_a_bank_lists_only_its_own_receivables_filtered_by_status(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    boc = borrower(make_partner, make_person, "李强")
    first = stay_on_credit(cashier, xmib.person, department, "100.00")
    second = stay_on_credit(cashier, xmib.person, department, "250.00")
    theirs = stay_on_credit(cashier, boc.person, department, "80.00")
    assert repay(xmib.bank, first, "100.00").status_code == 201

    everything = listed(xmib.bank)
    assert {r["id"] for r in everything} == {str(first.pk), str(second.pk)}
    assert [(r["id"], r["status"]) for r in listed(xmib.bank, "open")] == [(str(second.pk), "open")]
    repaid = listed(xmib.bank, "repaid")
    assert [(r["id"], r["amount"], r["outstanding"]) for r in repaid] == [
        (str(first.pk), "100.00", "0.00")
    ]
    assert listed(xmib.bank, "overdue") == []
    open_two = listed(xmib.bank, "open")[0]
    assert open_two["credit_line"] == str(xmib.line.pk)
    assert open_two["encounter"] == str(second.encounter_id)
    assert open_two["due_date"] == (timezone.localdate() + timedelta(days=10)).isoformat()

    assert [r["id"] for r in listed(boc.bank)] == [str(theirs.pk)]


def test_another_banks_receivable_in_a_repayment_is_a_404_and_nothing_is_written(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    boc = borrower(make_partner, make_person, "李强")
    theirs = stay_on_credit(cashier, boc.person, department)
    before = written()
    error_of(repay(xmib.bank, theirs, "10.00"), 404, "not_found")
    assert written() == before
    theirs.refresh_from_db()
    assert (theirs.outstanding, theirs.status) == (10_000, "open")


# --- repayments -------------------------------------------------------------------------------


def test_a_partial_then_a_full_repayment_marks_the_receivable_repaid_and_restores_the_line(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "619.00")
    line_path = f"/api/partner/v1/credit-lines/{xmib.line.pk}/"
    assert xmib.bank.get(line_path).json()["drawn"] == "619.00"

    partial = repay(xmib.bank, receivable, "200.00", "XMIB-1")
    assert partial.status_code == 201, partial.json()
    assert (partial.json()["outstanding"], partial.json()["receivable_status"]) == (
        "419.00",
        "open",
    )
    assert xmib.bank.get(line_path).json()["drawn"] == "419.00"

    full = repay(xmib.bank, receivable, "419.00", "XMIB-2")
    assert full.status_code == 201, full.json()
    assert (full.json()["outstanding"], full.json()["receivable_status"]) == ("0.00", "repaid")
    receivable.refresh_from_db()
    assert (receivable.outstanding, receivable.status) == (0, "repaid")
    figures = xmib.bank.get(line_path).json()
    assert (figures["drawn"], figures["available"], figures["status"]) == (
        "0.00",
        "3000.00",
        "active",
    )
    applied = OutboxEvent.objects.filter(partner=xmib.partner, type="repayment.applied")
    assert sorted((e.data["bank_txn_id"], e.data["outstanding"]) for e in applied) == [
        ("XMIB-1", "419.00"),
        ("XMIB-2", "0.00"),
    ]


@pytest.mark.parametrize("amount", ["100.01", "5000.00"])
def test_a_repayment_over_the_outstanding_is_a_400_and_nothing_is_written(
    cashier, make_partner, make_person, department, insurer, amount
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    before = written()
    error = error_of(repay(xmib.bank, receivable, amount), 400, "invalid")
    assert "amount" in error["fields"]
    assert written() == before
    receivable.refresh_from_db()
    assert (receivable.outstanding, receivable.status) == (10_000, "open")


def test_a_repayment_on_a_repaid_receivable_is_refused(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    assert repay(xmib.bank, receivable, "100.00").status_code == 201
    before = written()
    error_of(repay(xmib.bank, receivable, "0.01"), 400, "invalid")
    assert written() == before


def test_the_same_bank_txn_id_replayed_returns_the_first_answer_and_other_content_is_a_409(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    first = repay(xmib.bank, receivable, "30.00", "XMIB-7")
    assert first.status_code == 201
    before = written()

    replay = repay(xmib.bank, receivable, "30.00", "XMIB-7")
    assert (replay.status_code, replay.json()) == (201, first.json())
    # The same instant written in another zone is the same content.
    same_instant = repay(xmib.bank, receivable, "30.00", "XMIB-7", paid_at="2026-01-05T02:30:00Z")
    assert (same_instant.status_code, same_instant.json()) == (201, first.json())
    assert written() == before

    other_amount = repay(xmib.bank, receivable, "31.00", "XMIB-7")
    assert "bank_txn_id" in error_of(other_amount, 409, "repayment_conflict")["fields"]
    other_day = repay(xmib.bank, receivable, "30.00", "XMIB-7", paid_at="2026-01-06T10:30:00Z")
    error_of(other_day, 409, "repayment_conflict")
    assert written() == before
    receivable.refresh_from_db()
    assert receivable.outstanding == 7_000


def test_a_replay_after_a_later_repayment_still_returns_the_first_answer(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    first = repay(xmib.bank, receivable, "30.00", "XMIB-1")
    assert first.json()["outstanding"] == "70.00"
    assert repay(xmib.bank, receivable, "70.00", "XMIB-2").status_code == 201
    replay = repay(xmib.bank, receivable, "30.00", "XMIB-1")
    assert (replay.status_code, replay.json()) == (201, first.json())


# --- statements -------------------------------------------------------------------------------


def test_the_days_statement_lists_this_banks_draws_with_references_and_the_net(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    boc = borrower(make_partner, make_person, "李强")
    first = stay_on_credit(cashier, xmib.person, department, "100.00")
    second = stay_on_credit(cashier, xmib.person, department, "250.50")
    stay_on_credit(cashier, boc.person, department, "80.00")
    today = timezone.localdate()

    statement = xmib.bank.get(TODAY_PATH.format(today.isoformat()))
    assert statement.status_code == 200
    assert statement.json() == {
        "reference": f"ST{xmib.partner.pk:04d}{today:%Y%m%d}",
        "date": today.isoformat(),
        "net_amount": "350.50",
        "items": [
            {"reference": first.reference, "kind": "draw", "amount": "100.00"},
            {"reference": second.reference, "kind": "draw", "amount": "250.50"},
        ],
    }
    theirs = boc.bank.get(TODAY_PATH.format(today.isoformat())).json()
    assert (theirs["net_amount"], len(theirs["items"])) == ("80.00", 1)
    # Repayments are not draws: the statement stays as it was.
    assert repay(xmib.bank, first, "100.00").status_code == 201
    assert xmib.bank.get(TODAY_PATH.format(today.isoformat())).json() == statement.json()
    quiet = xmib.bank.get(TODAY_PATH.format((today - timedelta(days=1)).isoformat())).json()
    assert (quiet["net_amount"], quiet["items"]) == ("0.00", [])


def test_a_deferred_claim_paid_later_puts_a_reversal_on_the_statement(
    cashier, make_partner, make_person, department, sim
):
    xmib = borrower(make_partner, make_person, "陈静")
    today = timezone.localdate().isoformat()
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        sim.control("fail")
        receivable = stay_on_credit(cashier, xmib.person, department, "1000.00", "A")
        assert Encounter.objects.get(pk=receivable.encounter_id).status == (
            "settled_insurance_deferred"
        )
        assert xmib.bank.get(TODAY_PATH.format(today)).json()["net_amount"] == "1000.00"
        sim.control("ok")
        assert claims_retry() == {"reverted": 1}

    # Outpatient, class A ¥1,000: fund (1000 − 200) × 60 % = 480.00, account 500.00, so 980.00
    # moves off the draw and the patient still owes the bank 20.00.
    statement = xmib.bank.get(TODAY_PATH.format(today)).json()
    reversal_ref = f"RV{receivable.encounter_id.hex[:12].upper()}"
    assert statement["items"] == [
        {"reference": receivable.reference, "kind": "draw", "amount": "1000.00"},
        {"reference": reversal_ref, "kind": "reversal", "amount": "-980.00"},
    ]
    assert statement["net_amount"] == "20.00"
    receivable.refresh_from_db()
    assert (receivable.outstanding, receivable.status) == (2_000, "open")
    reversed_ = OutboxEvent.objects.get(partner=xmib.partner, type="credit.reversed")
    assert (reversed_.data["reference"], reversed_.data["amount"]) == (reversal_ref, "980.00")


@pytest.mark.parametrize("day", ["2026-02-30", "today", "2026-1-5", "2026-13-01", "0000-01-01"])
def test_a_statement_for_a_bad_date_is_a_400(make_partner, day):
    _, bank = make_partner()
    error = error_of(bank.get(TODAY_PATH.format(day)), 400, "invalid")
    assert "date" in error["fields"]


@pytest.mark.parametrize("day", ["20260105", "2026-W02-1"])
def test_a_statement_date_not_written_yyyy_mm_dd_is_a_400(make_partner, day):
    _, bank = make_partner()
    error_of(bank.get(TODAY_PATH.format(day)), 400, "invalid")


# --- overdue ----------------------------------------------------------------------------------


def test_an_overdue_receivable_freezes_the_line_and_tells_the_bank(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静", grace_days=10)
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    assert receivables_mark_overdue(today=receivable.due_date) == 0  # due today: not yet late
    assert not OutboxEvent.objects.filter(type="receivable.overdue").exists()

    assert receivables_mark_overdue(today=receivable.due_date + timedelta(days=1)) == 1
    receivable.refresh_from_db()
    assert receivable.status == "overdue"
    line = CreditLine.objects.get(pk=xmib.line.pk)
    assert (line.status, line.frozen_reason) == ("frozen", "overdue")
    event = OutboxEvent.objects.get(partner=xmib.partner, type="receivable.overdue")
    assert event.data == {
        "receivable": str(receivable.pk),
        "reference": receivable.reference,
        "credit_line": str(line.pk),
        "outstanding": "100.00",
        "due_date": receivable.due_date.isoformat(),
    }
    assert [r["id"] for r in listed(xmib.bank, "overdue")] == [str(receivable.pk)]
    assert listed(xmib.bank, "open") == []
    figures = xmib.bank.get(f"/api/partner/v1/credit-lines/{line.pk}/").json()
    assert figures["status"] == "frozen"

    # Running it again changes nothing and tells the bank nothing new.
    assert receivables_mark_overdue(today=receivable.due_date + timedelta(days=2)) == 0
    assert OutboxEvent.objects.filter(type="receivable.overdue").count() == 1


def test_a_new_admission_on_a_frozen_line_gets_no_credit_until_the_overdue_is_repaid(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    receivables_mark_overdue(today=receivable.due_date + timedelta(days=1))

    frozen = admit(cashier, xmib.person, department, "inpatient")
    assert frozen["deposit"] == {"required": "2000.00", "waived": False, "paid": "0.00"}
    assert frozen["funding_line"] is None
    # Nor is the frozen line drawn when that stay is settled.
    charged = cashier.post(
        f"/api/v1/encounters/{frozen['id']}/charges/",
        {"items": [charge_line(unit_price="50.00")]},
        format="json",
    )
    assert charged.status_code == 201
    before = written()
    refused = cashier.post(f"/api/v1/encounters/{frozen['id']}/settle/", {}, format="json")
    error_of(refused, 409, "self_pay_not_covered")
    assert written() == before

    partial = repay(xmib.bank, receivable, "60.00")
    assert partial.json()["receivable_status"] == "overdue"
    assert CreditLine.objects.get(pk=xmib.line.pk).status == "frozen"
    assert admit(cashier, xmib.person, department, "inpatient")["deposit"]["waived"] is False

    repaid = repay(xmib.bank, receivable, "40.00")
    assert repaid.json()["receivable_status"] == "repaid"
    line = CreditLine.objects.get(pk=xmib.line.pk)
    assert (line.status, line.frozen_reason) == ("active", "")
    assert AuditEvent.objects.filter(action="credit_line.unfreeze", object_id=str(line.pk))
    again = admit(cashier, xmib.person, department, "inpatient")
    assert again["deposit"]["waived"] is True
    assert again["funding_line"]["id"] == str(line.pk)


def test_the_line_stays_frozen_until_every_overdue_receivable_is_repaid(
    cashier, make_partner, make_person, department, insurer
):
    xmib = borrower(make_partner, make_person, "陈静")
    first = stay_on_credit(cashier, xmib.person, department, "100.00")
    second = stay_on_credit(cashier, xmib.person, department, "200.00")
    assert receivables_mark_overdue(today=first.due_date + timedelta(days=1)) == 2
    assert OutboxEvent.objects.filter(type="receivable.overdue").count() == 2

    assert repay(xmib.bank, first, "100.00").json()["receivable_status"] == "repaid"
    assert CreditLine.objects.get(pk=xmib.line.pk).status == "frozen"
    assert repay(xmib.bank, second, "200.00").json()["receivable_status"] == "repaid"
    assert CreditLine.objects.get(pk=xmib.line.pk).status == "active"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_line_the_bank_froze_itself_stays_frozen_after_repayment(
    cashier, make_partner, make_person, department, insurer, when
):
    xmib = borrower(make_partner, make_person, "陈静")
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    freeze = f"/api/partner/v1/credit-lines/{xmib.line.pk}/freeze/"
    if when == "before":
        assert xmib.bank.post(freeze).status_code == 200
    assert receivables_mark_overdue(today=receivable.due_date + timedelta(days=1)) == 1
    if when == "after":
        assert xmib.bank.post(freeze).status_code == 200
    assert repay(xmib.bank, receivable, "100.00").status_code == 201
    line = CreditLine.objects.get(pk=xmib.line.pk)
    assert (line.status, line.frozen_reason) == ("frozen", "bank")


def test_an_insurer_payment_that_clears_the_overdue_receivable_unfreezes_the_line(
    cashier, make_partner, make_person, department, sim
):
    xmib = borrower(make_partner, make_person, "陈静")
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        sim.control("fail")
        receivable = stay_on_credit(cashier, xmib.person, department, "1000.00", "A")
        # The patient repays the part the insurer will not pay; the rest falls overdue.
        assert repay(xmib.bank, receivable, "20.00").status_code == 201
        assert receivables_mark_overdue(today=receivable.due_date + timedelta(days=1)) == 1
        assert CreditLine.objects.get(pk=xmib.line.pk).status == "frozen"
        sim.control("ok")
        assert claims_retry() == {"reverted": 1}

    receivable.refresh_from_db()
    assert (receivable.outstanding, receivable.status) == (0, "repaid")
    assert not Receivable.objects.filter(credit_line=xmib.line, status="overdue").exists()
    line = CreditLine.objects.get(pk=xmib.line.pk)
    assert (line.status, line.frozen_reason) == ("active", "")


# --- webhooks ---------------------------------------------------------------------------------


def test_settling_on_credit_and_repaying_post_signed_webhooks_once_each(
    cashier, make_partner, make_person, department, insurer, hook
):
    xmib = borrower(make_partner, make_person, "陈静", webhook_url=hook.url)
    receivable = stay_on_credit(cashier, xmib.person, department, "100.00")
    assert repay(xmib.bank, receivable, "100.00", "XMIB-9").status_code == 201
    events = list(OutboxEvent.objects.filter(partner=xmib.partner).order_by("created_at"))
    assert [event.type for event in events] == ["credit.drawn", "repayment.applied"]

    assert outbox_deliver() == 2
    assert len(hook.received) == 2
    bodies = [assert_signed(r, xmib.bank.key_id, xmib.bank.secret) for r in hook.received]
    assert len({r.headers["X-Nonce"] for r in hook.received}) == 2
    assert [(b["id"], b["type"]) for b in bodies] == [(str(e.pk), e.type) for e in events]
    drawn, applied = bodies
    assert drawn["data"] == {
        "receivable": str(receivable.pk),
        "reference": receivable.reference,
        "credit_line": str(xmib.line.pk),
        "encounter": str(receivable.encounter_id),
        "amount": "100.00",
        "due_date": receivable.due_date.isoformat(),
    }
    assert applied["data"] == {
        "receivable": str(receivable.pk),
        "bank_txn_id": "XMIB-9",
        "amount": "100.00",
        "outstanding": "0.00",
    }
    assert drawn["created_at"] == events[0].created_at.isoformat()
    for event in events:
        event.refresh_from_db()
        assert (event.attempts, event.last_error) == (1, "")
        assert event.delivered_at is not None

    assert outbox_deliver(now=timezone.now() + timedelta(days=1)) == 0
    assert len(hook.received) == 2  # each event once


def test_a_failed_webhook_is_retried_with_backoff_and_the_same_event_id(
    cashier, make_partner, make_person, department, insurer, hook
):
    xmib = borrower(make_partner, make_person, "陈静", webhook_url=hook.url)
    stay_on_credit(cashier, xmib.person, department, "100.00")
    event = OutboxEvent.objects.get(partner=xmib.partner, type="credit.drawn")

    hook.status = 500
    started = timezone.now()
    assert outbox_deliver() == 0
    event.refresh_from_db()
    assert (event.attempts, event.delivered_at, event.last_error) == (1, None, "HTTP 500")
    first_delay = event.next_attempt_at - started
    assert first_delay > timedelta(seconds=5)
    assert outbox_deliver() == 0  # not due yet: nothing sent
    assert len(hook.received) == 1

    hook.status = 503
    started = timezone.now()
    assert outbox_deliver(now=event.next_attempt_at) == 0
    event.refresh_from_db()
    assert (event.attempts, event.last_error) == (2, "HTTP 503")
    assert event.next_attempt_at - started > first_delay  # the backoff grows

    hook.status = 204
    assert outbox_deliver(now=event.next_attempt_at) == 1
    event.refresh_from_db()
    assert event.attempts == 3 and event.delivered_at is not None
    assert len(hook.received) == 3
    bodies = [assert_signed(r, xmib.bank.key_id, xmib.bank.secret) for r in hook.received]
    assert {body["id"] for body in bodies} == {str(event.pk)}
    assert bodies[0] == bodies[1] == bodies[2]  # the same event, so the bank can drop repeats
    assert len({r.headers["X-Nonce"] for r in hook.received}) == 3


def test_an_unreachable_webhook_url_is_retried_later(
    cashier, make_partner, make_person, department, insurer, no_proxy
):
    xmib = borrower(make_partner, make_person, "陈静", webhook_url="http://127.0.0.1:9/hooks")
    stay_on_credit(cashier, xmib.person, department, "100.00")
    event = OutboxEvent.objects.get(partner=xmib.partner)
    assert outbox_deliver() == 0
    event.refresh_from_db()
    assert event.attempts == 1 and event.delivered_at is None and event.last_error
    assert event.next_attempt_at > timezone.now()
