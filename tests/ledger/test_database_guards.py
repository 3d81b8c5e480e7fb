"""PostgreSQL refuses what the ledger must never hold, even from raw SQL that skips the service."""

import uuid

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from ledger import services
from ledger.models import Entry, Hold, Transaction
from ledger.verification import verify_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REFUSED = DatabaseError  # IntegrityError, ProgrammingError, ... as PostgreSQL reports them


def raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def insert_transaction(ledger: str = "money", legs: int = 2) -> uuid.UUID:
    txn_id = uuid.uuid4()
    raw(
        "INSERT INTO ledger_transaction"
        " (id, ledger, kind, reference, description, created_at, legs)"
        " VALUES (%s, %s, 'transfer', '', '', %s, %s)",
        [txn_id, ledger, timezone.now(), legs],
    )
    return txn_id


def insert_entry(
    txn_id: uuid.UUID,
    account_id: int,
    amount: int,
    leg: int,
    *,
    legs: int = 2,
    ledger: str = "money",
) -> None:
    raw(
        "INSERT INTO ledger_entry (transaction_id, account_id, amount, ledger, leg, legs)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [txn_id, account_id, amount, ledger, leg, legs],
    )


def test_unbalanced_transaction_is_refused_at_commit(make_account):
    a, b = make_account(), make_account()
    with pytest.raises(REFUSED, match="unbalanced"):
        with transaction.atomic():
            txn_id = insert_transaction()
            insert_entry(txn_id, a.pk, 100, 0)
            insert_entry(txn_id, b.pk, -99, 1)
            # Each row is accepted until COMMIT: the check is a deferred constraint trigger.
    assert not Transaction.objects.filter(pk=txn_id).exists()
    assert Entry.objects.count() == 0


def test_transaction_without_entries_is_refused_at_commit():
    with pytest.raises(REFUSED, match="unbalanced"):
        with transaction.atomic():
            insert_transaction()
    assert Transaction.objects.count() == 0


def test_transaction_with_fewer_entries_than_it_says_is_refused_at_commit(make_account):
    a, b = make_account(), make_account()
    with pytest.raises(REFUSED, match="unbalanced"):
        with transaction.atomic():
            txn_id = insert_transaction(legs=3)
            insert_entry(txn_id, a.pk, 100, 0, legs=3)
            insert_entry(txn_id, b.pk, -100, 1, legs=3)
    assert Transaction.objects.count() == 0


@pytest.mark.parametrize(
    ("leg", "legs", "refusal"),
    [
        (2, 2, "entry_leg_in_range"),  # past the count the transaction was checked against
        (0, 2, "entry_leg_unique"),  # a leg number already taken
        (5, 6, "entry_transaction_ledger_legs_fk"),  # claims another count than its own
        (2, 3, "entry_transaction_ledger_legs_fk"),
    ],
)
def test_entry_added_to_a_balanced_transaction_later_is_refused(make_account, leg, legs, refusal):
    a, b = make_account(), make_account()
    txn = services.transfer(key="t", debit=a, credit=b, amount=500)
    with pytest.raises(REFUSED, match=refusal):
        with transaction.atomic():
            insert_entry(txn.id, a.pk, 1, leg, legs=legs)
    assert txn.entries.count() == 2


@pytest.mark.parametrize(
    ("entry_ledger", "refusal"),
    [
        ("money", "entry_account_ledger_fk"),  # says money, but its account is on credit
        ("credit", "entry_transaction_ledger_legs_fk"),  # says credit, in a money transaction
    ],
)
def test_entries_on_another_ledger_are_refused_at_commit(make_account, entry_ledger, refusal):
    money, credit = make_account("money"), make_account("credit")
    with pytest.raises(REFUSED, match=refusal):
        with transaction.atomic():
            txn_id = insert_transaction("money")
            insert_entry(txn_id, money.pk, 100, 0)
            insert_entry(txn_id, credit.pk, -100, 1, ledger=entry_ledger)
    assert Transaction.objects.count() == 0


def test_balanced_raw_insert_commits_but_verify_ledger_sees_the_bypass(make_account):
    a, b = make_account(), make_account()
    with transaction.atomic():
        txn_id = insert_transaction()
        insert_entry(txn_id, a.pk, 100, 0)
        insert_entry(txn_id, b.pk, -100, 1)
    problems = verify_ledger().problems
    assert any(f"account {a.code}: stored debits_posted 0 != 100" in p for p in problems)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_entry SET amount = amount + 1",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_transaction SET reference = 'changed'",
        "DELETE FROM ledger_transaction",
        "UPDATE ledger_chainlink SET hash = repeat('0', 64)",
        "DELETE FROM ledger_idempotencyrecord",
        "DELETE FROM ledger_balanceslot",
        "UPDATE ledger_account SET ledger = 'credit'",
    ],
)
def test_posted_rows_cannot_be_changed_or_deleted(make_account, sql):
    a, b = make_account(), make_account()
    services.transfer(key="t", debit=a, credit=b, amount=500)
    services.chain_seal()
    with pytest.raises(REFUSED, match="Cannot"):
        with transaction.atomic():
            raw(sql)
    assert verify_ledger().intact


def test_a_resolved_hold_cannot_change_but_a_pending_one_resolves(make_account):
    line = make_account("credit", "credit", limit="debits")
    granted = make_account("credit", "debit")
    services.transfer(key="g", debit=granted, credit=line, amount=1_000)
    hold = services.hold_create(key="h", debit=line, credit=granted, amount=600)
    with pytest.raises(REFUSED, match="Cannot"):
        with transaction.atomic():
            raw("UPDATE ledger_hold SET amount = 1 WHERE id = %s", [hold.id])
    services.hold_void(key="v", hold_id=hold.id)
    with pytest.raises(REFUSED, match="Cannot"):
        with transaction.atomic():
            raw("UPDATE ledger_hold SET status = 'pending' WHERE id = %s", [hold.id])
    assert Hold.objects.get(pk=hold.id).status == "voided"


def test_the_database_itself_holds_the_limit(make_account):
    line = make_account("credit", "credit", limit="debits")
    granted = make_account("credit", "debit")
    services.transfer(key="g", debit=granted, credit=line, amount=1_000)
    with pytest.raises(IntegrityError, match="balance_debit_limit"):
        with transaction.atomic():
            raw(
                "UPDATE ledger_balanceslot SET debits_posted = 1001 WHERE account_id = %s",
                [line.pk],
            )
