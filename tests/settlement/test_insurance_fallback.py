"""The insurance fallback (DESIGN.md §3 flow 6) against the simulator as a real process.

The insurer is stopped, failing, hanging or losing its answers while encounters are settled
over HTTP. Each time the bill is settled as self-pay and the claim deferred, or the unknown
outcome is resolved by a query; when the insurer settles, its share moves off the patient side
exactly once, the simulator (the witness) never holds two settlements for one encounter, and
the ledger still verifies. The credit-paid outage is retried by a real Celery worker on the
configured broker.

The bills and their amounts are those of ``tests/settlement/stays.py``.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.test import override_settings
from django.utils import timezone

from accounts.models import AuditEvent, CreditLine, FamilyLink
from config.celery import app
from ledger.models import Transaction
from ledger.selectors import account_balance
from settlement import tasks
from settlement.insurer import InsurerOutcomeUnknown
from settlement.insurer.client import InsurerClient
from settlement.models import (
    Channel,
    CreditMovement,
    Encounter,
    InsuranceClaim,
    InsurerCall,
    OutboxEvent,
    Receipt,
    Receivable,
    Refund,
    Settlement,
)
from settlement.services import house
from settlement.services.claim_retries import claim_retry, claims_retry
from settlement.services.insurer_claims import fee_lines
from tests.settlement.conftest import HOLD
from tests.settlement.stays import (
    CLINIC_ACCOUNT,
    CLINIC_FUND,
    CLINIC_SELF,
    CLINIC_SHARE,
    CLINIC_TOTAL,
    WARD_ACCOUNT,
    WARD_FUND,
    WARD_SELF,
    WARD_SHARE,
    WARD_TOTAL,
    admit,
    assert_ledger_intact,
    calls,
    charge,
    claim_of,
    clinic_items,
    open_line,
    posted,
    settle,
    standing,
    ward_items,
    yuan,
)
from tests.waiting import wait_until

TIMEOUT = 0.5  # the adapter's timeout in the tests where the insurer hangs


def snapshot(encounter: Encounter, line: CreditLine | None = None) -> dict[str, Any]:
    """Everything a repeated retry must leave alone."""
    institution = encounter.institution
    claim = claim_of(encounter)
    settlement = Settlement.objects.get(encounter=encounter)
    state: dict[str, Any] = {
        "claim": (claim.status, claim.attempts, claim.reverted_at, claim.setl_id),
        "settlement": (
            settlement.insurance_fund,
            settlement.personal_account,
            settlement.self_pay,
            settlement.paid_by_credit,
            settlement.paid_by_channel,
            settlement.receipt_no,
        ),
        "receipts": Receipt.objects.filter(encounter=encounter).count(),
        "transactions": Transaction.objects.filter(reference=f"encounter:{encounter.pk}").count(),
        "movements": CreditMovement.objects.filter(receivable__encounter=encounter).count(),
        "refunds": list(Refund.objects.filter(encounter=encounter).values_list("amount", "status")),
        "reverts": AuditEvent.objects.filter(
            action="claim.revert", object_id=str(encounter.pk)
        ).count(),
        "insurer_receivable": posted(house.insurer_receivable(institution)),
        "refunds_payable": posted(house.refunds_payable(institution)),
        "receivable": list(
            Receivable.objects.filter(encounter=encounter).values_list("outstanding", "status")
        ),
    }
    if line is not None:
        state["bank_receivable"] = posted(house.bank_receivable(institution, line.partner))
        state["drawn"] = posted(line.drawn_account)
        state["available"] = account_balance(line.capacity_account).available
    return state


@pytest.fixture
def count_retry_tasks() -> Iterator[list[str]]:
    """Names of the retry tasks the worker has finished while the test runs."""
    ran: list[str] = []

    def record(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "name", "") == tasks.retry_deferred_claims.name:
            ran.append(sender.name)

    task_postrun.connect(record, weak=False)
    yield ran
    task_postrun.disconnect(record)


# --- 1. outage, paid on credit, retried by a worker ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_outage_on_credit_is_settled_as_self_pay_and_a_worker_moves_the_insurer_share_once(
    hospital, make_person, make_partner, staff_client, sim, count_retry_tasks
):
    institution, ward, _ = hospital
    partner, bank = make_partner("厦门银行", grace_days=10)
    patient = make_person("林海", birth=date(1975, 4, 2))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    assert encounter.deposit_waived and encounter.funding_line_id == line.pk
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    sim.stop()  # the insurer's process is gone: connections are refused
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        first = settled.json()
        assert first["status"] == "settled_insurance_deferred"
        assert (first["total"], first["insurance_fund"], first["personal_account"]) == (
            yuan(WARD_TOTAL),
            "0.00",
            "0.00",
        )
        assert (first["self_pay"], first["funded_by"]) == (yuan(WARD_TOTAL), "credit")
        assert first["paid_by"] == {
            "deposit": "0.00",
            "credit": yuan(WARD_TOTAL),
            "channel": "0.00",
        }

        listed = cashier.get("/api/v1/insurance/claims/?status=deferred").json()["results"]
        assert [c["encounter"] for c in listed] == [str(encounter.pk)]
        assert listed[0]["status"] == "deferred"
        assert listed[0]["attempts"] >= 1 and listed[0]["last_error"]
        assert listed[0]["self_pay"] == yuan(WARD_TOTAL)
        assert calls(encounter) == [("2303", "unavailable")]  # nothing reached the insurer

        # The whole bill sits with the bank and on the line; nothing with the insurer.
        line_figures = bank.get(f"/api/partner/v1/credit-lines/{line.pk}/").json()
        assert (line_figures["held"], line_figures["drawn"]) == ("0.00", yuan(WARD_TOTAL))
        assert posted(line.drawn_account) == WARD_TOTAL
        assert posted(house.bank_receivable(institution, partner)) == WARD_TOTAL
        assert posted(house.insurer_receivable(institution)) == 0
        receivable = Receivable.objects.get(encounter=encounter)
        assert (receivable.amount, receivable.outstanding) == (WARD_TOTAL, WARD_TOTAL)

        # The insurer comes back on the same port and state file; a worker retries the claim.
        sim.start()
        assert standing(sim, encounter) == []
        with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
            queued = cashier.post("/api/v1/insurance/claims/retry/", format="json")
            assert queued.status_code == 202, queued.json()
            assert queued.json()["deferred"] == 1
            assert wait_until(lambda: claim_of(encounter).status == "settled")
            assert wait_until(lambda: len(count_retry_tasks) >= 1)

            bill = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()
            now = bill["settlement"]
            assert now["status"] == "settled"
            assert (now["total"], now["insurance_fund"], now["personal_account"]) == (
                yuan(WARD_TOTAL),
                yuan(WARD_FUND),
                yuan(WARD_ACCOUNT),
            )
            assert (now["self_pay"], now["funded_by"]) == (yuan(WARD_SELF), "credit")
            assert now["paid_by"] == {
                "deposit": "0.00",
                "credit": yuan(WARD_SELF),
                "channel": "0.00",
            }

            # The share moved off the patient's side exactly.
            receivable.refresh_from_db()
            assert receivable.outstanding == WARD_TOTAL - WARD_SHARE == WARD_SELF
            assert posted(line.drawn_account) == WARD_SELF
            assert posted(house.bank_receivable(institution, partner)) == WARD_SELF
            assert posted(house.insurer_receivable(institution)) == WARD_SHARE
            assert posted(house.patient_receivable(encounter)) == 0
            assert account_balance(line.capacity_account).available == 300_000 - WARD_SELF
            line_figures = bank.get(f"/api/partner/v1/credit-lines/{line.pk}/").json()
            assert (line_figures["drawn"], line_figures["available"]) == (
                yuan(WARD_SELF),
                yuan(300_000 - WARD_SELF),
            )
            open_items = bank.get("/api/partner/v1/receivables/?status=open").json()["results"]
            assert [(r["amount"], r["outstanding"]) for r in open_items] == [
                (yuan(WARD_TOTAL), yuan(WARD_SELF))
            ]
            statement = bank.get(
                f"/api/partner/v1/statements/{timezone.localdate().isoformat()}/"
            ).json()
            assert statement["net_amount"] == yuan(WARD_SELF)
            assert sorted((i["kind"], i["amount"]) for i in statement["items"]) == [
                ("draw", yuan(WARD_TOTAL)),
                ("reversal", f"-{yuan(WARD_SHARE)}"),
            ]
            assert sorted(
                OutboxEvent.objects.filter(partner=partner).values_list("type", flat=True)
            ) == ["credit.drawn", "credit.reversed"]

            # A new receipt supersedes the deferred one.
            assert now["receipt_no"] != first["receipt_no"]
            old = cashier.get(f"/api/v1/receipts/{first['receipt_no']}/").json()
            assert old["superseded_by"] == now["receipt_no"]
            new = cashier.get(f"/api/v1/receipts/{now['receipt_no']}/").json()
            assert (new["version"], new["superseded_by"]) == (2, None)
            assert (new["insurance_fund"], new["self_pay"]) == (yuan(WARD_FUND), yuan(WARD_SELF))
            checked = cashier.get(
                f"/api/v1/receipts/{now['receipt_no']}/?code={new['verification_code']}"
            ).json()
            assert checked["verified"]

            settled_claims = cashier.get("/api/v1/insurance/claims/?status=settled").json()
            assert [
                (c["encounter"], c["insurance_fund"], c["personal_account"], c["self_pay"])
                for c in settled_claims["results"]
            ] == [(str(encounter.pk), yuan(WARD_FUND), yuan(WARD_ACCOUNT), yuan(WARD_SELF))]
            assert settled_claims["results"][0]["reverted_at"] is not None
            assert cashier.get("/api/v1/insurance/claims/?status=deferred").json()["count"] == 0
            assert len(standing(sim, encounter)) == 1
            assert_ledger_intact()

            # Retrying again, by hand, by the API and by the worker, changes nothing.
            before = snapshot(encounter, line)
            assert claims_retry() == {}
            assert claims_retry() == {}
            assert claim_retry(claim_id=claim_of(encounter).pk) == "busy"
            done = len(count_retry_tasks)
            tasks.retry_deferred_claims.delay()
            again = cashier.post("/api/v1/insurance/claims/retry/", format="json")
            assert (again.status_code, again.json()["deferred"]) == (202, 0)
            assert wait_until(lambda: len(count_retry_tasks) >= done + 2)
        assert snapshot(encounter, line) == before
        assert before["reverts"] == 1 and before["receipts"] == 2 and before["movements"] == 2
        assert len(standing(sim, encounter)) == 1
        assert [c for c in calls(encounter) if c[0] == "2304"] == [("2304", "ok")]
    assert_ledger_intact()


# --- 2. outage, paid at the window --------------------------------------------------------------


@pytest.mark.django_db
def test_outage_paid_at_the_window_owes_the_patient_a_refund_of_the_insurer_share(
    hospital, make_person, staff_client, sim
):
    institution, _, clinic = hospital
    patient = make_person("黄梅", birth=date(1969, 11, 30))
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, clinic, "outpatient")
    assert encounter.funding_line_id is None
    charge(cashier, encounter, clinic_items(), CLINIC_TOTAL)

    sim.control("fail")  # every call answered HTTP 503
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        # No line, no deposit: without a channel the self-pay is not covered, and nothing moves.
        refused = settle(cashier, encounter)
        assert refused.status_code == 409, refused.json()
        assert refused.json()["error"]["code"] == "self_pay_not_covered"
        encounter.refresh_from_db()
        assert encounter.status == "open"
        assert not Settlement.objects.filter(encounter=encounter).exists()

        settled = settle(cashier, encounter, {"channel": "wechat"})
        assert settled.status_code == 200, settled.json()
        first = settled.json()
        assert (first["status"], first["funded_by"]) == ("settled_insurance_deferred", "channel")
        assert (first["insurance_fund"], first["personal_account"], first["self_pay"]) == (
            "0.00",
            "0.00",
            yuan(CLINIC_TOTAL),
        )
        assert first["paid_by"] == {"deposit": "0.00", "credit": "0.00", "channel": "350.00"}
        claim = claim_of(encounter)
        assert claim.status == "deferred" and "503" in claim.last_error
        assert posted(house.clearing(institution, Channel.WECHAT)) == CLINIC_TOTAL
        assert posted(house.refunds_payable(institution)) == 0

        # Still failing: the retry stays deferred and backs off.
        assert claims_retry() == {"deferred": 1}
        claim = claim_of(encounter)
        assert (claim.status, claim.attempts) == ("deferred", 2)
        assert claim.next_attempt_at > timezone.now()
        assert claims_retry() == {}  # not due yet

        sim.control("ok")
        assert claims_retry(now=claim.next_attempt_at) == {"reverted": 1}
        assert claims_retry(now=claim.next_attempt_at) == {}

    refund = Refund.objects.get(encounter=encounter)
    assert (refund.reason, refund.status, refund.amount, refund.channel) == (
        "insurance_reversal",
        "owed",
        CLINIC_SHARE,
        "wechat",
    )
    assert posted(house.refunds_payable(institution)) == CLINIC_SHARE
    assert posted(house.insurer_receivable(institution)) == CLINIC_SHARE
    assert posted(house.clearing(institution, Channel.WECHAT)) == CLINIC_TOTAL
    now = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()["settlement"]
    assert (now["status"], now["insurance_fund"], now["personal_account"], now["self_pay"]) == (
        "settled",
        yuan(CLINIC_FUND),
        yuan(CLINIC_ACCOUNT),
        yuan(CLINIC_SELF),
    )
    assert now["paid_by"] == {"deposit": "0.00", "credit": "0.00", "channel": yuan(CLINIC_SELF)}
    assert now["receipt_no"] != first["receipt_no"]
    assert len(standing(sim, encounter)) == 1
    assert_ledger_intact()


@pytest.mark.django_db
def test_outage_paid_from_a_deposit_owes_the_patient_the_insurer_share_through_its_channel(
    hospital, make_person, staff_client, sim
):
    institution, ward, _ = hospital
    patient = make_person("苏木", birth=date(1958, 8, 8))
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    assert not encounter.deposit_waived
    paid = cashier.post(
        f"/api/v1/encounters/{encounter.pk}/deposits/",
        {"amount": "2000.00", "channel": "unionpay"},
        format="json",
    )
    assert paid.status_code == 201, paid.json()
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    sim.control("fail")
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        first = settled.json()
        assert (first["status"], first["funded_by"], first["self_pay"]) == (
            "settled_insurance_deferred",
            "deposit",
            yuan(WARD_TOTAL),
        )
        leftover = Refund.objects.get(encounter=encounter)
        assert (leftover.reason, leftover.status, leftover.amount) == (
            "deposit_leftover",
            "paid",
            200_000 - WARD_TOTAL,
        )
        sim.control("ok")
        assert claims_retry() == {"reverted": 1}

    owed = Refund.objects.get(encounter=encounter, reason="insurance_reversal")
    assert (owed.status, owed.amount, owed.channel) == ("owed", WARD_SHARE, "unionpay")
    assert posted(house.refunds_payable(institution)) == WARD_SHARE
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert posted(house.deposit_held(encounter)) == 0
    assert posted(house.patient_receivable(encounter)) == 0
    now = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()["settlement"]
    assert (now["self_pay"], now["funded_by"]) == (yuan(WARD_SELF), "deposit")
    assert now["paid_by"] == {"deposit": yuan(WARD_SELF), "credit": "0.00", "channel": "0.00"}
    assert len(standing(sim, encounter)) == 1
    assert_ledger_intact()


def repaid_before_the_insurer_returns(
    hospital: Any, make_person: Any, make_partner: Any, staff_client: Any, sim: Any
) -> tuple[Any, Encounter, CreditLine]:
    """Outage on credit; the patient repays ¥1,500.00 of the ¥1,850.00 draw to the bank; then
    the insurer comes back and the claim is retried. Returns (cashier, encounter, line)."""
    _, ward, _ = hospital
    _, bank = make_partner("平安银行")
    patient = make_person("杨柳", birth=date(1980, 1, 1))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    charge(cashier, encounter, ward_items(), WARD_TOTAL)
    sim.control("fail")
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        settled = settle(cashier, encounter)
        assert settled.json()["status"] == "settled_insurance_deferred"
        receivable = Receivable.objects.get(encounter=encounter)
        repaid = bank.post(
            "/api/partner/v1/repayments/",
            {
                "receivable": str(receivable.pk),
                "amount": "1500.00",
                "bank_txn_id": f"PA-{encounter.pk.hex[:10]}",
                "paid_at": timezone.now().isoformat(),
            },
        )
        assert repaid.status_code == 201, repaid.json()
        sim.control("ok")
        assert claims_retry() == {"reverted": 1}
    return cashier, encounter, line


REPAID = 150_000
STILL_OWED = WARD_TOTAL - REPAID  # to the bank when the insurer comes back: ¥350.00


@pytest.mark.django_db
def test_a_share_larger_than_what_is_still_owed_to_the_bank_is_partly_refunded_to_the_patient(
    hospital, make_person, make_partner, staff_client, sim
):
    """Only what is still owed to the bank comes off the credit; the rest of the share is owed
    back to the patient, who paid it to the bank."""
    _, encounter, line = repaid_before_the_insurer_returns(
        hospital, make_person, make_partner, staff_client, sim
    )
    institution = encounter.institution
    receivable = Receivable.objects.get(encounter=encounter)
    assert (receivable.outstanding, receivable.status) == (0, "repaid")
    owed = Refund.objects.get(encounter=encounter, reason="insurance_reversal")
    assert (owed.status, owed.amount) == ("owed", WARD_SHARE - STILL_OWED)
    assert posted(line.drawn_account) == 0
    assert account_balance(line.capacity_account).available == 300_000
    # The bank owes the hospital the draw less the reversal: what the patient paid the bank.
    assert posted(house.bank_receivable(institution, receivable.partner)) == REPAID
    assert posted(house.refunds_payable(institution)) == WARD_SHARE - STILL_OWED
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert Settlement.objects.get(encounter=encounter).self_pay == WARD_SELF
    assert len(standing(sim, encounter)) == 1
    assert_ledger_intact()


@pytest.mark.django_db
def test_the_bill_after_a_partly_refunded_share_shows_no_negative_deposit(
    hospital, make_person, make_partner, staff_client, sim
):
    cashier, encounter, _ = repaid_before_the_insurer_returns(
        hospital, make_person, make_partner, staff_client, sim
    )
    now = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()["settlement"]
    assert now["self_pay"] == yuan(WARD_SELF)
    # The self-pay that stands (¥619.00) was paid on credit; the rest of the draw is refunded.
    assert now["paid_by"] == {"deposit": "0.00", "credit": yuan(WARD_SELF), "channel": "0.00"}
    receipt = cashier.get(f"/api/v1/receipts/{now['receipt_no']}/").json()
    assert (receipt["paid_by_deposit"], receipt["paid_by_credit"]) == ("0.00", yuan(WARD_SELF))


# --- 3. the insurer hangs -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_hanging_pre_settle_times_out_and_defers_without_settling(
    hospital, make_person, make_partner, staff_client, sim
):
    institution, _, clinic = hospital
    partner, bank = make_partner("厦门农商银行")
    patient = make_person("吴涛", birth=date(1982, 1, 9))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, clinic, "outpatient")
    charge(cashier, encounter, clinic_items(), CLINIC_TOTAL)

    sim.control("hang", hang_seconds=HOLD)  # held until released below
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=TIMEOUT):
        settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        body = settled.json()
        assert (body["status"], body["funded_by"], body["self_pay"]) == (
            "settled_insurance_deferred",
            "credit",
            yuan(CLINIC_TOTAL),
        )
        # The adapter gave up; it did not wait for the insurer, which still holds the call.
        assert wait_until(lambda: sim.hanging() == 1)
        # A pre-settle changes nothing, so its timeout is plainly "unavailable"; no settle sent.
        assert calls(encounter) == [("2206", "unavailable")]
        assert "timed out" in claim_of(encounter).last_error.lower()
        assert posted(line.drawn_account) == CLINIC_TOTAL

        sim.control("ok", release=True)
        assert claims_retry() == {"reverted": 1}
    assert standing(sim, encounter)[0]["medfee_sumamt"] == CLINIC_TOTAL
    assert len(standing(sim, encounter)) == 1
    assert Receivable.objects.get(encounter=encounter).outstanding == CLINIC_SELF
    assert posted(line.drawn_account) == CLINIC_SELF
    assert posted(house.bank_receivable(institution, partner)) == CLINIC_SELF
    assert posted(house.insurer_receivable(institution)) == CLINIC_SHARE
    assert_ledger_intact()


def hang_after_pre_settle(sim: Any) -> type[InsurerClient]:
    """An adapter that lets the pre-settle through, then makes the insurer hang: the settle
    (and the query after it) time out, and the insurer holds them until the test releases
    them."""

    class Client(InsurerClient):
        def pre_settle(self, *args: Any, **kwargs: Any) -> Any:
            split = super().pre_settle(*args, **kwargs)
            sim.control("hang", hang_seconds=HOLD)
            return split

    return Client


@pytest.mark.django_db
def test_a_settle_that_times_out_and_lands_late_is_found_by_the_retry_not_settled_again(
    hospital, make_person, make_partner, staff_client, sim, monkeypatch
):
    institution, ward, _ = hospital
    partner, bank = make_partner("兴业银行")
    patient = make_person("郑南", birth=date(1979, 7, 7))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=TIMEOUT):
        with monkeypatch.context() as patch:
            patch.setattr("settlement.services.settle.InsurerClient", hang_after_pre_settle(sim))
            settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        assert settled.json()["status"] == "settled_insurance_deferred"
        assert settled.json()["self_pay"] == yuan(WARD_TOTAL)
        # The settle's outcome is unknown and the query could not tell: the msgid is kept.
        assert calls(encounter) == [("2303", "ok"), ("2304", "unknown"), ("5203", "unavailable")]
        claim = claim_of(encounter)
        assert claim.status == "deferred" and claim.settle_msgid.startswith("2304-")
        lost = claim.settle_msgid

        assert wait_until(lambda: sim.hanging() == 2)  # the settle and the query, unhandled
        sim.control("ok", release=True)
        # The insurer finishes the hung settle late.
        assert wait_until(lambda: len(standing(sim, encounter)) == 1)
        assert standing(sim, encounter)[0]["msgid"] == lost
        assert claims_retry() == {"reverted": 1}

    # Resolved by a query: no reversal, no second settle.
    assert calls(encounter)[3:] == [("5203", "ok")]
    assert len(standing(sim, encounter)) == 1
    claim = claim_of(encounter)
    assert (claim.status, claim.settle_msgid, claim.setl_id) == (
        "settled",
        "",
        standing(sim, encounter)[0]["setl_id"],
    )
    settlement = Settlement.objects.get(encounter=encounter)
    assert (settlement.insurance_fund, settlement.personal_account, settlement.self_pay) == (
        WARD_FUND,
        WARD_ACCOUNT,
        WARD_SELF,
    )
    assert posted(line.drawn_account) == WARD_SELF
    assert posted(house.bank_receivable(institution, partner)) == WARD_SELF
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert_ledger_intact()


@pytest.mark.django_db
def test_a_timed_out_settle_reversed_before_it_lands_is_refused_by_the_insurer_when_it_does(
    hospital, make_person, make_partner, staff_client, sim, monkeypatch
):
    institution, ward, _ = hospital
    partner, bank = make_partner("招商银行")
    patient = make_person("何平", birth=date(1990, 12, 1))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=TIMEOUT):
        with monkeypatch.context() as patch:
            patch.setattr("settlement.services.settle.InsurerClient", hang_after_pre_settle(sim))
            settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        assert settled.json()["status"] == "settled_insurance_deferred"
        lost = claim_of(encounter).settle_msgid
        assert lost

        sim.control("ok")  # new calls are answered; the hung settle stays held
        assert wait_until(lambda: sim.hanging() == 2)
        assert standing(sim, encounter) == []
        assert claims_retry() == {"reverted": 1}
        # Not found, so reversed (冲正) before anything else was sent; then settled afresh.
        assert calls(encounter)[3:] == [
            ("5203", "rejected"),
            ("2601", "ok"),
            ("2303", "ok"),
            ("2304", "ok"),
        ]
        # When the hung settle is finally handled the insurer refuses it.
        sim.control("ok", release=True)
        refused = f"msgid={lost} infcode=-1"
        assert wait_until(lambda: refused in sim.log_path.read_text())
        assert "reversed before it arrived" in sim.log_path.read_text()

    assert len(standing(sim, encounter)) == 1
    assert standing(sim, encounter)[0]["msgid"] != lost
    settlement = Settlement.objects.get(encounter=encounter)
    assert (settlement.insurance_fund, settlement.personal_account, settlement.self_pay) == (
        WARD_FUND,
        WARD_ACCOUNT,
        WARD_SELF,
    )
    assert posted(line.drawn_account) == WARD_SELF
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert_ledger_intact()


# --- 4. the answer is lost ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_lost_settle_answer_is_resolved_by_a_query_in_the_same_attempt(
    hospital, make_person, make_partner, staff_client, sim
):
    institution, ward, _ = hospital
    partner, bank = make_partner("中国银行")
    patient = make_person("蔡明", birth=date(1972, 2, 29))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    sim.control("drop")  # settles are processed and kept, the connection closed unanswered
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        body = settled.json()
        assert body["status"] == "settled"
        assert (body["insurance_fund"], body["personal_account"], body["self_pay"]) == (
            yuan(WARD_FUND),
            yuan(WARD_ACCOUNT),
            yuan(WARD_SELF),
        )
        assert body["funded_by"] == "credit"
        again = settle(cashier, encounter)
        assert again.status_code == 409

    assert calls(encounter) == [("2303", "ok"), ("2304", "unknown"), ("5203", "ok")]
    found = standing(sim, encounter)
    assert len(found) == 1
    claim = claim_of(encounter)
    assert (claim.status, claim.setl_id, claim.settle_msgid) == ("settled", found[0]["setl_id"], "")
    assert Receipt.objects.filter(encounter=encounter).count() == 1
    assert posted(line.drawn_account) == WARD_SELF
    assert posted(house.bank_receivable(institution, partner)) == WARD_SELF
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert_ledger_intact()


# --- 5. the answer is lost, then the insurer is down --------------------------------------------


@pytest.mark.django_db
def test_a_lost_answer_then_an_outage_defers_and_the_retry_finds_the_settlement(
    hospital, make_person, make_partner, staff_client, sim, monkeypatch
):
    """A minor on a parent's capped line: the settle's answer is lost and the insurer goes down
    before it can be asked; after the restart the query finds the settlement."""
    institution, ward, _ = hospital
    partner, bank = make_partner("厦门国际银行")
    mother = make_person("陈静", birth=date(1988, 3, 14))
    child = make_person("陈小雨", birth=date(2016, 9, 1))
    line = open_line(bank, mother)
    cashier = staff_client("cashier", hospital[0])
    linked = cashier.post(
        "/api/v1/family-links/",
        {
            "payer": mother.pk,
            "beneficiary": child.pk,
            "relation": "parent_of_minor",
            "consent": True,
            "cap": "2500.00",
        },
        format="json",
    )
    assert linked.status_code == 201, linked.json()
    link = FamilyLink.objects.get(pk=linked.json()["id"])
    encounter = admit(cashier, child, ward, "inpatient")
    assert (encounter.funding_line_id, encounter.funding_link_id) == (line.pk, link.pk)
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    class DropThenDown(InsurerClient):
        def settle(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().settle(*args, **kwargs)
            except InsurerOutcomeUnknown:
                sim.stop()  # the insurer is gone before the adapter can ask what happened
                raise

    sim.control("drop")
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        with monkeypatch.context() as patch:
            patch.setattr("settlement.services.settle.InsurerClient", DropThenDown)
            settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        body = settled.json()
        assert (body["status"], body["self_pay"], body["funded_by"]) == (
            "settled_insurance_deferred",
            yuan(WARD_TOTAL),
            "credit",
        )
        assert calls(encounter) == [("2303", "ok"), ("2304", "unknown"), ("5203", "unavailable")]
        lost = claim_of(encounter).settle_msgid
        assert lost
        assert posted(line.drawn_account) == WARD_TOTAL
        assert account_balance(link.cap_account).available == 250_000 - WARD_TOTAL

        # Down: the retry stays deferred and keeps the msgid to resolve later.
        assert claims_retry() == {"deferred": 1}
        claim = claim_of(encounter)
        assert (claim.status, claim.settle_msgid) == ("deferred", lost)

        sim.start()  # mode ok again, same state file: it still knows what it settled
        assert [s["msgid"] for s in standing(sim, encounter)] == [lost]
        assert claims_retry(now=claim.next_attempt_at) == {"reverted": 1}

    assert calls(encounter)[-1] == ("5203", "ok")
    assert [infno for infno, _ in calls(encounter)].count("2304") == 1
    assert "2601" not in [infno for infno, _ in calls(encounter)]
    assert len(standing(sim, encounter)) == 1
    settlement = Settlement.objects.get(encounter=encounter)
    assert (settlement.insurance_fund, settlement.personal_account, settlement.self_pay) == (
        WARD_FUND,
        WARD_ACCOUNT,
        WARD_SELF,
    )
    assert posted(line.drawn_account) == WARD_SELF
    assert account_balance(link.cap_account).available == 250_000 - WARD_SELF
    assert account_balance(line.capacity_account).available == 300_000 - WARD_SELF
    assert posted(house.bank_receivable(institution, partner)) == WARD_SELF
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert_ledger_intact()


@pytest.mark.django_db
def test_a_settle_remembered_from_an_earlier_attempt_is_queried_first_and_reused(
    hospital, make_person, make_partner, staff_client, sim
):
    """An earlier attempt sent the settle and crashed before storing the answer: the claim
    kept only the msgid. The next settle must ask, and reuse what the insurer settled."""
    institution, ward, _ = hospital
    partner, bank = make_partner("建设银行")
    patient = make_person("许安", birth=date(1966, 6, 16))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    msgid = InsurerClient.new_msgid("2304")
    InsuranceClaim.objects.create(encounter=encounter, settle_msgid=msgid, settle_infno="2304")
    raw = InsurerClient(base_url=sim.url, timeout=2).settle(
        "inpatient", str(encounter.pk), f"P{patient.pk}", fee_lines(encounter), msgid=msgid
    )
    assert (raw.fund_pay_sumamt, raw.acct_pay) == (WARD_FUND, WARD_ACCOUNT)
    sent_before = len(calls(encounter))

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        settled = settle(cashier, encounter)
    assert settled.status_code == 200, settled.json()
    body = settled.json()
    assert body["status"] == "settled"
    assert (body["insurance_fund"], body["personal_account"], body["self_pay"]) == (
        yuan(WARD_FUND),
        yuan(WARD_ACCOUNT),
        yuan(WARD_SELF),
    )
    # Only a query: no pre-settle, no second settle, no reversal.
    assert calls(encounter)[sent_before:] == [("5203", "ok")]
    assert [s["setl_id"] for s in standing(sim, encounter)] == [raw.setl_id]
    claim = claim_of(encounter)
    assert (claim.status, claim.setl_id, claim.settle_msgid) == ("settled", raw.setl_id, "")
    assert posted(line.drawn_account) == WARD_SELF
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert_ledger_intact()


@pytest.mark.django_db
def test_a_remembered_settle_that_never_arrived_is_reversed_and_refused_if_it_comes_late(
    hospital, make_person, make_partner, staff_client, sim
):
    institution, ward, _ = hospital
    partner, bank = make_partner("工商银行")
    patient = make_person("方圆", birth=date(1984, 10, 10))
    open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    charge(cashier, encounter, ward_items(), WARD_TOTAL)

    # The earlier attempt wrote its call and the claim's msgid, then crashed before sending.
    msgid = InsurerClient.new_msgid("2304")
    request = {
        "infno": "2304",
        "msgid": msgid,
        "input": {
            "mdtrt_id": str(encounter.pk),
            "psn_no": f"P{patient.pk}",
            "medfee_sumamt": yuan(WARD_TOTAL),
            "fee_lines": [line.to_wire() for line in fee_lines(encounter)],
        },
    }
    InsurerCall.objects.create(
        msgid=msgid, infno="2304", mdtrt_id=str(encounter.pk), request=request
    )
    InsuranceClaim.objects.create(encounter=encounter, settle_msgid=msgid, settle_infno="2304")
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=1):
        settled = settle(cashier, encounter)
    assert settled.status_code == 200, settled.json()
    assert settled.json()["status"] == "settled"
    # Not found, so reversed (冲正) first; only then a fresh pre-settle and settle.
    assert calls(encounter)[1:] == [
        ("5203", "rejected"),
        ("2601", "ok"),
        ("2303", "ok"),
        ("2304", "ok"),
    ]
    found = standing(sim, encounter)
    assert len(found) == 1 and found[0]["msgid"] != msgid

    # The lost settle turns up now: the insurer refuses it, still one settlement.
    late = sim.post("2304", request)
    assert late["infcode"] == -1
    assert len(standing(sim, encounter)) == 1
    assert posted(house.insurer_receivable(institution)) == WARD_SHARE
    assert_ledger_intact()
