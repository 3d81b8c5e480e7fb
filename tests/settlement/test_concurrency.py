"""Settlement under concurrency on PostgreSQL, each thread on its own connection.

Parallel settlements drawing on one family line, parallel settles of one encounter, parallel
retries of one deferred claim and parallel repayments (one ``bank_txn_id``, and many that
together ask for more than is owed). The insurer is the simulator, a real child process.
"""

import threading
from datetime import date
from typing import Any
from uuid import uuid4

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import staff_create
from core import idempotency
from core.idempotency import Earlier
from ledger.exceptions import LimitExceeded
from ledger.selectors import account_balance
from settlement.exceptions import (
    AlreadySettled,
    EncounterStateError,
    SelfPayNotCovered,
    SettlementInputError,
)
from settlement.insurer import SETTLE
from settlement.insurer.client import InsurerClient
from settlement.models import (
    CreditMovement,
    Encounter,
    InsuranceClaim,
    InsurerCall,
    Receipt,
    Receivable,
    Repayment,
    Settlement,
)
from settlement.services import house
from settlement.services.claim_retries import claim_retry, claims_retry
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.repayments import repayment_apply
from settlement.services.settle import encounter_settle
from tests.factories import KeyedClient, charge_item, grant_line, link_family
from tests.settlement.conftest import HOLD
from tests.settlement.stays import assert_ledger_intact, standing
from tests.threads import run_threads
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


# --- set-up -----------------------------------------------------------------------------------


def hospital(default_deposit: int) -> tuple:
    institution = institution_ensure(actor="test", code="XMCC", name="厦门并发医院")
    department = department_ensure(
        actor="test",
        institution=institution,
        code="PED",
        name="儿科",
        default_deposit=default_deposit,
    )
    department.refresh_from_db()
    return institution, department


def ward_bill() -> list[ChargeItem]:
    """Class A ¥1,500.00 and class C ¥200.00."""
    return [
        charge_item(150_000, insurance_class="A", code="A001"),
        charge_item(20_000, code="C001"),
    ]


def admit_and_charge(person, department, kind: str, items: list[ChargeItem]) -> Encounter:
    encounter = encounter_admit(actor="test", person=person, department=department, kind=kind)
    charges_post(key=uuid4().hex, actor="test", encounter_id=encounter.pk, items=items)
    return encounter


def settle(encounter_id, url: str, channel: str | None = None) -> Settlement:
    return encounter_settle(
        actor="test",
        encounter_id=encounter_id,
        channel=channel,
        client=InsurerClient(base_url=url, timeout=5),
    )


# --- parallel settlements on one family line --------------------------------------------------

LIMIT = 100_000  # ¥1,000
BILL = 30_000  # ¥300 of class C each: all self-pay, so at most three fit on the line
CHILDREN = 6


@pytest.mark.parametrize(
    ("kind", "deposit"),
    [("outpatient", 0), ("inpatient", 1_000)],
    ids=["outpatient-nothing-held", "inpatient-small-hold"],
)
def test_parallel_settlements_never_draw_a_family_line_past_its_limit(
    kind, deposit, make_person, make_partner, shared_sim
):
    institution, department = hospital(default_deposit=deposit)
    partner, _ = make_partner()
    parent = make_person("林母", birth=date(1985, 4, 2))
    line = grant_line(partner, parent, limit=LIMIT)
    encounters = []
    for n in range(CHILDREN):
        child = make_person(f"林子{n}", birth=date(2012 + n, 1, 1 + n))
        link_family(parent, child)
        encounters.append(admit_and_charge(child, department, kind, [charge_item(BILL)]))
    held = account_balance(line.capacity_account).debits_pending
    assert held == CHILDREN * deposit
    assert CHILDREN * BILL > LIMIT

    results = run_threads(lambda i: settle(encounters[i].pk, shared_sim.url), threads=CHILDREN)

    settled = [r for r in results if isinstance(r, Settlement)]
    refused = [r for r in results if not isinstance(r, Settlement)]
    assert all(
        isinstance(r, SelfPayNotCovered | EncounterStateError | LimitExceeded) for r in refused
    ), refused
    # Each settlement after the first three finds less than ¥300 free, whatever the order.
    assert len(settled) == LIMIT // BILL
    assert all(s.paid_by_credit == BILL and s.paid_by_channel == 0 for s in settled)

    capacity = account_balance(line.capacity_account)
    drawn = account_balance(line.drawn_account).posted
    receivables = Receivable.objects.filter(credit_line=line)
    assert capacity.available >= 0
    assert drawn <= LIMIT
    assert drawn == sum(r.amount for r in receivables) == len(settled) * BILL
    assert sorted(r.encounter_id for r in receivables) == sorted(s.encounter_id for s in settled)
    assert account_balance(house.bank_receivable(institution, partner)).posted == drawn
    # The unsettled stays keep their holds; the settled ones captured theirs.
    assert capacity.debits_pending == len(refused) * deposit
    assert capacity.available == LIMIT - drawn - capacity.debits_pending

    by_id = {e.pk: e for e in Encounter.objects.filter(pk__in=[e.pk for e in encounters])}
    for encounter, result in zip(encounters, results, strict=True):
        fresh = by_id[encounter.pk]
        claim = InsuranceClaim.objects.get(encounter=encounter)
        if isinstance(result, Settlement):
            assert fresh.status == Encounter.Status.SETTLED
            assert claim.status == InsuranceClaim.Status.SETTLED
        else:
            assert fresh.status == Encounter.Status.OPEN  # not stuck in settling
            assert claim.lease_until is None
            assert not Settlement.objects.filter(encounter=encounter).exists()
        # The insurer never settled an encounter twice.
        assert len(standing(shared_sim, encounter)) <= 1

    # The refused ones settle afterwards with a payment channel for what the line cannot pay,
    # reusing whatever the insurer already settled for them.
    for encounter, result in zip(encounters, results, strict=True):
        if not isinstance(result, Settlement):
            paid = settle(encounter.pk, shared_sim.url, channel="cash")
            assert paid.paid_by_credit + paid.paid_by_channel == BILL
            assert len(standing(shared_sim, encounter)) == 1
    capacity = account_balance(line.capacity_account)
    drawn = account_balance(line.drawn_account).posted
    assert capacity.available >= 0 and capacity.debits_pending == 0
    assert drawn <= LIMIT
    assert drawn == sum(r.amount for r in Receivable.objects.filter(credit_line=line))
    assert_ledger_intact()


# --- two (eight) settles of one encounter -----------------------------------------------------


def test_concurrent_settles_of_one_encounter_settle_it_once(make_person, make_partner, shared_sim):
    institution, department = hospital(default_deposit=50_000)
    partner, _ = make_partner()
    parent = make_person("陈静", birth=date(1988, 3, 14))
    child = make_person("陈小雨", birth=date(2015, 9, 1))
    line = grant_line(partner, parent, limit=300_000)
    link_family(parent, child)
    encounter = admit_and_charge(child, department, "inpatient", ward_bill())

    results = run_threads(lambda i: settle(encounter.pk, shared_sim.url))

    settled = [r for r in results if isinstance(r, Settlement)]
    assert len(settled) == 1, results
    assert all(
        isinstance(r, EncounterStateError | AlreadySettled) for r in results if r not in settled
    ), results
    # Inpatient: fund (1,500 − 800) × 85% = 595.00, the personal account 500.00, self-pay 605.00.
    settlement = settled[0]
    assert (settlement.insurance_fund, settlement.personal_account) == (59_500, 50_000)
    assert settlement.self_pay == settlement.paid_by_credit == 60_500
    assert Settlement.objects.filter(encounter=encounter).count() == 1
    assert Receipt.objects.filter(encounter=encounter).count() == 1
    receivable = Receivable.objects.get(encounter=encounter)
    assert receivable.amount == 60_500
    assert CreditMovement.objects.filter(receivable=receivable).count() == 1
    assert Encounter.objects.get(pk=encounter.pk).status == Encounter.Status.SETTLED
    assert InsuranceClaim.objects.get(encounter=encounter).status == InsuranceClaim.Status.SETTLED
    assert (
        InsurerCall.objects.filter(mdtrt_id=str(encounter.pk), infno=SETTLE["inpatient"]).count()
        == 1
    )
    assert len(standing(shared_sim, encounter)) == 1
    assert account_balance(house.insurer_receivable(institution)).posted == 109_500
    assert account_balance(line.drawn_account).posted == 60_500
    assert account_balance(line.capacity_account).debits_pending == 0
    assert_ledger_intact()


def duplicates_waiting(monkeypatch, count: int) -> tuple[set[int], threading.Event]:
    """The threads that found their Idempotency-Key held by a request still running, and an
    event set once ``count`` of them have (they then wait for its answer)."""
    waiting: set[int] = set()
    lock, enough = threading.Lock(), threading.Event()
    claim = idempotency.request_claim

    def watched(**kwargs: Any) -> Any:
        found = claim(**kwargs)
        if isinstance(found, Earlier) and found.status_code is None:
            with lock:
                waiting.add(threading.get_ident())
                if len(waiting) >= count:
                    enough.set()
        return found

    monkeypatch.setattr(idempotency, "request_claim", watched)
    return waiting, enough


def test_eight_settles_with_one_idempotency_key_wait_for_the_first_and_replay_its_answer(
    make_person, make_partner, sim, monkeypatch
):
    """The same settle sent eight times at once with one key (a client retrying while the first
    is still with the insurer): the first settles, the other seven wait for it and get its
    answer, as every other POST's duplicates do."""
    institution, department = hospital(default_deposit=50_000)
    partner, _ = make_partner()
    patient = make_person("吴桐", birth=date(1977, 7, 17))
    line = grant_line(partner, patient, limit=300_000)
    encounter = admit_and_charge(patient, department, "inpatient", ward_bill())
    # One cashier's desk retrying: the same token (the key's scope), a client per thread.
    _, token = staff_create(
        actor="test", institution=institution, username="desk-7", role="cashier"
    )
    desks = [KeyedClient() for _ in range(8)]
    for desk in desks:
        desk.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    # The insurer holds the first's calls until all seven duplicates wait for its answer.
    sim.control("hang", hang_seconds=HOLD)
    waiting, seven_waiting = duplicates_waiting(monkeypatch, 7)

    def send(i: int):
        return desks[i].post(
            f"/api/v1/encounters/{encounter.pk}/settle/",
            {},
            format="json",
            HTTP_IDEMPOTENCY_KEY="settle-once-0001",
        )

    answers: list[object] = []
    racing = threading.Thread(target=lambda: answers.extend(run_threads(send)))
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=HOLD):
        racing.start()
        assert seven_waiting.wait(timeout=60), waiting
        assert wait_until(lambda: sim.hanging() == 1)  # the first is with the insurer
        sim.control("ok", release=True)
        racing.join(timeout=120)
    assert not racing.is_alive()

    assert [getattr(a, "status_code", a) for a in answers] == [200] * 8, [
        getattr(a, "content", a) for a in answers
    ]
    bodies = [a.json() for a in answers]  # type: ignore[union-attr]
    assert all(body == bodies[0] for body in bodies)
    assert (bodies[0]["status"], bodies[0]["self_pay"], bodies[0]["funded_by"]) == (
        "settled",
        "605.00",
        "credit",
    )
    assert Settlement.objects.filter(encounter=encounter).count() == 1
    assert Receipt.objects.filter(encounter=encounter).count() == 1
    assert [
        infno
        for (infno,) in InsurerCall.objects.filter(mdtrt_id=str(encounter.pk)).values_list("infno")
    ].count(SETTLE["inpatient"]) == 1
    assert len(standing(sim, encounter)) == 1
    assert account_balance(house.insurer_receivable(institution)).posted == 109_500
    assert account_balance(house.bank_receivable(institution, partner)).posted == 60_500
    assert account_balance(line.drawn_account).posted == 60_500
    assert account_balance(line.capacity_account).debits_pending == 0

    # Later still, the key replays the same answer; another key is the documented 409.
    sim.control("ok")
    again = send(0)
    assert (again.status_code, again.json()) == (200, bodies[0])
    other = desks[1].post(f"/api/v1/encounters/{encounter.pk}/settle/", {}, format="json")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "already_settled"
    assert_ledger_intact()


# --- parallel retries of one deferred claim ---------------------------------------------------


def test_parallel_retries_of_one_deferred_claim_revert_it_once(make_person, make_partner, sim):
    institution, department = hospital(default_deposit=50_000)
    partner, _ = make_partner()
    parent = make_person("王母", birth=date(1986, 6, 6))
    child = make_person("王小明", birth=date(2016, 2, 2))
    line = grant_line(partner, parent, limit=300_000)
    link_family(parent, child)
    encounter = admit_and_charge(child, department, "inpatient", ward_bill())

    sim.stop()  # the insurer is unreachable: the whole bill is self-pay, the claim deferred
    deferred = settle(encounter.pk, sim.url)
    assert deferred.paid_by_credit == 170_000
    assert Encounter.objects.get(pk=encounter.pk).status == "settled_insurance_deferred"
    claim = InsuranceClaim.objects.get(encounter=encounter)
    assert claim.status == InsuranceClaim.Status.DEFERRED
    sim.start()

    def retry(i: int) -> dict:
        client = InsurerClient(base_url=sim.url, timeout=5)
        if i % 2:
            return {claim_retry(claim_id=claim.pk, client=client): 1}
        return claims_retry(client=client)

    results = run_threads(retry)

    assert not [r for r in results if isinstance(r, Exception)], results
    reverted = sum(r.get("reverted", 0) for r in results)  # type: ignore[union-attr]
    assert reverted == 1, results
    assert all(set(r) <= {"reverted", "busy"} for r in results), results  # type: ignore[arg-type]

    moved = 59_500 + 50_000
    claim.refresh_from_db()
    assert claim.status == InsuranceClaim.Status.SETTLED
    assert claim.reverted_at is not None and claim.lease_until is None
    assert account_balance(house.insurer_receivable(institution)).posted == moved
    receivable = Receivable.objects.get(encounter=encounter)
    assert receivable.outstanding == 170_000 - moved
    reversals = CreditMovement.objects.filter(
        receivable=receivable, kind=CreditMovement.Kind.REVERSAL
    )
    assert [m.amount for m in reversals] == [-moved]
    receipts = Receipt.objects.filter(encounter=encounter).order_by("version")
    assert [(r.version, r.superseded_by_id is None) for r in receipts] == [(1, False), (2, True)]
    settlement = Settlement.objects.get(encounter=encounter)
    assert (settlement.self_pay, settlement.paid_by_credit) == (60_500, 60_500)
    assert Encounter.objects.get(pk=encounter.pk).status == Encounter.Status.SETTLED
    assert account_balance(line.drawn_account).posted == 60_500
    assert account_balance(line.capacity_account).available == 300_000 - 60_500
    assert account_balance(house.bank_receivable(institution, partner)).posted == 60_500
    assert len(standing(sim, encounter)) == 1
    assert len(sim.state()["settlements"]) == 1
    assert_ledger_intact()


# --- parallel repayments ----------------------------------------------------------------------


@pytest.fixture
def drawn_receivable(make_person, make_partner, shared_sim):
    """A ¥300 receivable drawn on a parent's ¥1,000 line for a child's outpatient visit."""
    _, department = hospital(default_deposit=0)
    partner, _ = make_partner()
    parent = make_person("赵母", birth=date(1984, 8, 8))
    child = make_person("赵小", birth=date(2014, 4, 4))
    line = grant_line(partner, parent, limit=LIMIT)
    link_family(parent, child)
    encounter = admit_and_charge(child, department, "outpatient", [charge_item(BILL)])
    settle(encounter.pk, shared_sim.url)
    receivable = Receivable.objects.get(encounter=encounter)
    assert receivable.outstanding == BILL
    assert account_balance(line.capacity_account).available == LIMIT - BILL
    return partner, line, receivable


@pytest.mark.parametrize(
    "amount",
    [
        pytest.param(BILL, id="in-full"),
        pytest.param(BILL // 3, id="in-part"),
    ],
)
def test_parallel_repayments_with_one_bank_txn_id_apply_once(drawn_receivable, amount):
    partner, line, receivable = drawn_receivable
    paid_at = timezone.now()

    results = run_threads(
        lambda i: repayment_apply(
            partner=partner,
            receivable_id=str(receivable.pk),
            amount=amount,
            bank_txn_id="SAME-TXN-0001",
            paid_at=paid_at,
        )
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    applied_now = [r for r in results if r[1]]  # type: ignore[index]
    assert len(applied_now) == 1, results
    assert len({r[0].pk for r in results}) == 1, results  # type: ignore[index]
    assert Repayment.objects.filter(partner=partner).count() == 1
    receivable.refresh_from_db()
    assert receivable.outstanding == BILL - amount
    assert account_balance(line.drawn_account).posted == BILL - amount
    assert account_balance(line.capacity_account).available == LIMIT - BILL + amount
    assert_ledger_intact()


def test_parallel_repayments_never_take_a_receivable_below_zero(drawn_receivable):
    partner, line, receivable = drawn_receivable
    part = 4_000  # eight of them ask ¥320 of the ¥300 owed: seven fit
    paid_at = timezone.now()

    results = run_threads(
        lambda i: repayment_apply(
            partner=partner,
            receivable_id=str(receivable.pk),
            amount=part,
            bank_txn_id=f"TXN-{i:04d}",
            paid_at=paid_at,
        )
    )

    applied = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(applied) == BILL // part, results
    assert all(r[1] for r in applied)  # type: ignore[index]
    assert all(isinstance(r, SettlementInputError) for r in refused), refused
    assert all("outstanding" in str(r) for r in refused), refused
    receivable.refresh_from_db()
    assert receivable.outstanding == BILL - len(applied) * part >= 0
    assert receivable.status == Receivable.Status.OPEN
    assert Repayment.objects.filter(receivable=receivable).count() == len(applied)
    assert account_balance(line.drawn_account).posted == receivable.outstanding
    assert account_balance(line.capacity_account).available == LIMIT - receivable.outstanding
    assert_ledger_intact()


# --- parallel admissions on a nearly full family line -----------------------------------------

DEPOSIT = 50_000  # ¥500 for each stay


def test_parallel_admissions_on_a_nearly_full_family_line_hold_what_fits_and_admit_the_rest(
    make_person, make_partner, staff_client
):
    """Twenty children of one parent are admitted at once when the parent's line has room for
    two more deposits: two are waived and held, eighteen pay their deposit, every answer is the
    documented 201, and no limit error (with its internal account code) reaches the desk."""
    institution, department = hospital(default_deposit=DEPOSIT)
    partner, _ = make_partner()
    parent = make_person("郑母", birth=date(1983, 3, 3))
    line = grant_line(partner, parent, limit=180_000)
    first = make_person("郑长", birth=date(2009, 1, 1))
    link_family(parent, first)
    earlier = encounter_admit(actor="test", person=first, department=department, kind="inpatient")
    assert earlier.deposit_waived
    room = 180_000 - DEPOSIT
    assert account_balance(line.capacity_account).available == room
    children = []
    for n in range(20):
        child = make_person(f"郑{n}", birth=date(2010 + n % 10, 1 + n % 12, 1 + n))
        link_family(parent, child)
        children.append(child)
    cashiers = [staff_client("cashier", institution) for _ in children]

    def admit(i: int):
        return cashiers[i].post(
            "/api/v1/encounters/",
            {"person": children[i].pk, "kind": "inpatient", "department": department.pk},
            format="json",
        )

    answers = run_threads(admit, threads=len(children))

    assert [getattr(a, "status_code", a) for a in answers] == [201] * len(children), [
        getattr(a, "content", a) for a in answers
    ]
    bodies = [a.json() for a in answers]  # type: ignore[union-attr]
    assert not [b for b in bodies if "limit" in str(b) or "credit:line" in str(b)]
    waived = [b for b in bodies if b["deposit"]["waived"]]
    paying = [b for b in bodies if not b["deposit"]["waived"]]
    fits = room // DEPOSIT
    assert len(waived) == fits == 2
    assert all(b["funding_line"]["id"] == str(line.pk) for b in waived)
    assert all(b["funding_line"] is None for b in paying)
    assert all(
        b["deposit"] == {"required": "500.00", "waived": False, "paid": "0.00"} for b in paying
    )
    stays = Encounter.objects.filter(person__in=children)
    assert stays.filter(deposit_waived=True, funding_line=line).count() == fits
    assert stays.filter(deposit_waived=False, funding_line__isnull=True).count() == 20 - fits

    capacity = account_balance(line.capacity_account)
    assert capacity.debits_pending == DEPOSIT * (1 + fits)
    assert capacity.available == room - fits * DEPOSIT == 30_000
    assert account_balance(line.drawn_account).posted == 0

    # One more, alone, gets the same answer as the eighteen.
    alone = make_person("郑幺", birth=date(2021, 6, 6))
    link_family(parent, alone)
    later = cashiers[0].post(
        "/api/v1/encounters/",
        {"person": alone.pk, "kind": "inpatient", "department": department.pk},
        format="json",
    )
    assert later.status_code == 201, later.json()
    assert (later.json()["deposit"]["waived"], later.json()["funding_line"]) == (False, None)
    assert account_balance(line.capacity_account).available == 30_000
    assert_ledger_intact()
