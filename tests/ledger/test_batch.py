"""``transfers_post``: many transfers in one call, each refused alone or all together.

The same tests run on SQLite (the Python path) and on PostgreSQL (the posting function).
"""

import pytest

from ledger import services
from ledger.exceptions import IdempotencyConflict, LimitExceeded
from ledger.models import Entry, IdempotencyRecord, Transaction
from ledger.selectors import account_balance
from ledger.services import TransferRequest
from ledger.verification import verify_ledger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def books(make_account):
    """Two credit lines of ¥10 and ¥5 granted by a facility, drawn to one house account."""
    facility = make_account("credit", "debit", prefix="facility")
    house = make_account("credit", "debit", prefix="drawn", slots=4)
    line_a = make_account("credit", "credit", limit="debits", prefix="line-a")
    line_b = make_account("credit", "credit", limit="debits", prefix="line-b")
    services.transfer(key="grant-a", debit=facility, credit=line_a, amount=1_000)
    services.transfer(key="grant-b", debit=facility, credit=line_b, amount=500)
    return facility, house, line_a, line_b


def draw(key, line, house, amount):
    return TransferRequest(key=key, debit=line, credit=house, amount=amount)


def written():
    return Transaction.objects.count(), Entry.objects.count(), IdempotencyRecord.objects.count()


def test_unlinked_refusal_refuses_only_that_transfer_and_keeps_its_key_free(books):
    facility, house, line_a, line_b = books
    results = services.transfers_post(
        [
            draw("d1", line_a, house, 600),
            draw("d2", line_a, house, 600),  # 400 left after d1
            draw("d3", line_b, house, 500),
            draw("d4", line_a, house, 400),  # fits: d2 was refused
        ]
    )
    assert [type(result).__name__ for result in results] == [
        "Transaction",
        "LimitExceeded",
        "Transaction",
        "Transaction",
    ]
    refusal = results[1]
    assert isinstance(refusal, LimitExceeded)
    assert (refusal.account_code, refusal.available, refusal.requested) == (line_a.code, 400, 600)
    assert account_balance(line_a).available == 0
    assert account_balance(line_b).available == 0
    assert account_balance(house).credits_posted == 1_500
    assert not IdempotencyRecord.objects.filter(key="d2").exists()

    services.transfer(key="more", debit=facility, credit=line_a, amount=600)
    [again] = services.transfers_post([draw("d2", line_a, house, 600)])
    assert isinstance(again, Transaction)
    services.chain_seal()
    report = verify_ledger()
    assert report.intact, report.problems


def test_linked_refusal_refuses_the_whole_batch_and_writes_nothing(books):
    _, house, line_a, line_b = books
    before = written()
    with pytest.raises(LimitExceeded) as refused:
        services.transfers_post(
            [
                draw("d1", line_a, house, 600),
                draw("d2", line_b, house, 100),
                draw("d3", line_a, house, 600),
            ],
            linked=True,
        )
    assert refused.value.account_code == line_a.code
    assert written() == before
    assert account_balance(line_a).available == 1_000
    assert account_balance(line_b).available == 500

    posted = services.transfers_post(
        [draw("d1", line_a, house, 600), draw("d2", line_b, house, 100)], linked=True
    )
    assert all(isinstance(result, Transaction) for result in posted)
    assert account_balance(house).credits_posted == 700


def test_a_transfer_may_use_room_an_earlier_one_of_the_batch_made(books):
    facility, house, line_a, _ = books
    results = services.transfers_post(
        [
            draw("d1", line_a, house, 1_000),
            TransferRequest(key="g", debit=facility, credit=line_a, amount=300),
            draw("d2", line_a, house, 300),
        ],
        linked=True,
    )
    assert all(isinstance(result, Transaction) for result in results)
    assert account_balance(line_a).available == 0


def test_replaying_a_batch_returns_its_transactions_and_writes_nothing(books):
    _, house, line_a, line_b = books
    batch = [draw("d1", line_a, house, 100), draw("d2", line_b, house, 200)]
    first = services.transfers_post(batch, linked=True)
    before = written()
    for linked in (False, True):
        again = services.transfers_post(batch, linked=linked)
        assert [txn.pk for txn in again] == [txn.pk for txn in first]  # type: ignore[union-attr]
    assert written() == before
    single = services.transfer(key="d1", debit=line_a, credit=house, amount=100)
    assert single.pk == first[0].pk


def test_a_key_used_for_another_request_is_refused_alone(books):
    _, house, line_a, line_b = books
    services.transfer(key="d1", debit=line_a, credit=house, amount=100)
    results = services.transfers_post(
        [draw("d1", line_a, house, 999), draw("d2", line_b, house, 200)]
    )
    assert isinstance(results[0], IdempotencyConflict)
    assert isinstance(results[1], Transaction)


def test_a_linked_batch_partly_posted_before_is_refused(books):
    _, house, line_a, line_b = books
    services.transfer(key="d1", debit=line_a, credit=house, amount=100)
    before = written()
    with pytest.raises(IdempotencyConflict) as conflict:
        services.transfers_post(
            [draw("d1", line_a, house, 100), draw("d2", line_b, house, 200)], linked=True
        )
    assert conflict.value.key == "d1"
    assert written() == before


def test_a_batch_uses_each_key_once(books):
    _, house, line_a, _ = books
    with pytest.raises(IdempotencyConflict):
        services.transfers_post([draw("d", line_a, house, 1), draw("d", line_a, house, 2)])
    assert services.transfers_post([]) == []


@pytest.mark.parametrize(
    ("reference", "description"),
    [
        ("", ""),
        ("enc-1", "draw"),
        ('q"uote\\', "tab\tnew\nline"),
        ("结算", "住院 ¥"),
        ("\x00", "é"),
    ],
)
def test_a_batch_transfer_hashes_its_request_as_a_single_transfer_does(
    books, reference, description
):
    """A key used by ``transfer`` replays in a batch and the other way round: both hash the
    same request to the same bytes."""
    facility, house, line_a, _ = books
    for debit, credit in ((line_a, house), (house, line_a), (facility, line_a)):
        request = TransferRequest(
            key="k", debit=debit, credit=credit, amount=123, reference=reference,
            description=description,
        )  # fmt: skip
        general = services._prepare(
            "k",
            [services.Leg.debit(debit, 123), services.Leg.credit(credit, 123)],
            reference,
            description,
        )
        assert services._prepare_transfer(request).request_hash == general.request_hash


def test_a_batch_takes_journal_transactions_of_several_legs(books):
    """A ``TransactionRequest`` is what ``transaction_post`` would post under its key: it
    replays that key, and in a linked batch its refusal refuses every other member."""
    facility, house, line_a, line_b = books
    legs = [
        services.Leg.debit(line_a, 300),
        services.Leg.debit(line_b, 200),
        services.Leg.credit(house, 500),
    ]
    first = services.transaction_post(key="multi", legs=legs)
    [again, grant] = services.transfers_post(
        [
            services.TransactionRequest(key="multi", legs=legs),
            TransferRequest(key="g", debit=facility, credit=line_b, amount=100),
        ],
        linked=False,
    )
    assert again.pk == first.pk  # type: ignore[union-attr]
    assert isinstance(grant, Transaction)
    before = written()
    too_much = [services.Leg.debit(line_a, 800), services.Leg.credit(house, 800)]  # 700 left
    with pytest.raises(LimitExceeded):
        services.transfers_post(
            [
                TransferRequest(key="fits", debit=line_b, credit=house, amount=10),
                services.TransactionRequest(key="too-much", legs=too_much),
            ],
            linked=True,
        )
    assert written() == before
    assert account_balance(line_b).available == 400  # nothing of "fits" stayed
