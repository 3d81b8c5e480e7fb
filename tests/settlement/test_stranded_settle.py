"""A settle stranded in ``settling`` when PostgreSQL goes away mid-settle, and the beat task
that finishes or undoes it.

The outage is real: every connection to the test database is ended and new ones are refused
(as while PostgreSQL restarts), at a chosen point of the settle — right after the insurer
settled, at the start of the postings, or just before the settle is sent — so that nothing in
the request can put the encounter back. The settle's lease then lapses (its time is moved into
the past: "five minutes later"), and ``recover_stalled_settlements`` — on a real worker, or
called — finishes the settlement with what the insurer settled, or undoes it. The insurer (the
simulator, a real process) is never asked to settle twice, money moves once, and the ledger
verifies.
"""

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import Error as DatabaseError
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from psycopg import sql

from accounts.models import AuditEvent
from config.celery import app
from ledger.models import Transaction
from ledger.selectors import account_balance
from settlement import tasks
from settlement.insurer import SETTLE
from settlement.insurer.client import InsurerClient
from settlement.models import Encounter, InsuranceClaim, InsurerCall, Receipt, Settlement
from settlement.services import house
from settlement.services.settle import settlements_recover
from tests.postgres import admin_connection, end_connections
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
from tests.threads import run_threads
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class Outage:
    """PostgreSQL going away for the test database: ``begin`` ends every connection to it and
    refuses new ones, ``end`` lets them in again. Driven from a connection to another
    database, as an administrator would."""

    def __init__(self) -> None:
        self.name = connection.settings_dict["NAME"]
        self.admin = admin_connection()
        self.began = 0

    def _allow(self, allow: bool) -> None:
        self.admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(self.name), sql.Literal(allow)
            )
        )

    def begin(self, *, refuse: bool = True) -> None:
        """End the connections; ``refuse`` new ones too (a restart), or not (an administrator
        ending connections while the server stays up)."""
        if refuse:
            self._allow(False)
        assert end_connections(self.admin) >= 1
        self.began += 1

    def end(self) -> None:
        self._allow(True)
        connection.close()  # the test's own connection was ended: the next query reconnects


@pytest.fixture
def outage() -> Iterator[Outage]:
    cut = Outage()
    yield cut
    cut.end()
    cut.admin.close()


@pytest.fixture
def ward_stay(hospital, make_person, make_partner, staff_client) -> tuple[Any, Encounter, Any]:
    """A patient on a ¥3,000 line of their own, admitted to the ward (the deposit waived and
    held on the line) and charged the ward bill: the cashier, the encounter and the line."""
    _, ward, _ = hospital
    _, bank = make_partner("厦门农商银行")
    patient = make_person("邱山", birth=date(1971, 1, 21))
    line = open_line(bank, patient)
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, ward, "inpatient")
    assert encounter.deposit_waived
    charge(cashier, encounter, ward_items(), WARD_TOTAL)
    return cashier, encounter, line


def cut_after_settle(outage: Outage, refuse: bool = True) -> type[InsurerClient]:
    """The insurer settles; the database goes away before its answer is stored."""

    class Client(InsurerClient):
        def _post(self, infno: str, body: bytes) -> tuple[int, Any]:
            answer = super()._post(infno, body)
            if infno in SETTLE.values():  # answered, not yet stored
                outage.begin(refuse=refuse)
            return answer

    return Client


class KilledBeforeSending(Exception):
    """The request dies between storing its settle and sending it (a process killed there)."""


def cut_before_settle(outage: Outage, refuse: bool = True) -> type[InsurerClient]:
    """The settle and its msgid are stored; the database goes away and the request dies before
    the settle is sent. (Nothing touches the database in between, so an outage alone there
    would not stop the settle: the request is made to die.)"""

    class Client(InsurerClient):
        def _post(self, infno: str, body: bytes) -> tuple[int, Any]:
            if infno in SETTLE.values():  # stored, not yet sent
                outage.begin(refuse=refuse)
                raise KilledBeforeSending
            return super()._post(infno, body)

    return Client


def cut_before_storing_the_settle(outage: Outage) -> type[InsurerClient]:
    """An administrator ends the connection just before the settle and its msgid are stored."""

    class Client(InsurerClient):
        def new_msgid(self, infno: str) -> str:
            if infno in SETTLE.values():
                outage.begin(refuse=False)
            return super().new_msgid(infno)

    return Client


def cut_at_postings(outage: Outage) -> tuple[type[InsurerClient], Callable[..., Any]]:
    """The insurer settles and its answer is stored; the database goes away as the postings
    begin (their first statement locks the encounter)."""
    settled = []

    class Client(InsurerClient):
        def settle(self, *args: Any, **kwargs: Any) -> Any:
            split = super().settle(*args, **kwargs)
            settled.append(split)
            return split

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if settled and not outage.began and "FOR UPDATE" in sql:
            outage.begin()
        return execute(sql, *args)

    return Client, wrapper


def stranded_settle(
    cashier: Any,
    encounter: Encounter,
    outage: Outage,
    client: type[InsurerClient],
    monkeypatch: Any,
    body: dict[str, str] | None = None,
    wrapper: Callable[..., Any] | None = None,
) -> None:
    """Settle over the API while the outage strikes; the request fails with a database error
    and nothing can put the encounter back."""
    with monkeypatch.context() as patch:
        patch.setattr("settlement.services.settle.InsurerClient", client)
        with pytest.raises(DatabaseError):
            if wrapper is None:
                settle(cashier, encounter, body)
            else:
                with connection.execute_wrapper(wrapper):
                    settle(cashier, encounter, body)
    assert outage.began == 1
    outage.end()
    encounter.refresh_from_db()
    assert encounter.status == Encounter.Status.SETTLING
    claim = claim_of(encounter)
    assert claim.status == InsuranceClaim.Status.PENDING
    assert claim.lease_until is not None and claim.lease_until > timezone.now()
    assert not Settlement.objects.filter(encounter=encounter).exists()


def lease_lapses(encounter: Encounter) -> None:
    """Five minutes later: the dead request's lease is over."""
    InsuranceClaim.objects.filter(encounter=encounter).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


def settled_money(encounter: Encounter, line: Any = None) -> dict[str, int]:
    institution = encounter.institution
    money = {
        "insurer_receivable": posted(house.insurer_receivable(institution)),
        "patient_receivable": posted(house.patient_receivable(encounter)),
        "transactions": Transaction.objects.filter(reference=f"encounter:{encounter.pk}").count(),
        "receipts": Receipt.objects.filter(encounter=encounter).count(),
    }
    if line is not None:
        money["bank_receivable"] = posted(house.bank_receivable(institution, line.partner))
        money["drawn"] = posted(line.drawn_account)
        money["held"] = account_balance(line.capacity_account).debits_pending
    return money


# --- the insurer settled, its answer was not stored: a worker finishes it ----------------------


def test_a_settle_cut_off_after_the_insurer_settled_is_finished_by_the_worker_once(
    ward_stay, sim, outage, monkeypatch
):
    cashier, encounter, line = ward_stay

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        stranded_settle(cashier, encounter, outage, cut_after_settle(outage), monkeypatch)
        claim = claim_of(encounter)
        assert claim.setl_id == "" and claim.settle_msgid.startswith("2304-")
        assert len(standing(sim, encounter)) == 1  # the insurer settled it
        sent = len(calls(encounter))
        held = {"insurer_receivable": 0, "patient_receivable": WARD_TOTAL}
        assert {k: settled_money(encounter)[k] for k in held} == held

        # While the lease runs, a person gets the 409 and the task leaves it alone.
        busy = settle(cashier, encounter)
        assert (busy.status_code, busy.json()["error"]["code"]) == (409, "encounter_state")
        assert settlements_recover() == {}

        lease_lapses(encounter)
        with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
            tasks.recover_stalled_settlements.delay()
            assert wait_until(lambda: claim_of(encounter).status == "settled")

        # Found by a query and finished with what the insurer settled: no second settle.
        assert calls(encounter)[sent:] == [("5203", "ok")]
        assert [infno for infno, _ in calls(encounter)].count("2304") == 1
        assert len(standing(sim, encounter)) == 1
        encounter.refresh_from_db()
        assert encounter.status == Encounter.Status.SETTLED
        claim = claim_of(encounter)
        assert (claim.setl_id, claim.lease_until) == (standing(sim, encounter)[0]["setl_id"], None)
        settlement = Settlement.objects.get(encounter=encounter)
        assert (
            settlement.insurance_fund,
            settlement.personal_account,
            settlement.self_pay,
            settlement.paid_by_credit,
        ) == (WARD_FUND, WARD_ACCOUNT, WARD_SELF, WARD_SELF)
        done = settled_money(encounter, line)
        assert done == {
            "insurer_receivable": WARD_SHARE,
            "patient_receivable": 0,
            "transactions": done["transactions"],
            "receipts": 1,
            "bank_receivable": WARD_SELF,
            "drawn": WARD_SELF,
            "held": 0,
        }
        assert AuditEvent.objects.get(
            action="encounter.settle", object_id=str(encounter.pk)
        ).actor == ("system:settle_recover")
        assert_ledger_intact()

        # Nothing more happens, whoever tries.
        assert settlements_recover() == {}
        again = settle(cashier, encounter)
        assert (again.status_code, again.json()["error"]["code"]) == (409, "already_settled")
        bill = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()
        assert (bill["settlement"]["status"], bill["settlement"]["self_pay"]) == (
            "settled",
            yuan(WARD_SELF),
        )
    assert settled_money(encounter, line) == done
    assert_ledger_intact()


# --- connections ended, PostgreSQL still up: the request carries on, or puts it back ----------


def test_a_settle_whose_connection_is_ended_before_it_is_stored_carries_on_on_a_new_one(
    ward_stay, sim, outage, monkeypatch
):
    """An administrator ends the connection as the settle is about to be stored: nothing was
    sent, so it is stored on a new connection, sent once, and the desk gets its 200."""
    cashier, encounter, line = ward_stay

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        with monkeypatch.context() as patch:
            client = cut_before_storing_the_settle(outage)
            patch.setattr("settlement.services.settle.InsurerClient", client)
            settled = settle(cashier, encounter)
    assert outage.began == 1
    assert settled.status_code == 200, settled.json()
    assert (settled.json()["status"], settled.json()["self_pay"]) == ("settled", yuan(WARD_SELF))
    assert calls(encounter) == [("2303", "ok"), ("2304", "ok")]
    assert len(standing(sim, encounter)) == 1
    done = settled_money(encounter, line)
    assert (done["insurer_receivable"], done["drawn"], done["held"]) == (WARD_SHARE, WARD_SELF, 0)
    assert_ledger_intact()


def test_a_settle_whose_connection_is_ended_while_the_insurer_settles_carries_on_on_a_new_one(
    ward_stay, sim, outage, monkeypatch
):
    """An administrator ends the connection while the insurer settles: the answer is stored and
    the postings made on a new connection, and the desk gets its 200."""
    cashier, encounter, line = ward_stay

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        with monkeypatch.context() as patch:
            client = cut_after_settle(outage, refuse=False)
            patch.setattr("settlement.services.settle.InsurerClient", client)
            settled = settle(cashier, encounter)
    assert outage.began == 1
    assert settled.status_code == 200, settled.json()
    assert (settled.json()["status"], settled.json()["self_pay"]) == ("settled", yuan(WARD_SELF))
    assert [infno for infno, _ in calls(encounter)] == ["2303", "2304"]
    assert len(standing(sim, encounter)) == 1
    done = settled_money(encounter, line)
    assert (done["insurer_receivable"], done["drawn"], done["held"]) == (WARD_SHARE, WARD_SELF, 0)
    assert (done["patient_receivable"], done["receipts"]) == (0, 1)
    assert_ledger_intact()


def test_a_failed_settle_whose_connection_was_ended_puts_the_encounter_back_on_a_new_one(
    ward_stay, sim, outage, monkeypatch
):
    """The connection is ended as the settle is about to be sent, so the request fails; it puts
    the encounter back on a new connection, and the cashier need not wait for the lease: the
    next settle resolves the unsent one (reversed) and settles once."""
    cashier, encounter, line = ward_stay

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        with monkeypatch.context() as patch:
            client = cut_before_settle(outage, refuse=False)
            patch.setattr("settlement.services.settle.InsurerClient", client)
            with pytest.raises(KilledBeforeSending):
                settle(cashier, encounter)
        connection.close()
        encounter.refresh_from_db()
        assert encounter.status == Encounter.Status.OPEN
        claim = claim_of(encounter)
        assert (claim.status, claim.setl_id, claim.lease_until) == ("pending", "", None)
        assert claim.settle_msgid.startswith("2304-")
        assert standing(sim, encounter) == []
        sent = len(calls(encounter))

        again = settle(cashier, encounter)
        assert again.status_code == 200, again.json()
        assert (again.json()["status"], again.json()["self_pay"]) == ("settled", yuan(WARD_SELF))
    # The unsent settle was stored before it was to go: its reversal is the encounter's too.
    assert calls(encounter)[sent:] == [
        ("5203", "rejected"),
        ("2601", "ok"),
        ("2303", "ok"),
        ("2304", "ok"),
    ]
    assert InsurerCall.objects.get(infno="2601", request__input__omsgid=claim.settle_msgid)
    assert len(standing(sim, encounter)) == 1
    done = settled_money(encounter, line)
    assert (done["insurer_receivable"], done["drawn"], done["held"]) == (WARD_SHARE, WARD_SELF, 0)
    assert (done["patient_receivable"], done["receipts"]) == (0, 1)
    assert settlements_recover() == {}
    assert_ledger_intact()


def test_a_settle_whose_connection_ends_as_its_answer_is_remembered_still_answers_and_replays(
    ward_stay, sim, outage
):
    """The postings committed; the connection ends as the answer is stored under the request's
    Idempotency-Key. The answer is stored on a new connection: the cashier gets the 200, and a
    retry with the key gets it again."""
    cashier, encounter, line = ward_stay

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if not outage.began and sql.startswith('UPDATE "accounts_idempotentrequest"'):
            outage.begin(refuse=False)
        return execute(sql, *args)

    def send() -> Any:
        path = f"/api/v1/encounters/{encounter.pk}/settle/"
        return cashier.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="desk-3-settle")

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        with connection.execute_wrapper(wrapper):
            first = send()
        assert outage.began == 1
        assert first.status_code == 200, first.json()
        assert (first.json()["status"], first.json()["self_pay"]) == ("settled", yuan(WARD_SELF))
        replay = send()
    assert (replay.status_code, replay.json()) == (200, first.json())
    assert len(standing(sim, encounter)) == 1
    done = settled_money(encounter, line)
    assert (done["insurer_receivable"], done["drawn"], done["receipts"]) == (
        WARD_SHARE,
        WARD_SELF,
        1,
    )
    assert_ledger_intact()


# --- the answer was stored, the postings were cut: finished without asking ---------------------


def test_a_settle_cut_off_at_its_postings_is_finished_once_by_racing_recoveries(
    ward_stay, sim, outage, monkeypatch
):
    cashier, encounter, line = ward_stay

    client, wrapper = cut_at_postings(outage)
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        stranded_settle(cashier, encounter, outage, client, monkeypatch, wrapper=wrapper)
        claim = claim_of(encounter)
        assert claim.setl_id == standing(sim, encounter)[0]["setl_id"]
        sent = len(calls(encounter))

        lease_lapses(encounter)
        results = run_threads(lambda i: settlements_recover(), threads=4)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.get("finished", 0) for r in results) == 1, results  # type: ignore[union-attr]
    assert all(set(r) <= {"finished", "busy"} for r in results), results  # type: ignore[arg-type]
    assert calls(encounter)[sent:] == []  # the stored answer was enough
    assert len(standing(sim, encounter)) == 1
    assert Settlement.objects.filter(encounter=encounter).count() == 1
    done = settled_money(encounter, line)
    assert {k: v for k, v in done.items() if k != "transactions"} == {
        "insurer_receivable": WARD_SHARE,
        "patient_receivable": 0,
        "receipts": 1,
        "bank_receivable": WARD_SELF,
        "drawn": WARD_SELF,
        "held": 0,
    }
    assert_ledger_intact()


# --- the settle never reached the insurer: reversed and undone ---------------------------------


def test_a_settle_cut_off_before_it_was_sent_is_reversed_and_undone_then_settles_afresh(
    ward_stay, sim, outage, monkeypatch
):
    cashier, encounter, line = ward_stay

    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        stranded_settle(cashier, encounter, outage, cut_before_settle(outage), monkeypatch)
        lost = claim_of(encounter).settle_msgid
        assert lost and standing(sim, encounter) == []
        sent = len(calls(encounter))

        lease_lapses(encounter)
        assert settlements_recover() == {"undone": 1}
        # Not found, so reversed (冲正): a late arrival would be refused. Nothing settled.
        assert calls(encounter)[sent:] == [("5203", "rejected"), ("2601", "ok")]
        reversal = InsurerCall.objects.get(infno="2601", request__input__omsgid=lost)
        assert reversal.outcome == "ok"
        encounter.refresh_from_db()
        assert encounter.status == Encounter.Status.OPEN
        claim = claim_of(encounter)
        assert (claim.status, claim.settle_msgid, claim.setl_id, claim.lease_until) == (
            "pending",
            "",
            "",
            None,
        )
        assert settled_money(encounter, line)["held"] == 200_000  # the stay's hold is intact
        assert settled_money(encounter)["patient_receivable"] == WARD_TOTAL

        # The cashier settles again: a fresh settle, once.
        settled = settle(cashier, encounter)
        assert settled.status_code == 200, settled.json()
        assert (settled.json()["status"], settled.json()["self_pay"]) == (
            "settled",
            yuan(WARD_SELF),
        )
    assert [infno for infno, outcome in calls(encounter) if outcome == "ok"].count("2304") == 1
    assert len(standing(sim, encounter)) == 1 and standing(sim, encounter)[0]["msgid"] != lost
    done = settled_money(encounter, line)
    assert (done["insurer_receivable"], done["drawn"], done["held"]) == (WARD_SHARE, WARD_SELF, 0)
    assert done["patient_receivable"] == 0
    assert_ledger_intact()


# --- the insurer settled, but the rest is paid at the window: undone for the cashier ----------


def test_a_stranded_settle_that_needs_a_payment_channel_is_undone_and_keeps_the_insurer_share(
    hospital, make_person, staff_client, sim, outage, monkeypatch
):
    institution, _, clinic = hospital
    patient = make_person("甘露", birth=date(1993, 3, 23))
    cashier = staff_client("cashier", hospital[0])
    encounter = admit(cashier, patient, clinic, "outpatient")
    assert encounter.funding_line_id is None
    charge(cashier, encounter, clinic_items(), CLINIC_TOTAL)

    client, wrapper = cut_at_postings(outage)
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=2):
        stranded_settle(
            cashier, encounter, outage, client, monkeypatch, {"channel": "cash"}, wrapper
        )
        setl_id = claim_of(encounter).setl_id
        assert setl_id
        sent = len(calls(encounter))

        lease_lapses(encounter)
        # Self-pay would be taken at the window, which only a person can do: undone.
        assert settlements_recover() == {"undone": 1}
        encounter.refresh_from_db()
        assert encounter.status == Encounter.Status.OPEN
        assert (claim_of(encounter).setl_id, claim_of(encounter).lease_until) == (setl_id, None)
        assert settled_money(encounter) == {
            "insurer_receivable": 0,
            "patient_receivable": CLINIC_TOTAL,
            "transactions": 1,
            "receipts": 0,
        }
        # The insurer settled this bill: it cannot change any more.
        refused = cashier.post(
            f"/api/v1/encounters/{encounter.pk}/charges/", {"items": clinic_items()}, format="json"
        )
        assert refused.status_code == 409, refused.json()

        settled = settle(cashier, encounter, {"channel": "cash"})
        assert settled.status_code == 200, settled.json()
        body = settled.json()
        assert (body["status"], body["insurance_fund"], body["personal_account"]) == (
            "settled",
            yuan(CLINIC_FUND),
            yuan(CLINIC_ACCOUNT),
        )
        assert body["paid_by"] == {
            "deposit": "0.00",
            "credit": "0.00",
            "channel": yuan(CLINIC_SELF),
        }
    assert calls(encounter)[sent:] == []  # what the insurer settled was reused
    assert len(standing(sim, encounter)) == 1
    assert posted(house.insurer_receivable(institution)) == CLINIC_SHARE
    assert posted(house.clearing(institution, "cash")) == CLINIC_SELF
    assert posted(house.patient_receivable(encounter)) == 0
    assert_ledger_intact()
