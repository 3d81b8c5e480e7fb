"""The posting rules the service enforces on every database, SQLite included."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ledger import services
from ledger.exceptions import (
    AlreadyReversed,
    CrossLedgerTransfer,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InvalidPosting,
    LimitExceeded,
    NotReversible,
)
from ledger.models import Entry, Hold, IdempotencyRecord, Transaction
from ledger.selectors import account_balance
from ledger.services import Leg

pytestmark = pytest.mark.django_db


@pytest.fixture
def line(make_account):
    """A credit line of ¥1,000 and the account that granted it."""
    line = make_account("credit", "credit", limit="debits", prefix="line")
    granted = make_account("credit", "debit", prefix="granted")
    services.transfer(key="grant", debit=granted, credit=line, amount=100_000)
    return line, granted


def counts():
    return (
        Transaction.objects.count(),
        Entry.objects.count(),
        Hold.objects.count(),
        IdempotencyRecord.objects.count(),
    )


def test_unbalanced_legs_are_refused(make_account):
    a, b = make_account(), make_account()
    with pytest.raises(InvalidPosting, match="sum to 1"):
        services.transaction_post(key="k", legs=[Leg(a, 101), Leg(b, -100)])
    assert counts() == (0, 0, 0, 0)


def test_single_leg_is_refused(make_account):
    with pytest.raises(InvalidPosting, match="two legs"):
        services.transaction_post(key="k", legs=[Leg(make_account(), 100)])


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, 10**16])
def test_bad_amounts_are_refused(make_account, amount):
    with pytest.raises(InvalidPosting):
        services.transfer(key="k", debit=make_account(), credit=make_account(), amount=amount)
    assert counts() == (0, 0, 0, 0)


def test_transfer_never_crosses_ledgers(make_account):
    money, credit = make_account("money"), make_account("credit")
    with pytest.raises(CrossLedgerTransfer):
        services.transfer(key="k", debit=money, credit=credit, amount=100)


def test_empty_key_is_refused(make_account):
    with pytest.raises(InvalidPosting, match="idempotency key"):
        services.transfer(key="", debit=make_account(), credit=make_account(), amount=1)


def test_draw_past_limit_is_refused_and_writes_nothing(line):
    line, granted = line
    before = counts()
    with pytest.raises(LimitExceeded) as refused:
        services.transfer(key="draw", debit=line, credit=granted, amount=100_001)
    assert refused.value.available == 100_000
    assert refused.value.requested == 100_001
    assert counts() == before
    services.transfer(key="draw", debit=line, credit=granted, amount=100_000)
    assert account_balance(line).available == 0


def test_limit_counts_pending_holds(line):
    line, granted = line
    services.hold_create(key="h1", debit=line, credit=granted, amount=60_000)
    with pytest.raises(LimitExceeded):
        services.transfer(key="draw", debit=line, credit=granted, amount=40_001)
    with pytest.raises(LimitExceeded):
        services.hold_create(key="h2", debit=line, credit=granted, amount=40_001)
    services.hold_create(key="h3", debit=line, credit=granted, amount=40_000)
    assert account_balance(line).available == 0


def test_credits_must_not_exceed_debits(make_account):
    cash = make_account("money", "debit", limit="credits", prefix="till")
    other = make_account("money", "credit")
    services.transfer(key="in", debit=cash, credit=other, amount=500)
    with pytest.raises(LimitExceeded):
        services.transfer(key="out", debit=other, credit=cash, amount=501)
    services.transfer(key="out", debit=other, credit=cash, amount=500)
    assert account_balance(cash).posted == 0


def test_same_key_same_request_returns_first_result_and_writes_nothing(make_account):
    a, b = make_account(), make_account()
    first = services.transfer(key="pay-1", debit=a, credit=b, amount=700)
    before = counts()
    again = services.transfer(key="pay-1", debit=a, credit=b, amount=700)
    assert again.id == first.id
    assert counts() == before
    assert account_balance(a).posted == 700


def test_same_key_other_request_is_a_conflict(make_account):
    a, b = make_account(), make_account()
    services.transfer(key="pay-1", debit=a, credit=b, amount=700)
    with pytest.raises(IdempotencyConflict):
        services.transfer(key="pay-1", debit=a, credit=b, amount=701)
    with pytest.raises(IdempotencyConflict):
        services.hold_create(key="pay-1", debit=a, credit=b, amount=700)
    assert account_balance(a).posted == 700


def test_hold_posts_for_less_and_frees_the_rest(line):
    line, granted = line
    hold = services.hold_create(key="h", debit=line, credit=granted, amount=50_000)
    txn = services.hold_post(key="p", hold_id=hold.id, amount=30_000)
    assert txn.hold_id == hold.id
    assert account_balance(line).debits_posted == 30_000
    assert account_balance(line).debits_pending == 0
    assert account_balance(line).available == 70_000
    assert services.hold_post(key="p", hold_id=hold.id, amount=30_000).id == txn.id


def test_hold_cannot_post_more_than_held(line):
    line, granted = line
    hold = services.hold_create(key="h", debit=line, credit=granted, amount=50_000)
    with pytest.raises(InvalidPosting):
        services.hold_post(key="p", hold_id=hold.id, amount=50_001)
    assert Hold.objects.get(pk=hold.id).status == "pending"


def test_hold_resolves_once(line):
    line, granted = line
    hold = services.hold_create(key="h", debit=line, credit=granted, amount=50_000)
    services.hold_void(key="v", hold_id=hold.id)
    with pytest.raises(HoldNotPending):
        services.hold_post(key="p", hold_id=hold.id)
    with pytest.raises(HoldNotPending):
        services.hold_void(key="v2", hold_id=hold.id)
    assert account_balance(line).available == 100_000


def test_expired_hold_cannot_be_posted_and_is_voided_by_the_sweep(line):
    line, granted = line
    past = timezone.now() - timedelta(seconds=1)
    later = timezone.now() + timedelta(hours=1)
    expired = services.hold_create(
        key="h1", debit=line, credit=granted, amount=10_000, expires_at=past
    )
    live = services.hold_create(
        key="h2", debit=line, credit=granted, amount=20_000, expires_at=later
    )
    with pytest.raises(HoldExpired):
        services.hold_post(key="p", hold_id=expired.id)
    assert account_balance(line).available == 70_000

    assert services.holds_void_expired() == 1
    assert Hold.objects.get(pk=expired.id).status == "expired"
    assert Hold.objects.get(pk=live.id).status == "pending"
    assert account_balance(line).available == 80_000
    assert services.holds_void_expired() == 0


def test_transaction_is_reversed_at_most_once(make_account):
    a, b = make_account(), make_account()
    txn = services.transfer(key="t", debit=a, credit=b, amount=900)
    reversal = services.transaction_reverse(key="r1", transaction_id=txn.id)
    assert services.transaction_reverse(key="r1", transaction_id=txn.id).id == reversal.id
    with pytest.raises(AlreadyReversed):
        services.transaction_reverse(key="r2", transaction_id=txn.id)
    with pytest.raises(NotReversible):
        services.transaction_reverse(key="r3", transaction_id=reversal.id)
    assert account_balance(a).posted == 0
    assert account_balance(a).debits_posted == 900
    assert account_balance(a).credits_posted == 900


def test_reversal_that_would_break_a_limit_is_refused(line):
    line, granted = line
    grant_2 = services.transfer(key="grant-2", debit=granted, credit=line, amount=5_000)
    services.transfer(key="draw", debit=line, credit=granted, amount=104_000)
    with pytest.raises(LimitExceeded):
        services.transaction_reverse(key="undo-grant-2", transaction_id=grant_2.id)


def test_account_create_is_idempotent_by_code_and_refuses_a_different_definition():
    first = services.account_create(code="house:revenue", ledger="money", normal_side="credit")
    again = services.account_create(code="house:revenue", ledger="money", normal_side="credit")
    assert again.pk == first.pk
    with pytest.raises(InvalidPosting):
        services.account_create(code="house:revenue", ledger="credit", normal_side="credit")


def test_hot_account_balance_is_the_sum_of_its_slots(make_account):
    hot = make_account("money", "credit", slots=16)
    assert hot.balance_rows.count() == 16
    payer = make_account("money", "debit")
    for i in range(5):
        services.transfer(key=f"t{i}", debit=payer, credit=hot, amount=100 + i)
    assert account_balance(hot).posted == 510


def test_a_transfer_or_hold_needs_two_different_accounts(make_account):
    a = make_account()
    with pytest.raises(InvalidPosting, match="two accounts"):
        services.transfer(key="t", debit=a, credit=a, amount=5)
    with pytest.raises(InvalidPosting, match="two accounts"):
        services.hold_create(key="h", debit=a, credit=a, amount=5)
    assert counts() == (0, 0, 0, 0)


def test_the_trial_balance_sums_every_account_per_ledger(make_account):
    from ledger.selectors import trial_balance

    cash, revenue = make_account("money", "debit"), make_account("money", "credit")
    services.transfer(key="tb-1", debit=cash, credit=revenue, amount=12_345)
    granted, line = make_account("credit", "debit"), make_account("credit", "credit")
    services.hold_create(key="tb-2", debit=granted, credit=line, amount=500)

    rows = {row.ledger: row for row in trial_balance()}
    assert set(rows) == {"money", "credit"}
    money, credit = rows["money"], rows["credit"]
    assert (money.debits_posted, money.credits_posted, money.accounts) == (12_345, 12_345, 2)
    assert money.balanced and money.difference == 0
    assert (credit.debits_pending, credit.credits_pending, credit.debits_posted) == (500, 500, 0)
    assert credit.balanced
