"""The insurer policy, the simulator as a real process, and the adapter's outcomes against it."""

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.core.management.base import CommandParser
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from core.money import WIRE, fen_to_yuan, yuan_to_fen
from settlement.insurer import (
    InsurerOutcomeUnknown,
    InsurerRejected,
    InsurerUnavailable,
)
from settlement.insurer import simulator as sim_module
from settlement.insurer.client import FeeLine, FeeLines, InsurerClient, Split
from settlement.insurer.policy import Policy, PolicySplit, compute_split
from settlement.models import InsurerCall
from tests.settlement.conftest import HOLD, Simulator
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

# Inpatient A ¥10,000.00, B ¥2,000.00, C ¥500.00: the worked example of policy.py.
WARD_LINES = [
    FeeLine("A", 1_000_000, "drug-1", date(2026, 3, 2)),
    FeeLine("B", 200_000, "exam-7", date(2026, 3, 2)),
    FeeLine("C", 50_000, "room-vip", date(2026, 3, 3)),
]
WARD_SPLIT = (1_250_000, 935_000, 50_000, 265_000)


def parts(split: Any) -> tuple[int, int, int, int]:
    return (split.medfee_sumamt, split.fund_pay_sumamt, split.acct_pay, split.psn_cash_pay)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:12]}"


# --- policy: pure worked examples ----------------------------------------------------------------


def test_inpatient_mix_of_classes_a_b_c():
    lines = [("A", 1_000_000), ("B", 200_000), ("C", 50_000)]
    split = compute_split(Policy(), kind="inpatient", lines=lines, account_balance=50_000)
    # eligible 1,180,000 = A + B - 10 % of B; fund (1,180,000 - 80,000) × 85 %
    assert split == PolicySplit(1_250_000, 935_000, 50_000, 265_000)


def test_outpatient_under_the_deductible_gets_nothing_from_the_fund():
    lines = [("A", 15_000), ("C", 3_000)]
    split = compute_split(Policy(), kind="outpatient", lines=lines, account_balance=50_000)
    # The account pays the A item; class C stays with the patient.
    assert split == PolicySplit(18_000, 0, 15_000, 3_000)


def test_personal_account_runs_out_across_encounters():
    policy, balance = Policy(), 50_000
    first = compute_split(policy, kind="outpatient", lines=[("A", 30_000)], account_balance=balance)
    assert first == PolicySplit(30_000, 6_000, 24_000, 0)
    balance -= first.acct_pay
    second = compute_split(
        policy, kind="outpatient", lines=[("A", 50_000)], account_balance=balance
    )
    assert second == PolicySplit(50_000, 18_000, 26_000, 6_000)
    balance -= second.acct_pay
    third = compute_split(policy, kind="outpatient", lines=[("A", 10_000)], account_balance=balance)
    assert (balance, third) == (0, PolicySplit(10_000, 0, 0, 10_000))


def test_rounding_is_half_up_to_the_fen():
    # 10 % of B is 1,234.5 fen → 1,235; (111,130 - 80,000) × 85 % is 26,460.5 → 26,461.
    # Banker's rounding would give 1,234 and 26,460.
    lines = [("A", 100_020), ("B", 12_345)]
    split = compute_split(Policy(), kind="inpatient", lines=lines, account_balance=0)
    assert split == PolicySplit(112_365, 26_461, 0, 85_904)


def test_class_c_is_never_paid_by_the_account():
    split = compute_split(Policy(), kind="inpatient", lines=[("C", 99_999)], account_balance=50_000)
    assert split == PolicySplit(99_999, 0, 0, 99_999)


def test_a_reversal_line_nets_within_its_class_and_a_negative_class_is_refused():
    lines = [("A", 30_000), ("A", -10_000)]
    split = compute_split(Policy(), kind="outpatient", lines=lines, account_balance=0)
    assert split == PolicySplit(20_000, 0, 0, 20_000)
    with pytest.raises(ValueError, match="negative"):
        compute_split(Policy(), kind="outpatient", lines=[("B", -1)], account_balance=0)


@given(
    kind=st.sampled_from(["inpatient", "outpatient"]),
    amounts=st.tuples(*[st.integers(0, 10**9)] * 3),
    balance=st.integers(0, 10**6),
)
def test_a_split_always_adds_up_and_stays_in_bounds(kind, amounts, balance):
    a, b, c = amounts
    split = compute_split(
        Policy(), kind=kind, lines=[("A", a), ("B", b), ("C", c)], account_balance=balance
    )
    assert split.fund_pay_sumamt + split.acct_pay + split.psn_cash_pay == a + b + c
    assert 0 <= split.fund_pay_sumamt <= a + b
    assert 0 <= split.acct_pay <= balance
    assert split.psn_cash_pay >= c


def test_policy_flags_are_yuan_and_fractions():
    parser = CommandParser()
    sim_module.add_arguments(parser)
    options = vars(
        parser.parse_args(["--deductible-inpatient", "1000", "--fund-rate-outpatient", "0.5"])
    )
    policy = sim_module.policy_from_options(options)
    assert policy.deductible_inpatient == 100_000
    assert policy.fund_rate_outpatient == Decimal("0.5")
    assert policy.deductible_outpatient == 20_000 and policy.personal_account == 50_000


def test_yuan_strings_convert_to_fen_exactly():
    assert yuan_to_fen("1234.50", WIRE) == 123_450
    assert yuan_to_fen("0.07", WIRE) == 7
    assert yuan_to_fen("-0.05", WIRE) == -5
    assert fen_to_yuan(123_450) == "1234.50"
    assert fen_to_yuan(-5) == "-0.05"
    for bad in ("1.234", "1e3", "NaN", "", " 1.00", 1.5, 150, "١٢٣", "1" * 14):
        with pytest.raises(ValueError):
            yuan_to_fen(bad, WIRE)


# --- the simulator as a process ---------------------------------------------------------------


@pytest.fixture
def client(shared_sim):
    return InsurerClient(base_url=shared_sim.url, timeout=5)


def settlements_of(sim: Simulator, mdtrt_id: str) -> list[dict[str, Any]]:
    return [s for s in sim.state()["settlements"] if s["mdtrt_id"] == mdtrt_id]


# --- the adapter against it -------------------------------------------------------------------


class Recording(InsurerClient):
    """The adapter, keeping the bodies it sends."""

    def __init__(self, url: str) -> None:
        super().__init__(base_url=url, timeout=5)
        self.sent: list[bytes] = []

    def _post(self, infno: str, body: bytes) -> tuple[int, Any]:
        self.sent.append(body)
        return super()._post(infno, body)


@pytest.mark.django_db
def test_the_settle_is_stored_as_sent_and_the_pre_settle_without_its_lines(shared_sim):
    """A stay's fee lines are stored once: with the settle, as the very text sent; the
    pre-settle before it keeps only their count."""
    recording = Recording(shared_sim.url)
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    recording.pre_settle("inpatient", mdtrt_id, psn_no, WARD_LINES, fixmedins_code="XMH1")
    recording.settle("inpatient", mdtrt_id, psn_no, WARD_LINES, fixmedins_code="XMH1")

    pre, settle = InsurerCall.objects.filter(mdtrt_id=mdtrt_id).order_by("started_at")
    sent_pre, sent_settle = (json.loads(body) for body in recording.sent)
    assert len(sent_pre["input"]["fee_lines"]) == len(WARD_LINES)
    assert pre.request == {**sent_pre, "input": {**sent_pre["input"], "fee_lines": {"count": 3}}}
    assert settle.request == sent_settle
    assert sent_settle["input"]["fee_lines"] == sent_pre["input"]["fee_lines"]
    assert pre.outcome == settle.outcome == InsurerCall.Outcome.OK


@pytest.mark.django_db
def test_pre_settle_then_settle_stores_every_call_with_a_unique_msgid(client, shared_sim):
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")

    pre = client.pre_settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    assert parts(pre) == WARD_SPLIT and pre.setl_id is None
    assert settlements_of(shared_sim, mdtrt_id) == []  # a pre-settlement changes nothing

    settled = client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    assert parts(settled) == WARD_SPLIT
    assert settled.setl_id and settled.msgid == client.last_msgid
    assert settled.msgid.startswith("2304-")

    calls = list(InsurerCall.objects.filter(mdtrt_id=mdtrt_id).order_by("started_at"))
    assert [c.infno for c in calls] == ["2303", "2304"]
    assert len({c.msgid for c in calls}) == 2
    assert pre.msgid == calls[0].msgid and settled.msgid == calls[1].msgid
    for call in calls:
        assert call.outcome == InsurerCall.Outcome.OK
        assert call.request["msgid"] == call.msgid and call.request["infno"] == call.infno
        assert call.request["input"]["medfee_sumamt"] == "12500.00"
        assert call.response["infcode"] == 0 and call.finished_at is not None
    assert calls[1].response["output"]["setlinfo"]["setl_id"] == settled.setl_id
    assert {line["amount"] for line in calls[1].request["input"]["fee_lines"]} == {
        "10000.00",
        "2000.00",
        "500.00",
    }


@pytest.mark.django_db
def test_settle_twice_is_refused(client, shared_sim):
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    client.settle("outpatient", mdtrt_id, psn_no, [FeeLine("A", 40_000)])

    with pytest.raises(InsurerRejected, match="already settled") as refused:
        client.settle("outpatient", mdtrt_id, psn_no, [FeeLine("A", 40_000)])

    call = InsurerCall.objects.get(msgid=refused.value.msgid)
    assert (call.outcome, call.error) == (InsurerCall.Outcome.REJECTED, "already settled")
    assert len(settlements_of(shared_sim, mdtrt_id)) == 1
    with pytest.raises(InsurerRejected, match="already settled"):
        client.pre_settle("outpatient", mdtrt_id, psn_no, [FeeLine("A", 40_000)])


@pytest.mark.django_db
def test_query_finds_the_standing_settlement(client):
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    assert client.query(mdtrt_id) is None

    settled = client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)

    found = client.query(mdtrt_id)
    assert found is not None and (found.setl_id, parts(found)) == (settled.setl_id, WARD_SPLIT)
    by_setl_id = client.query(setl_id=settled.setl_id or "")
    assert by_setl_id == Split(*WARD_SPLIT, setl_id=settled.setl_id, msgid=client.last_msgid)


@pytest.mark.django_db
def test_cancel_gives_the_account_back_and_allows_a_new_settlement(client, shared_sim):
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    settled = client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    assert shared_sim.state()["balances"][psn_no] == 0

    client.cancel("inpatient", settled.setl_id or "", mdtrt_id, psn_no)

    assert client.query(mdtrt_id) is None
    assert shared_sim.state()["balances"][psn_no] == 50_000
    with pytest.raises(InsurerRejected, match="already cancelled"):
        client.cancel("inpatient", settled.setl_id or "", mdtrt_id, psn_no)
    again = client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    assert again.setl_id != settled.setl_id and parts(again) == WARD_SPLIT


@pytest.mark.django_db
def test_the_personal_account_is_shared_by_a_persons_encounters(client):
    psn_no = new_id("psn")
    first = client.settle("outpatient", new_id("enc"), psn_no, [FeeLine("A", 30_000)])
    second = client.settle("outpatient", new_id("enc"), psn_no, [FeeLine("A", 50_000)])
    other_person = client.pre_settle(
        "outpatient", new_id("enc"), new_id("psn"), [FeeLine("A", 50_000)]
    )

    assert parts(first) == (30_000, 6_000, 24_000, 0)
    assert parts(second) == (50_000, 18_000, 26_000, 6_000)  # only ¥260.00 was left
    assert parts(other_person) == (50_000, 18_000, 32_000, 0)


@pytest.mark.django_db
def test_the_simulator_refuses_a_total_that_is_not_the_sum_of_the_lines(shared_sim):
    body = {
        "infno": "2206",
        "msgid": new_id("raw"),
        "input": {
            "mdtrt_id": new_id("enc"),
            "psn_no": new_id("psn"),
            "medfee_sumamt": "100.00",
            "fee_lines": [{"insurance_class": "A", "amount": "99.99"}],
        },
    }
    answer = shared_sim.post("2206", body)
    assert answer == {"infcode": -1, "err_msg": "medfee_sumamt does not equal the sum of fee_lines"}
    body["input"]["fee_lines"] = [{"insurance_class": "A", "amount": "100.001"}]
    assert shared_sim.post("2206", body)["infcode"] == -1


def test_a_settle_resent_with_its_msgid_is_answered_again_not_settled_again(shared_sim):
    mdtrt_id = new_id("enc")
    body = {
        "infno": "2207",
        "msgid": new_id("raw"),
        "input": {
            "mdtrt_id": mdtrt_id,
            "psn_no": new_id("psn"),
            "medfee_sumamt": "10.00",
            "fee_lines": [{"insurance_class": "C", "amount": "10.00"}],
        },
    }
    first = shared_sim.post("2207", body)
    assert first["infcode"] == 0
    assert shared_sim.post("2207", body) == first
    assert len(settlements_of(shared_sim, mdtrt_id)) == 1


@pytest.mark.django_db
def test_a_reversal_before_the_call_arrives_makes_the_insurer_refuse_it_later(client, shared_sim):
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    msgid = InsurerClient.new_msgid("2207")

    assert client.reverse(msgid, "2207") is False  # nothing to undo yet

    with pytest.raises(InsurerRejected, match="reversed before it arrived"):
        client.settle("outpatient", mdtrt_id, psn_no, [FeeLine("A", 1_000)], msgid=msgid)
    assert settlements_of(shared_sim, mdtrt_id) == []


@pytest.mark.django_db
def test_settings_give_the_url_and_the_timeout(shared_sim):
    with override_settings(INSURER_URL=shared_sim.url + "/", INSURER_TIMEOUT_SECONDS=1):
        client = InsurerClient()
    assert (client.base_url, client.timeout) == (shared_sim.url, 1.0)
    assert client.query(new_id("enc")) is None


@pytest.mark.django_db
def test_state_survives_a_restart_of_the_process(sim):
    client = InsurerClient(base_url=sim.url, timeout=5)
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    settled = client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)

    sim.stop()
    sim.start()

    found = client.query(mdtrt_id)
    assert found is not None and found.setl_id == settled.setl_id
    with pytest.raises(InsurerRejected, match="already settled"):
        client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    # The account spent before the restart stays spent.
    later = client.pre_settle("outpatient", new_id("enc"), psn_no, [FeeLine("A", 10_000)])
    assert later.acct_pay == 0 and later.psn_cash_pay == 10_000


@pytest.mark.django_db
def test_mode_fail_is_unavailable(sim):
    client = InsurerClient(base_url=sim.url, timeout=5)
    sim.control("fail")
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")

    with pytest.raises(InsurerUnavailable) as pre:
        client.pre_settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    with pytest.raises(InsurerUnavailable) as settle:
        client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)

    for error in (pre.value, settle.value):
        call = InsurerCall.objects.get(msgid=error.msgid)
        assert (call.outcome, call.error) == (InsurerCall.Outcome.UNAVAILABLE, "HTTP 503")
        assert call.response is not None and call.finished_at is not None
    assert sim.state()["settlements"] == []


@pytest.mark.django_db
def test_mode_hang_times_out_as_unavailable_or_unknown(sim):
    # The client's own timeout is what is tested: the insurer holds both calls until released.
    client = InsurerClient(base_url=sim.url, timeout=0.5)
    sim.control("hang", hang_seconds=HOLD)
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")

    with pytest.raises(InsurerUnavailable) as pre:
        client.pre_settle("outpatient", mdtrt_id, psn_no, [FeeLine("A", 5_000)])
    with pytest.raises(InsurerOutcomeUnknown) as settle:
        client.settle("outpatient", mdtrt_id, psn_no, [FeeLine("A", 5_000)])

    # The client gave up; the insurer holds both calls, handling neither.
    assert wait_until(lambda: sim.hanging() == 2)
    assert InsurerCall.objects.get(msgid=pre.value.msgid).outcome == "unavailable"
    call = InsurerCall.objects.get(msgid=settle.value.msgid)
    assert (call.outcome, call.response) == (InsurerCall.Outcome.UNKNOWN, None)
    assert call.error.startswith("no answer") and settle.value.msgid == client.last_msgid

    # Unknown, not unavailable: released, the insurer settles the abandoned call after all.
    sim.control("ok", release=True)
    assert wait_until(lambda: len(settlements_of(sim, mdtrt_id)) == 1)
    assert settlements_of(sim, mdtrt_id)[0]["msgid"] == settle.value.msgid


@pytest.mark.django_db
def test_mode_drop_settles_without_an_answer_and_a_reversal_undoes_it(sim):
    client = InsurerClient(base_url=sim.url, timeout=5)
    mdtrt_id, psn_no = new_id("enc"), new_id("psn")
    sim.control("drop")
    assert client.pre_settle("inpatient", mdtrt_id, psn_no, WARD_LINES).setl_id is None

    with pytest.raises(InsurerOutcomeUnknown) as lost:
        client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    assert InsurerCall.objects.get(msgid=lost.value.msgid).outcome == "unknown"

    sim.control("ok")
    found = client.query(mdtrt_id)
    assert found is not None and parts(found) == WARD_SPLIT  # it did settle

    assert client.reverse(lost.value.msgid, "2304") is True
    assert client.query(mdtrt_id) is None
    assert sim.state()["balances"][psn_no] == 50_000
    assert client.reverse(lost.value.msgid, "2304") is False  # once is enough
    reversal = InsurerCall.objects.filter(infno="2601").first()
    assert reversal is not None and reversal.mdtrt_id == mdtrt_id

    fresh = client.settle("inpatient", mdtrt_id, psn_no, WARD_LINES)
    assert fresh.setl_id != found.setl_id and parts(fresh) == WARD_SPLIT
    standing = [s for s in sim.state()["settlements"] if s["cancelled_at"] is None]
    assert [s["setl_id"] for s in standing] == [fresh.setl_id]


@pytest.mark.django_db
def test_a_stopped_insurer_is_unavailable_even_for_a_settle(sim):
    client = InsurerClient(base_url=sim.url, timeout=1)
    sim.stop()

    with pytest.raises(InsurerUnavailable) as refused:
        client.settle("outpatient", new_id("enc"), new_id("psn"), [FeeLine("A", 5_000)])

    call = InsurerCall.objects.get(msgid=refused.value.msgid)
    assert call.outcome == InsurerCall.Outcome.UNAVAILABLE
    assert "refused" in call.error.lower()


@pytest.mark.django_db
def test_daily_totals_and_detail_show_what_was_settled_that_day(sim):
    client = InsurerClient(base_url=sim.url, timeout=5)
    first = client.settle("inpatient", new_id("enc"), new_id("psn"), WARD_LINES)
    second = client.settle("outpatient", new_id("enc"), new_id("psn"), [FeeLine("A", 30_000)])
    cancelled_enc, psn_no = new_id("enc"), new_id("psn")
    cancelled = client.settle("outpatient", cancelled_enc, psn_no, [FeeLine("C", 777)])
    client.cancel("outpatient", cancelled.setl_id or "", cancelled_enc, psn_no)
    day = date.fromisoformat(sim.state()["settlements"][0]["setl_date"])

    totals = client.daily_totals(day)
    rows = client.daily_detail(day)

    assert (totals.begin, totals.end, totals.count) == (day, day, 2)
    assert totals.medfee_sumamt == 1_250_000 + 30_000
    assert totals.fund_pay_sumamt == 935_000 + 6_000
    assert totals.acct_pay == 50_000 + 24_000
    assert totals.psn_cash_pay == 265_000
    assert [(r.setl_id, r.medfee_sumamt, r.fund_pay_sumamt, r.acct_pay) for r in rows] == [
        (first.setl_id, 1_250_000, 935_000, 50_000),
        (second.setl_id, 30_000, 6_000, 24_000),
    ]
    assert client.daily_totals(day - timedelta(days=1)).count == 0
    assert client.daily_detail(day + timedelta(days=1)) == []


def test_fee_lines_wire_form_is_each_lines_own_with_repeats_and_no_date():
    lines = [
        FeeLine("A", 1_000, "C1", date(2026, 11, 30)),
        FeeLine("B", 1_000, "C2", date(2026, 11, 30)),
        FeeLine("C", -1_000, "C1", date(2026, 12, 1)),
        FeeLine("A", 5, "C3", None),
    ]
    assert FeeLines(lines).wire == [line.to_wire() for line in lines]
    assert FeeLines(lines).total == 1_005
