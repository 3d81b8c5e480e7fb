"""The funding plan of a settlement (deposit, then credit line, then a payment channel) and the
return of a late insurer share, one case each, with the data built through the services.

Each plan is checked against what the settlement then does with it. Settles here reach no
insurer (``INSURER_DOWN``), so the whole bill is self-pay and the claim deferred; the revert
cases then settle the claim with the shared simulator (outpatient, one class-A line of ¥1,000:
fund (1000 − 200) × 60 % = ¥480, personal account ¥500, so ¥980 moves to the insurer).
"""

from datetime import date
from uuid import uuid4

import pytest

from accounts.services.credit_lines import credit_line_freeze
from accounts.services.family import family_link_create
from accounts.services.institutions import department_ensure, institution_ensure
from ledger.selectors import account_balance
from settlement.exceptions import SelfPayNotCovered
from settlement.insurer.client import InsurerClient
from settlement.models import Encounter, InsuranceClaim, Receivable, Refund, Settlement
from settlement.services.claim_retries import claim_retry
from settlement.services.encounters import (
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.funding import cover_check, funding_plan, share_return
from settlement.services.settle import encounter_settle
from tests.factories import INSURER_DOWN, charge_item, grant_line

pytestmark = pytest.mark.django_db

DEPOSIT = 50_000  # the ward's inpatient deposit, ¥500
SHARE = 98_000  # what the simulator's insurer pays of a ¥1,000 class-A outpatient bill


@pytest.fixture
def ward():
    institution = institution_ensure(actor="test", code="XMFP", name="厦门资金测试医院")
    department = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=DEPOSIT
    )
    department.refresh_from_db()
    return department


@pytest.fixture
def bank(make_partner):
    partner, _ = make_partner("厦门银行")
    return partner


def admit(person, ward, kind: str, *, fen: int, insurance_class: str = "C") -> Encounter:
    encounter = encounter_admit(actor="test", person=person, department=ward, kind=kind)
    item = charge_item(fen, category="exam", insurance_class=insurance_class)
    charges_post(key=uuid4().hex, actor="test", encounter_id=encounter.pk, items=[item])
    return Encounter.objects.get(pk=encounter.pk)


def settle_offline(encounter: Encounter, channel: str | None = None) -> Settlement:
    """Settle with the insurer unreachable: all of the bill is self-pay."""
    return encounter_settle(
        actor="test",
        encounter_id=encounter.pk,
        channel=channel,
        client=InsurerClient(INSURER_DOWN, timeout=1),
    )


def paid(settlement: Settlement) -> tuple[int, int, int]:
    return settlement.paid_by_deposit, settlement.paid_by_credit, settlement.paid_by_channel


# --- the plan ---------------------------------------------------------------------------------


def test_a_paid_deposit_pays_first_and_what_is_left_of_it_is_refunded(ward, make_person):
    stay = admit(make_person("黄海", birth=date(1970, 1, 1)), ward, "inpatient", fen=30_000)
    deposit_pay(actor="test", encounter_id=stay.pk, amount=DEPOSIT, channel="card", key="d1")

    plan = funding_plan(stay, 30_000, None)
    assert (plan.from_deposit, plan.from_credit, plan.from_channel) == (30_000, 0, 0)
    assert (plan.deposit_held, plan.deposit_left) == (DEPOSIT, 20_000)
    assert plan.line is None and plan.drawing_line is None
    cover_check(plan)  # covered without a channel

    settlement = settle_offline(stay)
    assert paid(settlement) == (30_000, 0, 0)
    assert settlement.funded_by == "deposit"
    refund = Refund.objects.get(encounter=stay)
    assert (refund.amount, refund.channel, refund.reason) == (20_000, "card", "deposit_leftover")


def test_the_stays_own_line_pays_the_rest_capturing_the_hold_taken_at_admission(
    ward, make_person, bank
):
    patient = make_person("陈山", birth=date(1975, 3, 3))
    line = grant_line(bank, patient)
    stay = admit(patient, ward, "inpatient", fen=80_000)
    assert stay.deposit_waived and stay.funding_line == line

    plan = funding_plan(stay, 80_000, None)
    assert (plan.from_deposit, plan.from_credit, plan.from_channel) == (0, 80_000, 0)
    assert plan.drawing_line == line and plan.link is None and not plan.line_chosen_now
    assert plan.hold is not None and plan.hold.line_hold == stay.line_hold_id
    assert plan.hold.cap_hold is None

    settlement = settle_offline(stay)
    assert paid(settlement) == (0, 80_000, 0)
    assert account_balance(line.drawn_account).posted == 80_000
    assert account_balance(line.capacity_account).debits_pending == 0  # the hold was captured
    assert Receivable.objects.get(encounter=stay).amount == 80_000


def test_a_bill_within_the_stays_hold_is_drawn_from_it_and_the_rest_of_it_freed(
    ward, make_person, bank
):
    patient = make_person("陈水", birth=date(1976, 3, 3))
    line = grant_line(bank, patient)
    stay = admit(patient, ward, "inpatient", fen=30_000)  # the hold keeps ¥500
    free_before = account_balance(line.capacity_account).available

    plan = funding_plan(stay, 30_000, None)
    assert (plan.from_deposit, plan.from_credit, plan.from_channel) == (0, 30_000, 0)
    assert plan.held == DEPOSIT

    settlement = settle_offline(stay)
    assert paid(settlement) == (0, 30_000, 0)
    assert account_balance(line.drawn_account).posted == 30_000
    capacity = account_balance(line.capacity_account)
    assert capacity.debits_pending == 0  # ¥300 of the hold captured, ¥200 of it freed
    assert capacity.available == free_before + DEPOSIT - 30_000


def test_a_line_frozen_since_admission_pays_nothing_though_its_hold_covers_the_bill(
    ward, make_person, bank
):
    patient = make_person("陈木", birth=date(1977, 3, 3))
    line = grant_line(bank, patient)
    stay = admit(patient, ward, "inpatient", fen=30_000)
    credit_line_freeze(actor="test", partner=bank, line_id=line.pk)

    plan = funding_plan(stay, 30_000, None)
    assert (plan.from_credit, plan.from_channel) == (0, 30_000)
    with pytest.raises(SelfPayNotCovered):
        settle_offline(stay)
    settlement = settle_offline(stay, channel="cash")
    assert paid(settlement) == (0, 0, 30_000)
    assert account_balance(line.capacity_account).debits_pending == 0  # the hold was freed


def test_an_adult_child_carries_a_parents_visit_on_a_line_chosen_at_settlement(
    ward, make_person, bank
):
    son = make_person("王子", birth=date(1985, 5, 5))
    mother = make_person("王母", birth=date(1950, 5, 5))
    line = grant_line(bank, son)
    link = family_link_create(
        actor="test",
        payer=son,
        beneficiary=mother,
        relation="child_of_parent",
        consent=True,
        consent_by="王子",
        consent_channel="cashier",
    )
    visit = admit(mother, ward, "outpatient", fen=30_000)
    assert visit.funding_line is None  # an outpatient visit holds nothing at admission

    plan = funding_plan(visit, 30_000, None)
    assert (plan.from_credit, plan.from_channel) == (30_000, 0)
    assert (plan.line, plan.link, plan.hold, plan.line_chosen_now) == (line, link, None, True)

    settlement = settle_offline(visit)
    assert paid(settlement) == (0, 30_000, 0)
    visit.refresh_from_db()
    assert (visit.funding_line, visit.funding_link) == (line, link)
    assert account_balance(line.drawn_account).posted == 30_000


def test_a_minor_on_a_parents_line_is_held_and_drawn_within_the_links_cap(ward, make_person, bank):
    mother = make_person("林母", birth=date(1984, 4, 4))
    child = make_person("林子", birth=date(2016, 6, 6))
    line = grant_line(bank, mother)
    link = family_link_create(
        actor="test",
        payer=mother,
        beneficiary=child,
        relation="parent_of_minor",
        consent=True,
        consent_by="林母",
        consent_channel="cashier",
        cap=70_000,
    )
    stay = admit(child, ward, "inpatient", fen=90_000)
    assert stay.deposit_waived and (stay.funding_line, stay.funding_link) == (line, link)

    plan = funding_plan(stay, 90_000, None)
    # The line has room for all of it; the link's cap (its ¥500 hold included) for ¥700.
    assert (plan.from_deposit, plan.from_credit, plan.from_channel) == (0, 70_000, 20_000)
    assert stay.cap_hold_id is not None
    assert plan.hold is not None and plan.hold.cap_hold == stay.cap_hold_id
    assert plan.link == link and not plan.line_chosen_now
    with pytest.raises(SelfPayNotCovered):
        cover_check(plan)
    with pytest.raises(SelfPayNotCovered):
        settle_offline(stay)

    settlement = settle_offline(stay, channel="wechat")
    assert paid(settlement) == (0, 70_000, 20_000)
    assert settlement.channel == "wechat"
    assert account_balance(line.drawn_account).posted == 70_000
    assert account_balance(link.cap_account).available == 0


def test_a_channel_tops_up_what_the_deposit_leaves(ward, make_person):
    stay = admit(make_person("赵河", birth=date(1969, 9, 9)), ward, "inpatient", fen=30_000)
    deposit_pay(actor="test", encounter_id=stay.pk, amount=10_000, channel="cash", key="d1")

    plan = funding_plan(stay, 30_000, "alipay")
    assert (plan.from_deposit, plan.from_credit, plan.from_channel) == (10_000, 0, 20_000)
    assert plan.deposit_left == 0 and plan.channel == "alipay"
    cover_check(plan)
    with pytest.raises(SelfPayNotCovered):
        cover_check(funding_plan(stay, 30_000, None))

    settlement = settle_offline(stay, channel="alipay")
    assert paid(settlement) == (10_000, 0, 20_000)
    assert settlement.funded_by == "deposit"
    assert not Refund.objects.filter(encounter=stay).exists()


def test_a_channel_tops_up_what_a_line_with_little_room_leaves(ward, make_person, bank):
    patient = make_person("周林", birth=date(1972, 2, 2))
    line = grant_line(bank, patient, limit=10_000)
    visit = admit(patient, ward, "outpatient", fen=30_000)

    # No line has room for all of it: the one with some room pays what it can.
    plan = funding_plan(visit, 30_000, "card")
    assert (plan.from_credit, plan.from_channel) == (10_000, 20_000)
    assert plan.line == line and plan.line_chosen_now

    settlement = settle_offline(visit, channel="card")
    assert paid(settlement) == (0, 10_000, 20_000)
    assert settlement.funded_by == "credit"
    assert account_balance(line.capacity_account).available == 0


# --- the insurer's share when a deferred claim settles ----------------------------------------


def test_a_share_paid_at_the_window_while_the_insurer_was_down_becomes_a_refund_owed(
    ward, make_person, sim
):
    visit = admit(
        make_person("林江", birth=date(1966, 6, 6)),
        ward,
        "outpatient",
        fen=100_000,
        insurance_class="A",
    )
    settlement = settle_offline(visit, channel="cash")
    assert paid(settlement) == (0, 0, 100_000)

    plan = share_return(visit, settlement, SHARE)
    assert (plan.off_credit, plan.to_refund, plan.refund_channel) == (0, SHARE, "cash")
    assert (plan.credit_back, plan.channel_back, plan.deposit_back) == (0, SHARE, 0)

    claim = InsuranceClaim.objects.get(encounter=visit)
    assert claim_retry(claim_id=claim.pk, client=InsurerClient(sim.url, timeout=3)) == ("reverted")
    owed = Refund.objects.get(encounter=visit)
    assert (owed.amount, owed.channel, owed.reason, owed.status) == (
        SHARE,
        "cash",
        "insurance_reversal",
        "owed",
    )
    settlement.refresh_from_db()
    assert (settlement.self_pay, *paid(settlement)) == (2_000, 0, 0, 2_000)


def test_a_share_drawn_on_credit_while_the_insurer_was_down_comes_off_the_draw(
    ward, make_person, bank, sim
):
    patient = make_person("钱海", birth=date(1967, 7, 7))
    line = grant_line(bank, patient)
    visit = admit(patient, ward, "outpatient", fen=100_000, insurance_class="A")
    settlement = settle_offline(visit)
    assert paid(settlement) == (0, 100_000, 0)

    plan = share_return(visit, settlement, SHARE)
    assert plan.receivable == Receivable.objects.get(encounter=visit)
    assert (plan.off_credit, plan.to_refund, plan.refund_channel) == (SHARE, 0, "")
    assert (plan.credit_back, plan.channel_back, plan.deposit_back) == (SHARE, 0, 0)

    claim = InsuranceClaim.objects.get(encounter=visit)
    assert claim_retry(claim_id=claim.pk, client=InsurerClient(sim.url, timeout=3)) == ("reverted")
    assert not Refund.objects.filter(encounter=visit).exists()
    assert Receivable.objects.get(encounter=visit).outstanding == 2_000
    assert account_balance(line.drawn_account).posted == 2_000
    settlement.refresh_from_db()
    assert paid(settlement) == (0, 2_000, 0)
