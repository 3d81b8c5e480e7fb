"""Worked examples (in the manner of django-hordak's): every balance asserted after each step.

The story: a bank grants a credit line of ¥3,000; a hospital stay holds ¥1,000 of it; the
stay is settled for ¥820.50 (the hold is captured for less); the patient repays ¥500; a wrong
charge of ¥12.34 on the money ledger is reversed.
"""

import pytest

from ledger import services
from ledger.selectors import account_balance
from ledger.services import Leg
from ledger.verification import verify_ledger

pytestmark = pytest.mark.django_db


def balances(*accounts):
    return [
        (
            account_balance(a).posted,
            account_balance(a).pending,
            account_balance(a).available,
        )
        for a in accounts
    ]


def test_credit_line_grant_hold_capture_repay(make_account):
    line = make_account("credit", "credit", limit="debits", prefix="line")
    granted = make_account("credit", "debit", prefix="bank-granted")

    services.transfer(key="grant-1", debit=granted, credit=line, amount=300_000)
    assert balances(line, granted) == [(300_000, 0, 300_000), (300_000, 0, None)]

    hold = services.hold_create(key="admit-1", debit=line, credit=granted, amount=100_000)
    assert balances(line, granted) == [(300_000, -100_000, 200_000), (300_000, -100_000, None)]
    assert account_balance(line).debits_pending == 100_000
    assert account_balance(granted).credits_pending == 100_000

    services.hold_post(key="settle-1", hold_id=hold.id, amount=82_050)
    assert balances(line, granted) == [(217_950, 0, 217_950), (217_950, 0, None)]

    services.transfer(key="repay-1", debit=granted, credit=line, amount=50_000)
    assert balances(line, granted) == [(267_950, 0, 267_950), (267_950, 0, None)]

    services.chain_seal()
    assert verify_ledger().intact


def test_money_ledger_multi_leg_charge_and_reversal(make_account):
    patient = make_account("money", "debit", prefix="patient-receivable")
    revenue_drugs = make_account("money", "credit", slots=8, prefix="revenue-drugs")
    revenue_beds = make_account("money", "credit", slots=8, prefix="revenue-beds")

    charge = services.transaction_post(
        key="charges-day-1",
        legs=[
            Leg.debit(patient, 21_234),
            Leg.credit(revenue_drugs, 1_234),
            Leg.credit(revenue_beds, 20_000),
        ],
        reference="enc-1",
    )
    assert [b[0] for b in balances(patient, revenue_drugs, revenue_beds)] == [
        21_234,
        1_234,
        20_000,
    ]
    wrong = services.transfer(key="drug-2", debit=patient, credit=revenue_drugs, amount=1_234)
    assert [b[0] for b in balances(patient, revenue_drugs)] == [22_468, 2_468]

    reversal = services.transaction_reverse(key="drug-2-reverse", transaction_id=wrong.id)
    assert reversal.reverses_id == wrong.id
    assert [b[0] for b in balances(patient, revenue_drugs, revenue_beds)] == [
        21_234,
        1_234,
        20_000,
    ]
    # Nothing was edited: the wrong transfer is still there, and so is its mirror.
    assert sorted(e.amount for e in wrong.entries.all()) == [-1_234, 1_234]
    assert sorted(e.amount for e in reversal.entries.all()) == [-1_234, 1_234]
    assert charge.entries.count() == 3

    services.chain_seal()
    report = verify_ledger()
    assert report.intact, report.problems
    assert report.links == 3


def test_hold_void_releases_everything(make_account):
    line = make_account("credit", "credit", limit="debits")
    granted = make_account("credit", "debit")
    services.transfer(key="g", debit=granted, credit=line, amount=50_000)
    hold = services.hold_create(key="h", debit=line, credit=granted, amount=50_000)
    assert account_balance(line).available == 0

    services.hold_void(key="v", hold_id=hold.id)
    hold.refresh_from_db()
    assert hold.status == "voided"
    assert balances(line, granted) == [(50_000, 0, 50_000), (50_000, 0, None)]
