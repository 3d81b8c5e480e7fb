"""Refunds owed, paid out: through the service and ``/api/v1/refunds/``, on PostgreSQL.

The owed refund is made as production makes it (``refunds_owed.refund_owed``): cash at the
window while the insurer was down, then the deferred claim settles.
"""

from datetime import date

import pytest

from accounts.models import AuditEvent
from ledger.models import Transaction
from ledger.selectors import account_balance
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.exceptions import RefundNotOwed, SettlementInputError
from settlement.models import Refund
from settlement.services import house
from settlement.services.refunds import refund_pay
from tests.settlement.refunds_owed import refund_owed
from tests.threads import run_threads

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PAY = "/api/v1/refunds/{}/pay/"


def balance(account) -> int:
    return account_balance(account).posted


@pytest.fixture
def owed(shared_sim, department, make_person) -> Refund:
    """¥980 owed back on a ¥1,000 bill paid in cash: fund (1000 − 200) × 60 % = ¥480 and the
    personal account's ¥500."""
    patient = make_person("林江", birth=date(1966, 6, 6))  # no credit line
    refund = refund_owed(shared_sim, department, patient, 100_000)
    assert (refund.amount, refund.channel, refund.reason) == (98_000, "cash", "insurance_reversal")
    return refund


def test_a_refund_owed_is_paid_out_once_through_the_ledger(owed):
    hospital = owed.encounter.institution
    payable, cash = house.refunds_payable(hospital), house.clearing(hospital, "cash")
    assert (balance(payable), balance(cash)) == (98_000, 100_000)

    paid = refund_pay(actor="staff:1:desk", refund_id=owed.pk, reference="CASH-0001", key="k1")

    assert (paid.status, paid.channel, paid.reference, paid.paid_by) == (
        "paid",
        "cash",
        "CASH-0001",
        "staff:1:desk",
    )
    assert paid.paid_at is not None and paid.transaction_id is not None
    assert (balance(payable), balance(cash)) == (0, 2_000)  # the patient's own ¥20 stays
    posting = Transaction.objects.get(pk=paid.transaction_id)
    assert posting.reference == f"encounter:{owed.encounter_id}"
    audit = AuditEvent.objects.get(action="refund.pay", object_id=str(owed.pk))
    assert audit.changes["reference"] == "CASH-0001" and audit.changes["amount"] == 98_000

    # Again with another key: refused, and nothing moves.
    postings = Transaction.objects.count()
    with pytest.raises(RefundNotOwed):
        refund_pay(actor="staff:2:other", refund_id=owed.pk, reference="CASH-0002", key="k2")
    assert Transaction.objects.count() == postings
    assert (balance(payable), balance(cash)) == (0, 2_000)
    owed.refresh_from_db()
    assert (owed.reference, owed.paid_by) == ("CASH-0001", "staff:1:desk")
    # The request that paid it, sent again (its answer lost), gets the paid refund back.
    again = refund_pay(actor="staff:1:desk", refund_id=owed.pk, reference="CASH-0001", key="k1")
    assert again.pk == owed.pk and Transaction.objects.count() == postings
    chain_seal()
    assert verify_ledger().intact


def test_another_channel_pays_out_of_that_channels_clearing(owed):
    hospital = owed.encounter.institution
    paid = refund_pay(
        actor="t", refund_id=owed.pk, channel="wechat", reference="WX4200001", key="k"
    )
    assert paid.channel == "wechat"
    assert balance(house.clearing(hospital, "cash")) == 100_000
    assert balance(house.clearing(hospital, "wechat")) == -98_000
    assert balance(house.refunds_payable(hospital)) == 0
    chain_seal()
    assert verify_ledger().intact


@pytest.mark.parametrize(
    ("channel", "reference", "field"),
    [
        ("cheque", "R1", "channel"),
        (None, "", "reference"),
        (None, "   ", "reference"),
        (None, "x" * 65, "reference"),
        (None, "R\n1", "reference"),
        (None, "R\u200b1", "reference"),
    ],
)
def test_the_service_names_the_bad_field(owed, channel, reference, field):
    with pytest.raises(SettlementInputError) as refused:
        refund_pay(actor="t", refund_id=owed.pk, channel=channel, reference=reference, key="k")
    assert refused.value.field == field
    owed.refresh_from_db()
    assert owed.status == "owed"


@pytest.mark.django_db(transaction=True)
def test_eight_cashiers_paying_one_refund_at_once_pay_it_once(owed):
    results = run_threads(
        lambda i: refund_pay(
            actor=f"staff:{i}:desk", refund_id=owed.pk, reference=f"R-{i}", key=f"k-{i}"
        )
    )
    paid = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if isinstance(r, RefundNotOwed)]
    assert (len(paid), len(refused)) == (1, len(results) - 1), results
    owed.refresh_from_db()
    assert (owed.status, owed.reference) == ("paid", paid[0].reference)
    assert Transaction.objects.filter(pk=owed.transaction_id).count() == 1
    hospital = owed.encounter.institution
    assert balance(house.refunds_payable(hospital)) == 0
    assert balance(house.clearing(hospital, "cash")) == 2_000
    chain_seal()
    assert verify_ledger().intact


# --- the API ----------------------------------------------------------------------------------


def test_the_api_pays_once_and_a_replay_gets_the_first_answer(owed, staff_client):
    cashier = staff_client("cashier")
    body = {"reference": "POS-778812"}
    first = cashier.post(PAY.format(owed.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert first.status_code == 200, first.content
    assert first.json() == {
        "id": owed.pk,
        "encounter": str(owed.encounter_id),
        "person": owed.encounter.person_id,
        "amount": "980.00",
        "reason": "insurance_reversal",
        "status": "paid",
        "created_at": owed.created_at.isoformat(),
    }
    postings = Transaction.objects.count()
    replay = cashier.post(PAY.format(owed.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert (replay.status_code, replay.json()) == (200, first.json())

    twice = cashier.post(PAY.format(owed.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="pay-2")
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "refund_not_owed"
    assert Transaction.objects.count() == postings
    hospital = owed.encounter.institution
    assert balance(house.refunds_payable(hospital)) == 0
    assert balance(house.clearing(hospital, "cash")) == 2_000
    chain_seal()
    assert verify_ledger().intact


def test_the_api_needs_an_idempotency_key(owed, staff_client):
    from rest_framework.test import APIClient

    cashier = staff_client("cashier")
    plain = APIClient()
    plain.credentials(**cashier._credentials)
    answer = plain.post(PAY.format(owed.pk), {"reference": "R1"}, format="json")
    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["error"]["fields"]
    owed.refresh_from_db()
    assert owed.status == "owed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "cheque", "reference": "R1"}, "channel"),
        ({}, "reference"),
        ({"reference": ""}, "reference"),
        ({"reference": "x" * 65}, "reference"),
        ({"reference": "R\t1"}, "reference"),
    ],
)
def test_a_bad_channel_or_reference_is_400_naming_the_field(owed, staff_client, body, field):
    answer = staff_client("cashier").post(PAY.format(owed.pk), body, format="json")
    assert answer.status_code == 400, answer.content
    assert list(answer.json()["error"]["fields"]) == [field]
    owed.refresh_from_db()
    assert owed.status == "owed"


def test_an_unknown_refund_is_404(staff_client):
    answer = staff_client("cashier").post(PAY.format(987654), {"reference": "R1"}, format="json")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("role", "status"), [("finance", 403), ("admin", 200), ("cashier", 200)])
def test_who_may_pay(owed, staff_client, role, status):
    answer = staff_client(role).post(PAY.format(owed.pk), {"reference": "R1"}, format="json")
    assert answer.status_code == status, answer.content
    owed.refresh_from_db()
    assert owed.status == ("paid" if status == 200 else "owed")


def test_the_list_filters_by_status_for_every_staff_role(owed, staff_client):
    cashier = staff_client("cashier")
    for role in ("cashier", "finance", "admin"):
        listed = staff_client(role).get("/api/v1/refunds/", {"status": "owed"})
        assert listed.status_code == 200
        assert owed.pk in [r["id"] for r in listed.json()["results"]]
    assert cashier.get("/api/v1/refunds/", {"status": "paid"}).json()["count"] == 0
    refund_pay(actor="t", refund_id=owed.pk, reference="R1", key="k")
    owed_now = cashier.get("/api/v1/refunds/", {"status": "owed"}).json()
    paid_now = cashier.get("/api/v1/refunds/", {"status": "paid"}).json()
    assert owed.pk not in [r["id"] for r in owed_now["results"]]
    assert [(r["id"], r["status"], r["amount"]) for r in paid_now["results"]] == [
        (owed.pk, "paid", "980.00")
    ]
    everything = cashier.get("/api/v1/refunds/").json()
    assert [r["id"] for r in everything["results"]] == [owed.pk]
    assert set(everything) == {"count", "next", "previous", "results"}


def test_an_unknown_status_filter_is_400(staff_client):
    answer = staff_client("finance").get("/api/v1/refunds/", {"status": "pending"})
    assert answer.status_code == 400
    assert list(answer.json()["error"]["fields"]) == ["status"]
