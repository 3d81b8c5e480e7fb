"""Property-based tests: random sequences of ledger operations keep the books.

A Hypothesis state machine drives ``ledger.services`` with transfers, holds (created, posted in
full or in part, voided, expired), reversals, replays of earlier calls and reuses of their keys
for other requests, on a small set of accounts: credit lines that may not be overdrawn, the
facility that grants them and the account they are drawn to, a till that may not pay out more
than it took in, and a house account whose balance is spread over four slots. A plain-Python
model predicts the outcome of every call, and after every step the database must agree with
the model and keep the double-entry invariants on its own.

Each Hypothesis example runs inside a savepoint that ``teardown`` rolls back, so every example
starts from an empty ledger. Each service call runs in a savepoint of its own, so a refused
call rolls back just itself, as it would roll back its caller's transaction in production.
The test database transaction never commits, so the ``on_commit`` sealing never runs: the
machine seals the chain itself, now and then and at the end, and checks ``verify_ledger``.
"""

import itertools
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger import selectors, services
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
from ledger.models import (
    Account,
    BalanceSlot,
    ChainLink,
    Entry,
    Hold,
    IdempotencyRecord,
    Transaction,
)
from ledger.verification import verify_ledger
from tests.ledger.conftest import new_account

# About 18 s on SQLite and 35 s on PostgreSQL on a 2-core machine; each example is one
# sequence of up to 40 operations, starting from an empty ledger.
PROPERTY_SETTINGS = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class AccountSpec:
    ledger: str
    normal_side: str
    limit: str | None = None  # "debits" or "credits", as for ``new_account``
    slots: int = 1


ACCOUNTS = {
    # The credit ledger: a facility grants capacity to credit lines, which are drawn on.
    "facility": AccountSpec("credit", "debit"),
    "line_a": AccountSpec("credit", "credit", limit="debits"),
    "line_b": AccountSpec("credit", "credit", limit="debits"),
    "line_c": AccountSpec("credit", "credit", limit="debits"),
    "drawn": AccountSpec("credit", "debit"),
    # The money ledger: a hot house account on four balance slots, two ordinary accounts and
    # a till that cannot pay out (credit) more than it has taken in (debits).
    "house": AccountSpec("money", "credit", slots=4),
    "bank": AccountSpec("money", "debit"),
    "patient": AccountSpec("money", "debit"),
    "till": AccountSpec("money", "debit", limit="credits"),
}
BY_LEDGER = {
    ledger: sorted(name for name, spec in ACCOUNTS.items() if spec.ledger == ledger)
    for ledger in ("credit", "money")
}

SERVICES = {
    "transfer": services.transfer,
    "hold_create": services.hold_create,
    "hold_post": services.hold_post,
    "hold_void": services.hold_void,
    "transaction_reverse": services.transaction_reverse,
}

# An amount is either fen or an offset from what the limited side of the posting has left,
# so that postings land exactly on, just inside and just past a limit.
HEADROOM = {"headroom-1": -1, "headroom": 0, "headroom+1": 1}
amounts = st.one_of(st.integers(1, 10**6), st.sampled_from(sorted(HEADROOM)))
# How much of a hold to post: not saying (all of it), all of it, part of it, one fen too many.
portions = st.sampled_from(["unstated", "full", "part", "over"])
cuts = st.integers(1, 10**6)  # what a partial posting leaves of the hold, at least 1 fen


def _pairs_on(ledger: str) -> st.SearchStrategy[tuple[str, str]]:
    names = st.sampled_from(BY_LEDGER[ledger])
    return st.tuples(names, names).filter(lambda pair: pair[0] != pair[1])


# A debit account and a different credit account on one ledger. (A transfer from an account
# to itself is accepted today but a hold is not; the machine leaves that case alone.)
same_ledger_pairs = st.sampled_from(sorted(BY_LEDGER)).flatmap(_pairs_on)


cross_ledger_pairs = st.tuples(
    st.sampled_from(BY_LEDGER["money"]), st.sampled_from(BY_LEDGER["credit"])
).flatmap(lambda pair: st.sampled_from([pair, pair[::-1]]))


@dataclass
class Totals:
    """One account's balance in the model, or a change to it."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(
            self.debits_posted + other.debits_posted,
            self.credits_posted + other.credits_posted,
            self.debits_pending + other.debits_pending,
            self.credits_pending + other.credits_pending,
        )

    def breaks(self, limit: str | None) -> bool:
        if limit == "debits":
            return self.debits_posted + self.debits_pending > self.credits_posted
        if limit == "credits":
            return self.credits_posted + self.credits_pending > self.debits_posted
        return False


def posting(amount: int) -> Totals:
    """The change an entry of ``amount`` (positive debit, negative credit) makes."""
    return Totals(debits_posted=amount) if amount > 0 else Totals(credits_posted=-amount)


def _totals(balance: selectors.Balance) -> Totals:
    return Totals(
        balance.debits_posted,
        balance.credits_posted,
        balance.debits_pending,
        balance.credits_pending,
    )


@dataclass
class ModelHold:
    debit: str
    credit: str
    amount: int
    overdue: bool  # created with an expiry already in the past
    status: str = Hold.Status.PENDING


@dataclass
class ModelTransaction:
    kind: str
    legs: tuple[tuple[str, int], ...]
    hold: UUID | None = None
    reverses: UUID | None = None
    reversed: bool = False


@dataclass(frozen=True, eq=False)
class Call:
    """A service call that went through: replaying it must return ``result_id`` again."""

    op: str
    key: str
    kwargs: dict[str, Any]
    result_id: UUID


class LedgerMachine(RuleBasedStateMachine):
    transactions = Bundle("transactions")
    holds = Bundle("holds")
    open_holds = Bundle("open_holds")  # created and not yet drawn to be posted or voided
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self._example = transaction.atomic()
        self._example.__enter__()
        self._saved_slot_seed = getattr(services._slot_seed, "value", None)
        try:
            self.accounts = {
                name: new_account(
                    spec.ledger,
                    spec.normal_side,
                    limit=spec.limit,
                    slots=spec.slots,
                    prefix=f"prop-{name}",
                )
                for name, spec in ACCOUNTS.items()
            }
        except BaseException:
            self._end_example()
            raise
        self.balances = {name: Totals() for name in ACCOUNTS}
        self.model_holds: dict[UUID, ModelHold] = {}
        self.model_transactions: dict[UUID, ModelTransaction] = {}
        self.keys_recorded = 0
        self.sealed = 0  # transactions linked into the hash chain
        self.refused_keys: list[str] = []
        self._key_numbers = itertools.count(1)

    def _end_example(self) -> None:
        if self._saved_slot_seed is None:
            vars(services._slot_seed).pop("value", None)
        else:
            services._slot_seed.value = self._saved_slot_seed
        transaction.set_rollback(True)
        self._example.__exit__(None, None, None)

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is not None:
                return  # a step failed: let its error be the one reported
            for name, account in self.accounts.items():
                assert _totals(selectors.account_balance(account)) == self.balances[name], name
            with transaction.atomic():
                services.chain_seal()
            report = verify_ledger()
            assert report.intact, report.problems
            assert report.links == len(self.model_transactions)
        finally:
            self._end_example()

    # --- helpers ------------------------------------------------------------------------------

    def _key(self, reuse_refused: bool = False) -> str:
        if reuse_refused and self.refused_keys:
            return self.refused_keys.pop()
        return f"prop-{next(self._key_numbers)}"

    def _call(self, op: str, key: str, kwargs: dict[str, Any]) -> Any:
        with transaction.atomic():
            return SERVICES[op](key=key, **kwargs)

    def _snapshot(self) -> tuple[object, ...]:
        """Everything a refused call or a replay must leave as it was."""
        return (
            list(
                BalanceSlot.objects.order_by("account_id", "slot").values_list(
                    "account_id",
                    "slot",
                    "debits_posted",
                    "credits_posted",
                    "debits_pending",
                    "credits_pending",
                )
            ),
            list(Hold.objects.order_by("id").values_list("id", "status", "resolved_at")),
            Transaction.objects.count(),
            Entry.objects.count(),
            IdempotencyRecord.objects.count(),
            ChainLink.objects.count(),
        )

    def _headroom(self, debit: str, credit: str) -> int:
        """What the limited side of a debit/credit pair has left (1000 if neither is limited)."""
        rooms = []
        if ACCOUNTS[debit].limit == "debits":
            b = self.balances[debit]
            rooms.append(b.credits_posted - b.debits_posted - b.debits_pending)
        if ACCOUNTS[credit].limit == "credits":
            b = self.balances[credit]
            rooms.append(b.debits_posted - b.credits_posted - b.credits_pending)
        return min(rooms, default=1000)

    def _amount(self, amount: int | str, debit: str, credit: str) -> int:
        if isinstance(amount, int):
            return amount
        return max(1, self._headroom(debit, credit) + HEADROOM[amount])

    def _limits_broken(self, changes: list[tuple[str, Totals]]) -> set[str]:
        after = dict(self.balances)
        for name, change in changes:
            after[name] = after[name] + change
        return {name for name, _ in changes if after[name].breaks(ACCOUNTS[name].limit)}

    def _expect_refused(
        self, op: str, key: str, kwargs: dict[str, Any], error: type[Exception]
    ) -> Any:
        """The call raises exactly ``error`` and changes nothing at all."""
        before = self._snapshot()
        with pytest.raises(error) as raised:
            self._call(op, key, kwargs)
        assert type(raised.value) is error
        assert self._snapshot() == before
        if error is not IdempotencyConflict:
            assert not IdempotencyRecord.objects.filter(key=key).exists()
            self.refused_keys.append(key)  # the key stays free for another request
        event(f"refused {op}: {error.__name__}")
        return raised.value

    def _submit(
        self,
        op: str,
        kwargs: dict[str, Any],
        changes: list[tuple[str, Totals]],
        *,
        reuse_refused_key: bool = False,
    ) -> Call | None:
        """Make a call the model expects to go through unless it breaks a limit."""
        key = self._key(reuse_refused_key)
        broken = self._limits_broken(changes)
        if broken:
            error = self._expect_refused(op, key, kwargs, LimitExceeded)
            assert error.account_code in {self.accounts[name].code for name in broken}
            assert error.requested > error.available
            return None
        result = self._call(op, key, kwargs)
        for name, change in changes:
            self.balances[name] = self.balances[name] + change
        self.keys_recorded += 1
        event(f"done {op}")
        return Call(op, key, kwargs, result.pk)

    # --- postings -----------------------------------------------------------------------------

    @rule(
        targets=(transactions, calls),
        pair=same_ledger_pairs,
        amount=amounts,
        reuse_refused_key=st.booleans(),
    )
    def transfer(self, pair, amount, reuse_refused_key):
        debit, credit = pair
        amount = self._amount(amount, debit, credit)
        kwargs = {"debit": self.accounts[debit], "credit": self.accounts[credit], "amount": amount}
        legs = ((debit, amount), (credit, -amount))
        call = self._submit(
            "transfer",
            kwargs,
            [(name, posting(leg)) for name, leg in legs],
            reuse_refused_key=reuse_refused_key,
        )
        if call is None:
            return multiple()
        self.model_transactions[call.result_id] = ModelTransaction("transfer", legs)
        return call

    @rule(
        targets=(transactions, calls),
        transfers=st.lists(st.tuples(same_ledger_pairs, amounts), min_size=1, max_size=4),
        linked=st.booleans(),
    )
    def transfer_batch(self, transfers, linked):
        """``transfers_post``: the model applies the transfers in order; unlinked, one that
        would break a limit is refused alone, linked, it refuses them all."""
        requests, legs_of, fits = [], [], []
        saved = dict(self.balances)
        for (debit, credit), amount in transfers:
            amount = self._amount(amount, debit, credit)
            requests.append(
                services.TransferRequest(
                    key=self._key(),
                    debit=self.accounts[debit],
                    credit=self.accounts[credit],
                    amount=amount,
                )
            )
            legs = ((debit, amount), (credit, -amount))
            changes = [(name, posting(leg)) for name, leg in legs]
            legs_of.append(legs)
            fits.append(not self._limits_broken(changes))
            if fits[-1]:
                for name, change in changes:
                    self.balances[name] = self.balances[name] + change
        if linked and not all(fits):
            self.balances = saved
            before = self._snapshot()
            with pytest.raises(LimitExceeded), transaction.atomic():
                services.transfers_post(requests, linked=True)
            assert self._snapshot() == before
            event("refused linked batch")
            return multiple()
        with transaction.atomic():
            results = services.transfers_post(requests, linked=linked)
        calls = []
        for request, fit, legs, result in zip(requests, fits, legs_of, results, strict=True):
            if not fit:
                assert isinstance(result, LimitExceeded), result
                assert not IdempotencyRecord.objects.filter(key=request.key).exists()
                self.refused_keys.append(request.key)
                continue
            assert isinstance(result, Transaction), result
            self.model_transactions[result.pk] = ModelTransaction("transfer", legs)
            self.keys_recorded += 1
            kwargs = {"debit": request.debit, "credit": request.credit, "amount": request.amount}
            calls.append(Call("transfer", request.key, kwargs, result.pk))
        event(f"batch of {len(requests)}, {len(calls)} posted")
        return multiple(*calls)

    @rule(
        targets=(holds, open_holds, calls),
        pair=same_ledger_pairs,
        amount=amounts,
        expiry=st.sampled_from([None, "overdue", "later"]),
        reuse_refused_key=st.booleans(),
    )
    def create_hold(self, pair, amount, expiry, reuse_refused_key):
        debit, credit = pair
        amount = self._amount(amount, debit, credit)
        expires_at = {
            None: None,
            "overdue": timezone.now() - timedelta(minutes=5),
            "later": timezone.now() + timedelta(days=1),
        }[expiry]
        kwargs = {
            "debit": self.accounts[debit],
            "credit": self.accounts[credit],
            "amount": amount,
            "expires_at": expires_at,
        }
        changes = [
            (debit, Totals(debits_pending=amount)),
            (credit, Totals(credits_pending=amount)),
        ]
        call = self._submit("hold_create", kwargs, changes, reuse_refused_key=reuse_refused_key)
        if call is None:
            return multiple()
        self.model_holds[call.result_id] = ModelHold(
            debit, credit, amount, overdue=expiry == "overdue"
        )
        return call

    @rule(targets=(transactions, calls), hold=consumes(open_holds), portion=portions, cut=cuts)
    def post_hold(self, hold, portion, cut):
        return self._post_hold(hold, portion, cut) or multiple()

    @rule(target=calls, hold=consumes(open_holds))
    def void_hold(self, hold):
        return self._void_hold(hold) or multiple()

    @rule(hold=holds, void=st.booleans(), portion=portions, cut=cuts)
    def post_or_void_any_hold_again(self, hold, void, portion, cut):
        """Most of these holds are resolved already, so these calls are mostly refused."""
        if void:
            self._void_hold(hold)
        else:
            self._post_hold(hold, portion, cut)

    def _hold_refusal(self, hold: ModelHold, *, posting: bool) -> type[HoldNotPending] | None:
        if hold.status != Hold.Status.PENDING:
            return HoldNotPending
        if posting and hold.overdue:
            return HoldExpired
        return None

    def _release(self, hold: ModelHold) -> list[tuple[str, Totals]]:
        return [
            (hold.debit, Totals(debits_pending=-hold.amount)),
            (hold.credit, Totals(credits_pending=-hold.amount)),
        ]

    def _post_hold(self, hold: Call, portion: str, cut: int) -> Call | None:
        model = self.model_holds[hold.result_id]
        amount = {
            "unstated": None,
            "full": model.amount,
            "part": max(1, model.amount - cut),
            "over": model.amount + 1,
        }[portion]
        kwargs = {"hold_id": hold.result_id, "amount": amount}
        refusal = self._hold_refusal(model, posting=True)
        if refusal is None and portion == "over":
            refusal = InvalidPosting
        if refusal is not None:
            error = self._expect_refused("hold_post", self._key(), kwargs, refusal)
            if refusal is HoldExpired:
                assert error.hold_status == "expired"
            elif refusal is HoldNotPending:
                assert error.hold_status == model.status
            return None
        posted = model.amount if amount is None else amount
        legs = ((model.debit, posted), (model.credit, -posted))
        changes = self._release(model) + [(name, posting(leg)) for name, leg in legs]
        call = self._submit("hold_post", kwargs, changes)
        if call is None:
            return None
        model.status = Hold.Status.POSTED
        self.model_transactions[call.result_id] = ModelTransaction(
            "hold_post", legs, hold=hold.result_id
        )
        return call

    def _void_hold(self, hold: Call) -> Call | None:
        model = self.model_holds[hold.result_id]
        kwargs = {"hold_id": hold.result_id}
        if self._hold_refusal(model, posting=False) is not None:
            error = self._expect_refused("hold_void", self._key(), kwargs, HoldNotPending)
            assert error.hold_status == model.status
            return None
        call = self._submit("hold_void", kwargs, self._release(model))
        assert call is not None  # releasing a reservation never breaks a limit
        assert call.result_id == hold.result_id
        model.status = Hold.Status.VOIDED
        return call

    def _overdue_holds(self) -> list[ModelHold]:
        return [
            hold
            for hold in self.model_holds.values()
            if hold.status == Hold.Status.PENDING and hold.overdue
        ]

    @precondition(lambda self: self._overdue_holds())
    @rule()
    def expire_overdue_holds(self):
        due = self._overdue_holds()
        assert services.holds_void_expired() == len(due)
        for hold in due:
            hold.status = Hold.Status.EXPIRED
            for name, change in self._release(hold):
                self.balances[name] = self.balances[name] + change

    @rule(targets=(transactions, calls), original=transactions)
    def reverse(self, original):
        model = self.model_transactions[original.result_id]
        kwargs = {"transaction_id": original.result_id}
        if model.kind == Transaction.Kind.REVERSAL:
            self._expect_refused("transaction_reverse", self._key(), kwargs, NotReversible)
            return multiple()
        if model.reversed:
            self._expect_refused("transaction_reverse", self._key(), kwargs, AlreadyReversed)
            return multiple()
        legs = tuple((name, -amount) for name, amount in model.legs)
        call = self._submit(
            "transaction_reverse", kwargs, [(name, posting(leg)) for name, leg in legs]
        )
        if call is None:
            return multiple()
        model.reversed = True
        self.model_transactions[call.result_id] = ModelTransaction(
            "reversal", legs, reverses=original.result_id
        )
        return call

    @rule(
        request=st.sampled_from(
            ["cross-ledger transfer", "cross-ledger hold", "unknown transaction", "unknown hold"]
        ),
        pair=cross_ledger_pairs,
        amount=st.integers(1, 10**6),
    )
    def make_a_request_that_cannot_be_posted(self, request, pair, amount):
        debit, credit = pair
        kwargs: dict[str, Any] = {
            "debit": self.accounts[debit],
            "credit": self.accounts[credit],
            "amount": amount,
        }
        if request == "cross-ledger transfer":
            self._expect_refused("transfer", self._key(), kwargs, CrossLedgerTransfer)
        elif request == "cross-ledger hold":
            self._expect_refused("hold_create", self._key(), kwargs, CrossLedgerTransfer)
        elif request == "unknown transaction":
            kwargs = {"transaction_id": uuid4()}
            self._expect_refused("transaction_reverse", self._key(), kwargs, NotReversible)
        else:
            kwargs = {"hold_id": uuid4()}
            self._expect_refused("hold_post", self._key(), kwargs, InvalidPosting)
            self._expect_refused("hold_void", self._key(), kwargs, InvalidPosting)

    # --- idempotency --------------------------------------------------------------------------

    @rule(call=calls)
    def replay(self, call):
        before = self._snapshot()
        result = self._call(call.op, call.key, call.kwargs)
        assert result.pk == call.result_id
        assert self._snapshot() == before
        event(f"replayed {call.op}")

    @rule(call=calls, other_operation=st.booleans())
    def reuse_a_key_for_another_request(self, call, other_operation):
        if other_operation:
            op = "transfer"
            kwargs = {
                "debit": self.accounts["bank"],
                "credit": self.accounts["patient"],
                "amount": 1,
                "description": "another request",
            }
        else:
            op, kwargs = call.op, dict(call.kwargs)
            if op in ("transfer", "hold_create"):
                kwargs["amount"] += 1
            elif op == "hold_post":
                kwargs["amount"] = 1 if kwargs["amount"] is None else None
            elif op == "hold_void":
                kwargs["hold_id"] = uuid4()
            else:
                kwargs["reference"] = "another request"
        error = self._expect_refused(op, call.key, kwargs, IdempotencyConflict)
        assert error.key == call.key

    # --- the rest of the world ----------------------------------------------------------------

    @rule(seed=st.integers(0, 7))
    def post_from_another_connection(self, seed):
        """Later postings to the house account land on another of its four balance slots."""
        services._slot_seed.value = seed

    @precondition(lambda self: self.sealed < len(self.model_transactions))
    @rule()
    def seal_the_chain(self):
        with transaction.atomic():
            sealed = services.chain_seal()
        assert sealed == len(self.model_transactions) - self.sealed
        self.sealed += sealed
        report = verify_ledger()
        assert report.intact, report.problems
        assert report.links == self.sealed

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def books_are_consistent_and_match_the_model(self):
        books = Books.read(self.accounts.values())
        self._check_every_transaction_and_ledger_sums_to_zero(books)
        self._check_stored_balances_equal_entries_and_pending_holds(books)
        self._check_limited_accounts_stay_within_their_limits(books)
        self._check_database_matches_the_model(books)
        self._check_deferred_database_constraints()

    def _check_every_transaction_and_ledger_sums_to_zero(self, books: "Books") -> None:
        legs: Counter[UUID] = Counter()
        per_transaction: Counter[UUID] = Counter()
        per_ledger: Counter[str] = Counter()
        for txn_id, txn_ledger, _, account_ledger, amount in books.entries:
            assert account_ledger == txn_ledger, f"transaction {txn_id} crosses ledgers"
            legs[txn_id] += 1
            per_transaction[txn_id] += amount
            per_ledger[txn_ledger] += amount
        for txn_id in books.transactions:
            assert legs[txn_id] >= 2, f"transaction {txn_id} has {legs[txn_id]} entries"
            total = per_transaction[txn_id]
            assert total == 0, f"transaction {txn_id} sums to {total}"
        assert set(per_transaction) <= set(books.transactions)
        assert all(total == 0 for total in per_ledger.values()), per_ledger

    def _check_stored_balances_equal_entries_and_pending_holds(self, books: "Books") -> None:
        expected = {account.pk: Totals() for account in self.accounts.values()}
        for _, _, account_id, _, amount in books.entries:
            expected[account_id] = expected[account_id] + posting(amount)
        for debit_id, credit_id, amount, status in books.holds.values():
            if status == Hold.Status.PENDING:
                expected[debit_id] = expected[debit_id] + Totals(debits_pending=amount)
                expected[credit_id] = expected[credit_id] + Totals(credits_pending=amount)
        for name, account in self.accounts.items():
            assert _totals(books.balances[account.pk]) == expected[account.pk], name

    def _check_limited_accounts_stay_within_their_limits(self, books: "Books") -> None:
        for name, account in self.accounts.items():
            balance = books.balances[account.pk]
            if account.debits_must_not_exceed_credits:
                assert balance.debits_posted + balance.debits_pending <= balance.credits_posted
            if account.credits_must_not_exceed_debits:
                assert balance.credits_posted + balance.credits_pending <= balance.debits_posted
            assert (balance.available is None) == (ACCOUNTS[name].limit is None), name
            assert balance.available is None or balance.available >= 0, name

    def _check_database_matches_the_model(self, books: "Books") -> None:
        for name, account in self.accounts.items():
            assert _totals(books.balances[account.pk]) == self.balances[name], name
        names = {account.pk: name for name, account in self.accounts.items()}
        assert {
            hold_id: (names[debit_id], names[credit_id], amount, status)
            for hold_id, (debit_id, credit_id, amount, status) in books.holds.items()
        } == {
            hold_id: (hold.debit, hold.credit, hold.amount, hold.status)
            for hold_id, hold in self.model_holds.items()
        }
        assert books.transactions == {
            txn_id: (txn.kind, txn.hold, txn.reverses)
            for txn_id, txn in self.model_transactions.items()
        }
        assert Counter(
            (txn_id, names[account_id], amount)
            for txn_id, _, account_id, _, amount in books.entries
        ) == Counter(
            (txn_id, name, amount)
            for txn_id, txn in self.model_transactions.items()
            for name, amount in txn.legs
        )
        assert books.idempotency_keys == self.keys_recorded

    def _check_deferred_database_constraints(self) -> None:
        """PostgreSQL's commit-time triggers (balanced, one ledger) and deferred foreign keys."""
        with transaction.atomic():
            connection.check_constraints()


@dataclass
class Books:
    """What the database holds, read in a handful of queries."""

    entries: list[tuple[UUID, str, int, str, int]]
    transactions: dict[UUID, tuple[str, UUID | None, UUID | None]]
    holds: dict[UUID, tuple[int, int, int, str]]
    balances: dict[int, selectors.Balance]
    idempotency_keys: int

    @classmethod
    def read(cls, accounts: Iterable[Account]) -> "Books":
        return cls(
            entries=list(
                Entry.objects.values_list(
                    "transaction_id",
                    "transaction__ledger",
                    "account_id",
                    "account__ledger",
                    "amount",
                )
            ),
            transactions={
                txn_id: (kind, hold_id, reverses_id)
                for txn_id, kind, hold_id, reverses_id in Transaction.objects.values_list(
                    "id", "kind", "hold_id", "reverses_id"
                )
            },
            holds={
                hold_id: (debit_id, credit_id, amount, status)
                for hold_id, debit_id, credit_id, amount, status in Hold.objects.values_list(
                    "id", "debit_account_id", "credit_account_id", "amount", "status"
                )
            },
            balances=selectors.account_balances(accounts),
            idempotency_keys=IdempotencyRecord.objects.count(),
        )


@pytest.mark.django_db
def test_random_operation_sequences_keep_the_ledger_balanced_and_match_a_model():
    run_state_machine_as_test(LedgerMachine, settings=PROPERTY_SETTINGS)
