"""Many threads, each with its own PostgreSQL connection, posting at once."""

import random
import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from ledger import services
from ledger.exceptions import (
    AlreadyReversed,
    HoldNotPending,
    IdempotencyConflict,
    LimitExceeded,
)
from ledger.models import Hold, IdempotencyRecord, Transaction
from ledger.selectors import account_balance
from ledger.verification import verify_ledger
from tests.threads import THREADS, run_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_limited_account_is_never_overdrawn_and_no_posting_is_lost(make_account):
    limit = 100_000
    line = make_account("credit", "credit", limit="debits", prefix="family-line")
    granted = make_account("credit", "debit", prefix="granted")
    services.transfer(key="grant", debit=granted, credit=line, amount=limit)

    def draw_many(i: int) -> list[int]:
        rng = random.Random(i)
        drawn = []
        for n in range(25):
            amount = rng.randint(100, 2_000)
            try:
                if n % 3 == 0:
                    hold = services.hold_create(
                        key=f"t{i}-{n}", debit=line, credit=granted, amount=amount
                    )
                    services.hold_post(key=f"t{i}-{n}-post", hold_id=hold.id)
                else:
                    services.transfer(key=f"t{i}-{n}", debit=line, credit=granted, amount=amount)
            except LimitExceeded:
                continue
            drawn.append(amount)
        return drawn

    results = run_threads(draw_many)
    assert not [r for r in results if isinstance(r, Exception)], results
    succeeded = [amount for drawn in results for amount in drawn]  # type: ignore[union-attr]
    attempted_total = sum(succeeded)
    balance = account_balance(line)
    assert balance.debits_posted == attempted_total
    assert balance.debits_posted <= limit
    assert balance.available == limit - attempted_total
    assert balance.debits_pending == 0
    # Every successful draw is there, plus the grant.
    assert Transaction.objects.filter(entries__account=line).count() == len(succeeded) + 1
    # More was asked than the limit allows, so some draw was refused, which happens only once
    # less than the largest draw (2,000) is left.
    assert limit - attempted_total < 2_000
    services.chain_seal()
    assert verify_ledger().intact


def test_hot_house_accounts_end_with_the_exact_sum(make_account):
    revenue = make_account("money", "credit", slots=16, prefix="revenue")
    single = make_account("money", "credit", prefix="insurer-clearing")
    payers = [make_account("money", "debit", prefix="patient") for _ in range(THREADS)]

    def post_many(i: int) -> int:
        total = 0
        for n in range(40):
            amount = 1_000 + i * 10 + n
            services.transfer(key=f"h{i}-{n}", debit=payers[i], credit=revenue, amount=amount)
            services.transfer(key=f"s{i}-{n}", debit=payers[i], credit=single, amount=amount)
            total += amount
        return total

    results = run_threads(post_many)
    assert not [r for r in results if isinstance(r, Exception)], results
    expected = sum(results)  # type: ignore[arg-type]
    assert account_balance(revenue).posted == expected
    assert account_balance(single).posted == expected
    used_slots = revenue.balance_rows.exclude(credits_posted=0).count()
    assert used_slots > 1  # the load really was spread
    services.chain_seal()
    report = verify_ledger()
    assert report.intact, report.problems
    assert report.links == 2 * THREADS * 40


def test_one_key_posted_by_many_threads_posts_once(make_account):
    a, b = make_account(), make_account()
    results = run_threads(
        lambda i: services.transfer(key="same", debit=a, credit=b, amount=4_200).id
    )
    assert len(set(results)) == 1, results
    assert Transaction.objects.count() == 1
    assert account_balance(a).posted == 4_200


def test_one_transaction_reversed_by_many_threads_reverses_once(make_account):
    a, b = make_account(), make_account()
    txn = services.transfer(key="t", debit=a, credit=b, amount=300)
    results = run_threads(
        lambda i: services.transaction_reverse(key=f"r{i}", transaction_id=txn.id).id
    )
    reversed_ok = [r for r in results if not isinstance(r, Exception)]
    assert len(reversed_ok) == 1
    assert all(isinstance(r, AlreadyReversed) for r in results if isinstance(r, Exception))
    assert account_balance(a).posted == 0


def test_one_hold_posted_and_voided_by_many_threads_resolves_once(make_account):
    line = make_account("credit", "credit", limit="debits")
    granted = make_account("credit", "debit")
    services.transfer(key="g", debit=granted, credit=line, amount=10_000)
    hold = services.hold_create(key="h", debit=line, credit=granted, amount=5_000)

    def resolve(i: int) -> str:
        if i % 2:
            services.hold_void(key=f"v{i}", hold_id=hold.id)
            return "voided"
        services.hold_post(key=f"p{i}", hold_id=hold.id, amount=4_000)
        return "posted"

    results = run_threads(resolve)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, HoldNotPending) for r in results if isinstance(r, Exception))
    assert Hold.objects.get(pk=hold.id).status == winners[0]
    balance = account_balance(line)
    assert balance.debits_pending == 0
    assert balance.debits_posted == (4_000 if winners[0] == "posted" else 0)


def test_concurrent_batches_never_overdraw_and_refuse_only_what_does_not_fit(make_account):
    """Unlinked batches of draws on shared lines from many threads: every line ends exactly at
    the sum of the draws that were posted, never past its limit."""
    limit = 20_000
    granted = make_account("credit", "debit", prefix="granted")
    drawn_to = make_account("credit", "debit", prefix="drawn", slots=4)
    lines = [make_account("credit", "credit", limit="debits", prefix="line") for _ in range(3)]
    for number, line in enumerate(lines):
        services.transfer(key=f"grant-{number}", debit=granted, credit=line, amount=limit)

    def post_batches(i: int) -> list[tuple[int, int]]:
        rng = random.Random(i)
        posted = []
        for n in range(6):
            batch = [
                services.TransferRequest(
                    key=f"t{i}-{n}-{m}",
                    debit=rng.choice(lines),
                    credit=drawn_to,
                    amount=rng.randint(100, 1_500),
                )
                for m in range(8)
            ]
            batch.sort(key=lambda item: item.debit.pk)  # account order, as ledger_bench does
            for item, result in zip(batch, services.transfers_post(batch), strict=True):
                if isinstance(result, Transaction):
                    posted.append((item.debit.pk, item.amount))
                else:
                    assert isinstance(result, LimitExceeded), result
        return posted

    results = run_threads(post_batches)
    assert not [r for r in results if isinstance(r, Exception)], results
    posted = [draw for drawn in results for draw in drawn]  # type: ignore[union-attr]
    for line in lines:
        total = sum(amount for account_id, amount in posted if account_id == line.pk)
        balance = account_balance(line)
        assert balance.debits_posted == total <= limit
        assert limit - total < 1_500  # asked for more than fits, so each line was filled
    assert account_balance(drawn_to).credits_posted == sum(amount for _, amount in posted)
    services.chain_seal()
    assert verify_ledger().intact


def test_unsorted_batches_racing_single_postings_never_deadlock(make_account):
    """Every posting path takes its balance rows in one global order (account, then slot):
    unsorted batches and single postings on the same accounts, from many threads at once,
    never deadlock and end at the exact sums."""
    # The unlimited accounts sort on both sides of the limited lines, so a path that locks the
    # lines first and the rest after takes rows out of account order.
    low = make_account("credit", "debit", prefix="low")
    granted = make_account("credit", "debit", prefix="granted")
    lines = [make_account("credit", "credit", limit="debits", prefix="line") for _ in range(2)]
    high = make_account("credit", "debit", prefix="high")
    for number, line in enumerate(lines):
        services.transfer(key=f"grant-{number}", debit=granted, credit=line, amount=10**9)

    def race(i: int) -> int:
        rng = random.Random(i)
        total = 0
        for n in range(30):
            if i % 2:
                batch = [
                    services.TransferRequest(
                        key=f"b{i}-{n}-{m}",
                        debit=rng.choice(lines),
                        credit=rng.choice((low, high)),
                        amount=rng.randint(1, 100),
                    )
                    for m in range(6)
                ]
                rng.shuffle(batch)  # not in account order
                results = services.transfers_post(batch, linked=bool(n % 2))
                assert all(isinstance(result, Transaction) for result in results), results
                total += sum(item.amount for item in batch)
            else:
                amount = rng.randint(1, 100)
                services.transfer(
                    key=f"s{i}-{n}",
                    debit=rng.choice(lines),
                    credit=rng.choice((low, high)),
                    amount=amount,
                )
                total += amount
        return total

    results = run_threads(race)
    assert not [r for r in results if isinstance(r, Exception)], results
    drawn = sum(results)  # type: ignore[arg-type]
    assert sum(account_balance(line).debits_posted for line in lines) == drawn
    assert account_balance(low).credits_posted + account_balance(high).credits_posted == drawn
    services.chain_seal()
    assert verify_ledger().intact


def _race_rounds(
    rounds: int, prepare: Callable[[int, int], Callable[[], None]], threads: int = THREADS
) -> list[object]:
    """For every round, run in every thread ``prepare(i, round)`` and then, the threads
    starting together, what it returned; return each thread's result or exception (the
    prepared calls record their own outcomes)."""
    together = threading.Barrier(threads)

    def run(i: int) -> None:
        for number in range(rounds):
            go = prepare(i, number)
            together.wait(timeout=60)
            go()

    return run_threads(run, threads)


def _outcome(call: Callable[[], object]) -> object:
    """What ``call`` returned or raised: a deadlock must come back as an error, not end the
    thread's rounds (the other threads wait for it at the next round)."""
    try:
        return call()
    except Exception as error:  # asserted on by the test
        return error


def test_batches_and_single_postings_sharing_keys_never_deadlock(make_account):
    """Batches (unlinked and linked, each in its own order of the keys) and single postings
    racing on the same keys and the same balance rows: no deadlock; each key is posted once,
    a caller asking the same request gets that posting back and one asking another request
    gets ``IdempotencyConflict``."""
    granted = make_account("credit", "debit", prefix="granted")
    line = make_account("credit", "credit", limit="debits", prefix="line")
    house = make_account("credit", "debit", prefix="house")
    services.transfer(key="grant", debit=granted, credit=line, amount=10**9)
    keys = 6

    def amount(number: int, m: int) -> int:
        return 100 + number * keys + m

    seen: list[tuple[str, int, bool, object]] = []  # key, amount asked, linked batch, outcome

    def prepare(i: int, number: int) -> Callable[[], None]:
        rng = random.Random(i * 1_000 + number)
        order = list(range(keys))
        rng.shuffle(order)
        linked = i % 4 == 1
        batch = [
            services.TransferRequest(
                key=f"k{number}-{m}", debit=line, credit=house, amount=amount(number, m)
            )
            for m in order
        ]

        def post_batch() -> None:
            result = _outcome(lambda: services.transfers_post(batch, linked=linked))
            outcomes = result if isinstance(result, list) else [result] * len(batch)
            seen.extend(
                (item.key, item.amount, linked, outcome)
                for item, outcome in zip(batch, outcomes, strict=True)
            )

        def post_one_by_one() -> None:
            for m in order:
                # Every other thread asks another amount under the same key: a conflict.
                asked = amount(number, m) + (i % 2)
                result = _outcome(
                    lambda m=m, asked=asked: services.transfer(
                        key=f"k{number}-{m}", debit=line, credit=house, amount=asked
                    )
                )
                seen.append((f"k{number}-{m}", asked, False, result))

        return post_batch if i % 4 in (0, 1) else post_one_by_one

    rounds = 25
    results = _race_rounds(rounds, prepare)
    assert not [r for r in results if isinstance(r, Exception)], results
    errors = [o for _, _, _, o in seen if isinstance(o, Exception)]
    assert all(isinstance(error, IdempotencyConflict) for error in errors), {
        repr(error) for error in errors if not isinstance(error, IdempotencyConflict)
    }
    posted_total = 0
    for number in range(rounds):
        for m in range(keys):
            key = f"k{number}-{m}"
            record = IdempotencyRecord.objects.get(key=key)
            txn = Transaction.objects.get(pk=record.result_id)
            won = txn.entries.get(account=line).amount
            posted_total += won
            for _, asked, linked, outcome in (s for s in seen if s[0] == key):
                if isinstance(outcome, Transaction):
                    assert (outcome.id, asked) == (txn.id, won)
                elif not linked:  # a linked batch is also refused when partly posted before
                    assert asked != won, (key, asked, outcome)
    assert Transaction.objects.count() == rounds * keys + 1
    assert account_balance(line).debits_posted == posted_total
    assert account_balance(house).credits_posted == posted_total
    services.chain_seal()
    assert verify_ledger().intact


def test_batches_claiming_the_same_keys_in_different_orders_never_deadlock(make_account):
    """Two batches of the same keys in opposite orders, on accounts of their own (so no
    balance row orders them), both made to wait for a key a third transaction holds and
    then gives up: no deadlock on the keys; each key is posted by one batch and the other
    batch's request for it conflicts."""
    holder_accounts = (make_account(prefix="h"), make_account(prefix="h"))
    groups = [(make_account(prefix="a"), make_account(prefix="b")) for _ in range(2)]
    rounds = 3

    class GiveUp(Exception):
        pass

    def waiting_batches() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE %s",
                ["%ledger_post_transfers%"],
            )
            return int(cursor.fetchone()[0])

    seen: list[tuple[str, int, object]] = []  # key, group, outcome
    for number in range(rounds):
        keys = [f"k{number}-1", f"k{number}-2", f"k{number}-3"]
        held, claimed, released = keys[1], threading.Event(), threading.Event()

        def race(
            i: int, keys: list[str] = keys, held: str = held, claimed=claimed, released=released
        ) -> object:
            if i == 0:  # holds the middle key, uncommitted, until both batches wait
                try:
                    with transaction.atomic():
                        debit, credit = holder_accounts
                        services.transfer(key=held, debit=debit, credit=credit, amount=1)
                        claimed.set()
                        assert released.wait(timeout=60)
                        raise GiveUp
                except GiveUp:
                    return None
            if i == 3:  # lets the holder go once both batches wait for a key
                assert claimed.wait(timeout=60)
                try:
                    for _ in range(600):
                        if waiting_batches() >= 2:
                            break
                        time.sleep(0.05)
                    else:
                        raise AssertionError("the batches never waited for the held key")
                finally:
                    released.set()
                return None
            assert claimed.wait(timeout=60)
            debit, credit = groups[i - 1]
            order = keys if i == 1 else keys[::-1]
            batch = [
                services.TransferRequest(key=key, debit=debit, credit=credit, amount=50)
                for key in order
            ]
            result = _outcome(lambda: services.transfers_post(batch))
            outcomes = result if isinstance(result, list) else [result] * len(batch)
            seen.extend(
                (item.key, i - 1, outcome) for item, outcome in zip(batch, outcomes, strict=True)
            )
            return None

        results = run_threads(race, threads=4)
        assert not [r for r in results if isinstance(r, Exception)], results

    errors = [o for _, _, o in seen if isinstance(o, Exception)]
    assert all(isinstance(error, IdempotencyConflict) for error in errors), {
        repr(error) for error in errors if not isinstance(error, IdempotencyConflict)
    }
    for number in range(rounds):
        for m in (1, 2, 3):
            key = f"k{number}-{m}"
            txn = Transaction.objects.get(pk=IdempotencyRecord.objects.get(key=key).result_id)
            winner = next(
                g
                for g, (debit, _) in enumerate(groups)
                if txn.entries.filter(account=debit).exists()
            )
            for _, group, outcome in (s for s in seen if s[0] == key):
                if group == winner:
                    assert isinstance(outcome, Transaction) and outcome.id == txn.id
                else:
                    assert isinstance(outcome, IdempotencyConflict), outcome
    assert Transaction.objects.count() == rounds * 3
    posted = sum(account_balance(debit).debits_posted for debit, _ in groups)
    assert posted == rounds * 3 * 50


def test_a_reversal_and_a_transfer_sharing_a_key_never_deadlock(make_account):
    """Reversals of a transaction and transfers on its accounts racing under one key: no
    deadlock; the key is used once, by a reversal or by a transfer, and the other requests for
    it get that result back (the same request) or ``IdempotencyConflict``."""
    a, b = make_account(prefix="a"), make_account(prefix="b")
    rounds = 25
    originals = [
        services.transfer(key=f"t{number}", debit=a, credit=b, amount=1_000 + number)
        for number in range(rounds)
    ]
    seen: list[tuple[str, str, object]] = []  # key, what was asked, outcome

    def prepare(i: int, number: int) -> Callable[[], None]:
        key = f"k{number}"

        def reverse() -> None:
            result = _outcome(
                lambda: services.transaction_reverse(key=key, transaction_id=originals[number].id)
            )
            seen.append((key, "reverse", result))

        def post() -> None:
            result = _outcome(lambda: services.transfer(key=key, debit=b, credit=a, amount=7))
            seen.append((key, "transfer", result))

        return reverse if i % 2 else post

    results = _race_rounds(rounds, prepare)
    assert not [r for r in results if isinstance(r, Exception)], results
    errors = [o for _, _, o in seen if isinstance(o, Exception)]
    assert all(isinstance(error, IdempotencyConflict) for error in errors), {
        repr(error) for error in errors if not isinstance(error, IdempotencyConflict)
    }
    reversed_total = 0
    for number in range(rounds):
        key = f"k{number}"
        txn = Transaction.objects.get(pk=IdempotencyRecord.objects.get(key=key).result_id)
        won = "reverse" if txn.kind == Transaction.Kind.REVERSAL else "transfer"
        if won == "reverse":
            assert txn.reverses_id == originals[number].id
            reversed_total += originals[number].entries.get(account=a).amount
        for _, asked, outcome in (s for s in seen if s[0] == key):
            if asked == won:
                assert isinstance(outcome, Transaction) and outcome.id == txn.id
            else:
                assert isinstance(outcome, IdempotencyConflict), outcome
    transfers = Transaction.objects.filter(kind=Transaction.Kind.TRANSFER).count() - rounds
    reversals = Transaction.objects.filter(kind=Transaction.Kind.REVERSAL).count()
    assert transfers + reversals == rounds
    balance = account_balance(a)
    assert balance.debits_posted == sum(1_000 + n for n in range(rounds))
    assert balance.credits_posted == reversed_total + 7 * transfers
    services.chain_seal()
    assert verify_ledger().intact
