"""``manage.py verify_ledger`` finds rows changed behind the ledger's back."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from ledger import services
from ledger.services import Leg

pytestmark = pytest.mark.django_db(transaction=True)


def tamper(sql: str, params: list | None = None) -> None:
    """Run ``sql`` with the ledger's triggers off, as a database superuser could."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params or [])


def verify() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_ledger", stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def posted(make_account):
    patient = make_account("money", "debit", prefix="patient")
    revenue = make_account("money", "credit", slots=4, prefix="revenue")
    insurer = make_account("money", "debit", prefix="insurer")
    first = services.transfer(key="a", debit=patient, credit=revenue, amount=10_000)
    second = services.transaction_post(
        key="b",
        legs=[Leg.debit(patient, 3_000), Leg.debit(insurer, 7_000), Leg.credit(revenue, 10_000)],
    )
    third = services.transfer(key="c", debit=insurer, credit=patient, amount=500)
    services.chain_seal()
    return patient, revenue, insurer, [first, second, third]


def test_intact_ledger_exits_zero(posted):
    code, out = verify()
    assert code == 0
    assert "ledger intact: 3 transactions, 3 accounts, 3 chain links checked" in out


def test_changed_entry_amount_is_found(posted):
    patient, revenue, _, (first, *_) = posted
    tamper(
        "UPDATE ledger_entry SET amount = 9000 WHERE transaction_id = %s AND account_id = %s",
        [first.id.hex if connection.vendor == "sqlite" else first.id, patient.pk],
    )
    code, out = verify()
    assert code == 1
    assert f"transaction {first.id}: 2 entries summing to -1000" in out
    assert f"account {patient.code}: stored debits_posted 13000 != 12000" in out
    assert f"link 1 (transaction {first.id}) does not match its content" in out
    assert "trial balance money: entries sum to -1000" in out


def test_changed_stored_balance_is_found(posted):
    _, revenue, _, _ = posted
    tamper(
        "UPDATE ledger_balanceslot SET credits_posted = credits_posted + 1"
        " WHERE account_id = %s AND slot = 0",
        [revenue.pk],
    )
    code, out = verify()
    assert code == 1
    assert f"account {revenue.code}: stored credits_posted 20001 != 20000" in out
    assert "trial balance money: stored debits 20500 != stored credits 20501" in out


def test_broken_chain_is_found(posted):
    _, _, _, (first, second, third) = posted
    tamper("DELETE FROM ledger_chainlink WHERE seq = 2")
    code, out = verify()
    assert code == 1
    assert "chain money: link 2 missing (found 3)" in out
    assert f"link 3 (transaction {third.id}) does not match its content" in out


def test_rewritten_transaction_reference_is_found(posted):
    _, _, _, (_, second, _) = posted
    tamper(
        "UPDATE ledger_transaction SET reference = 'forged' WHERE id = %s",
        [second.id.hex if connection.vendor == "sqlite" else second.id],
    )
    code, out = verify()
    assert code == 1
    assert f"link 2 (transaction {second.id}) does not match its content" in out
