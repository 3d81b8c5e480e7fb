"""Worked examples in the cashier's words, for the two paths the big fallback tests cover only
in passing: a deposit left over after settlement, and a bill paid in cash while the insurer
was down. Every balance is asserted at each step, with the insurer simulator as a real
process (its default policy: inpatient deductible ¥800 at 85 %, outpatient ¥200 at 60 %, a
personal account of ¥500).
"""

from datetime import date

import pytest

from accounts.services.institutions import department_ensure, institution_ensure
from ledger.selectors import account_balance
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.insurer.client import InsurerClient
from settlement.models import Encounter, InsuranceClaim, Refund, Settlement
from settlement.services import house
from settlement.services.claim_retries import claims_retry
from settlement.services.encounters import (
    ChargeItem,
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.settle import encounter_settle
from tests.factories import charge_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def ward():
    hospital = institution_ensure(actor="test", code="XMH7", name="厦门市第七医院")
    ward = department_ensure(
        actor="test", institution=hospital, code="IM", name="内科", default_deposit=200_000
    )
    ward.refresh_from_db()
    return ward


def a_line_of(fen: int) -> list[ChargeItem]:
    """One class-A drug line of ``fen``, served today."""
    return [charge_item(fen, code="D1", name="头孢", category="drug", insurance_class="A")]


def balance(account) -> int:
    return account_balance(account).posted


def test_a_deposit_left_over_goes_back_by_the_channels_it_came_in_newest_first(
    ward, make_person, sim
):
    hospital = ward.institution
    patient = make_person("黄河", birth=date(1970, 5, 5))  # no credit line
    stay = encounter_admit(actor="desk", person=patient, department=ward, kind="inpatient")
    assert not stay.deposit_waived and stay.deposit_required == 200_000

    # ¥500 in cash at admission, ¥1,500 by card the next morning.
    deposit_pay(actor="desk", encounter_id=stay.pk, amount=50_000, channel="cash", key="d1")
    deposit_pay(actor="desk", encounter_id=stay.pk, amount=150_000, channel="card", key="d2")
    held = house.deposit_held(stay)
    assert balance(held) == 200_000
    assert balance(house.clearing(hospital, "cash")) == 50_000
    assert balance(house.clearing(hospital, "card")) == 150_000

    # ¥1,000 of class-A drugs: the patient owes it, drug revenue earns it.
    charges_post(actor="desk", encounter_id=stay.pk, items=a_line_of(100_000), key="c1")
    assert balance(house.patient_receivable(stay)) == 100_000
    assert balance(house.revenue(hospital, "drug")) == 100_000

    # Settle. The insurer: fund (1000 − 800) × 85 % = ¥170, personal account ¥500, cash ¥330.
    settled = encounter_settle(
        actor="desk", encounter_id=stay.pk, client=InsurerClient(sim.url, timeout=3)
    )
    assert (settled.insurance_fund, settled.personal_account, settled.self_pay) == (
        17_000,
        50_000,
        33_000,
    )
    assert (settled.funded_by, settled.paid_by_deposit) == ("deposit", 33_000)
    # The ¥1,670 left goes back newest first: all ¥1,500 of the card, then ¥170 of the cash.
    refunds = list(Refund.objects.filter(encounter=stay).order_by("-amount"))
    assert [(r.channel, r.amount, r.reason, r.status) for r in refunds] == [
        ("card", 150_000, "deposit_leftover", "paid"),
        ("cash", 17_000, "deposit_leftover", "paid"),
    ]
    assert balance(held) == 0
    assert balance(house.patient_receivable(stay)) == 0
    assert balance(house.insurer_receivable(hospital)) == 67_000  # fund and personal account
    assert balance(house.clearing(hospital, "card")) == 0
    assert balance(house.clearing(hospital, "cash")) == 33_000  # what the patient paid in all
    assert balance(house.revenue(hospital, "drug")) == 100_000
    chain_seal()
    assert verify_ledger().intact


def test_cash_paid_while_the_insurer_was_down_becomes_a_refund_owed_when_it_answers(
    ward, make_person, sim
):
    hospital = ward.institution
    patient = make_person("林江", birth=date(1966, 6, 6))  # no credit line
    visit = encounter_admit(actor="desk", person=patient, department=ward, kind="outpatient")
    charges_post(actor="desk", encounter_id=visit.pk, items=a_line_of(100_000), key="c1")

    # The insurer is down: the whole ¥1,000 is self-pay, paid in cash, and the claim waits.
    sim.control("fail")
    insurer = InsurerClient(sim.url, timeout=3)
    settled = encounter_settle(actor="desk", encounter_id=visit.pk, channel="cash", client=insurer)
    assert (settled.self_pay, settled.paid_by_channel, settled.insurance_fund) == (
        100_000,
        100_000,
        0,
    )
    visit.refresh_from_db()
    assert visit.status == Encounter.Status.SETTLED_INSURANCE_DEFERRED
    claim = InsuranceClaim.objects.get(encounter=visit)
    assert claim.status == InsuranceClaim.Status.DEFERRED
    assert balance(house.clearing(hospital, "cash")) == 100_000
    assert balance(house.patient_receivable(visit)) == 0
    assert balance(house.insurer_receivable(hospital)) == 0
    assert balance(house.refunds_payable(hospital)) == 0

    # The insurer answers: fund (1000 − 200) × 60 % = ¥480, personal account ¥500. Its ¥980
    # is owed back to the patient, who paid it in cash at the window.
    sim.control("ok")
    assert claims_retry(client=insurer) == {"reverted": 1}
    claim.refresh_from_db()
    assert claim.status == InsuranceClaim.Status.SETTLED
    owed = Refund.objects.get(encounter=visit)
    assert (owed.amount, owed.channel, owed.reason, owed.status) == (
        98_000,
        "cash",
        "insurance_reversal",
        "owed",
    )
    answer = Settlement.objects.get(encounter=visit)
    assert (answer.insurance_fund, answer.personal_account, answer.self_pay) == (
        48_000,
        50_000,
        2_000,
    )
    assert balance(house.insurer_receivable(hospital)) == 98_000
    assert balance(house.refunds_payable(hospital)) == 98_000
    assert balance(house.clearing(hospital, "cash")) == 100_000  # paid out only when refunded
    assert balance(house.patient_receivable(visit)) == 0
    # Retrying again finds nothing to do: the claim reverted once.
    assert claims_retry(client=insurer) == {}
    assert Refund.objects.filter(encounter=visit).count() == 1
    chain_seal()
    assert verify_ledger().intact
