"""The ledger's posting service: the only code that writes ledger rows.

Every posting call takes an idempotency ``key``. The first call with a key records a hash of
its request and the id of what it produces, in the same database transaction as the postings;
a later call with the same key and the same request returns that result and writes nothing,
and one with a different request raises ``IdempotencyConflict``. Two concurrent calls with one
key are serialised by the key's primary-key index: the second waits for the first to commit.

The services join the caller's database transaction, so a use case such as a settlement posts
several transactions atomically. Inside a caller's transaction each call runs in a savepoint: a
refused posting writes nothing and leaves the caller free to go on (say, to try another funding
source) or to roll back.
"""

import hashlib
import json
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Expression, F, Value
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from django.utils.translation import gettext_lazy

from . import chain
from .exceptions import (
    AlreadyReversed,
    CrossLedgerTransfer,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InvalidPosting,
    LedgerError,
    LimitExceeded,
    NotReversible,
)
from .ids import uuid7
from .models import (
    Account,
    BalanceSlot,
    ChainHead,
    ChainLink,
    ChainQueue,
    Entry,
    Hold,
    IdempotencyRecord,
    Ledger,
    Side,
    Transaction,
)

MAX_KEY_LENGTH = 200
# Far beyond any hospital bill (10^15 fen); keeps sums well inside a bigint.
MAX_AMOUNT = 10**15


@dataclass(frozen=True)
class Leg:
    """One side of a posting: ``amount`` fen, positive to debit, negative to credit."""

    account: Account
    amount: int

    @classmethod
    def debit(cls, account: Account, amount: int) -> "Leg":
        _check_amount(amount)
        return cls(account, amount)

    @classmethod
    def credit(cls, account: Account, amount: int) -> "Leg":
        _check_amount(amount)
        return cls(account, -amount)


@dataclass
class _Delta:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0


# --- accounts ---------------------------------------------------------------------------------


@transaction.atomic
def account_create(
    *,
    code: str,
    ledger: str,
    normal_side: str,
    name: str = "",
    debits_must_not_exceed_credits: bool = False,
    credits_must_not_exceed_debits: bool = False,
    balance_slots: int = 1,
) -> Account:
    """Create an account and its balance slots, or return the existing one with this code.

    Asking again for a code with a different definition raises ``InvalidPosting``.
    """
    if ledger not in Ledger.values or normal_side not in Side.values:
        raise InvalidPosting(
            gettext_lazy("unknown ledger %(ledger)s or side %(side)s"),
            params={"ledger": repr(ledger), "side": repr(normal_side)},
        )
    if debits_must_not_exceed_credits and credits_must_not_exceed_debits:
        raise InvalidPosting(gettext_lazy("an account takes at most one limit flag"))
    if debits_must_not_exceed_credits or credits_must_not_exceed_debits:
        balance_slots = 1
    if not 1 <= balance_slots <= 64:
        raise InvalidPosting(gettext_lazy("balance_slots must be between 1 and 64"))
    definition = {
        "ledger": ledger,
        "normal_side": normal_side,
        "debits_must_not_exceed_credits": debits_must_not_exceed_credits,
        "credits_must_not_exceed_debits": credits_must_not_exceed_debits,
        "balance_slots": balance_slots,
    }
    account, created = Account.objects.get_or_create(
        code=code, defaults={"name": name, **definition}
    )
    if not created:
        if any(getattr(account, field) != value for field, value in definition.items()):
            raise InvalidPosting(
                gettext_lazy("account %(code)s exists with a different definition"),
                params={"code": code},
            )
        return account
    BalanceSlot.objects.bulk_create(
        BalanceSlot(
            account=account,
            slot=slot,
            debits_must_not_exceed_credits=debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=credits_must_not_exceed_debits,
        )
        for slot in range(balance_slots)
    )
    return account


# --- postings ---------------------------------------------------------------------------------


@transaction.atomic
def transaction_post(
    *, key: str, legs: Sequence[Leg], reference: str = "", description: str = ""
) -> Transaction:
    """Post a journal transaction of two or more legs summing to zero, all on one ledger."""
    ledger = _check_legs(legs)
    request = _request_hash(
        "transaction_post",
        legs=sorted((leg.account.pk, leg.amount) for leg in legs),
        reference=reference,
        description=description,
    )
    txn_id = uuid7()
    earlier = _claim(key, request, "transaction", txn_id)
    if earlier is not None:
        return Transaction.objects.get(pk=earlier.result_id)
    return _post(
        txn_id=txn_id,
        ledger=ledger,
        kind=Transaction.Kind.TRANSFER,
        legs=legs,
        reference=reference,
        description=description,
    )


def transfer(
    *,
    key: str,
    debit: Account,
    credit: Account,
    amount: int,
    reference: str = "",
    description: str = "",
) -> Transaction:
    """Post a two-leg transfer of ``amount`` fen from ``credit`` to ``debit``."""
    return transaction_post(
        key=key,
        legs=[Leg.debit(debit, amount), Leg.credit(credit, amount)],
        reference=reference,
        description=description,
    )


@transaction.atomic
def transaction_reverse(
    *, key: str, transaction_id: UUID, reference: str = "", description: str = ""
) -> Transaction:
    """Post the mirror image of a transaction, pointing at it. A transaction is reversed once."""
    request = _request_hash(
        "transaction_reverse",
        transaction=str(transaction_id),
        reference=reference,
        description=description,
    )
    txn_id = uuid7()
    earlier = _claim(key, request, "transaction", txn_id)
    if earlier is not None:
        return Transaction.objects.get(pk=earlier.result_id)
    # The row lock makes a concurrent reversal of the same transaction wait, then see this one.
    original = Transaction.objects.select_for_update().filter(pk=transaction_id).first()
    if original is None:
        raise NotReversible(
            gettext_lazy("transaction %(id)s does not exist"), params={"id": transaction_id}
        )
    if original.kind == Transaction.Kind.REVERSAL:
        raise NotReversible(
            gettext_lazy("transaction %(id)s is itself a reversal"), params={"id": transaction_id}
        )
    if Transaction.objects.filter(reverses=original).exists():
        raise AlreadyReversed(
            gettext_lazy("transaction %(id)s is already reversed"), params={"id": transaction_id}
        )
    legs = [
        Leg(entry.account, -entry.amount)
        for entry in original.entries.select_related("account").order_by("id")
    ]
    return _post(
        txn_id=txn_id,
        ledger=original.ledger,
        kind=Transaction.Kind.REVERSAL,
        legs=legs,
        reverses=original,
        reference=reference or original.reference,
        description=description or f"reversal of {original.id}",
    )


# --- two-phase transfers ----------------------------------------------------------------------


@transaction.atomic
def hold_create(
    *,
    key: str,
    debit: Account,
    credit: Account,
    amount: int,
    expires_at: datetime | None = None,
    reference: str = "",
) -> Hold:
    """Reserve ``amount`` fen as pending on both accounts; limits count pending debits."""
    _check_amount(amount)
    ledger = _check_legs([Leg(debit, amount), Leg(credit, -amount)])
    request = _request_hash(
        "hold_create",
        debit=debit.pk,
        credit=credit.pk,
        amount=amount,
        expires_at=expires_at.isoformat() if expires_at else None,
        reference=reference,
    )
    hold_id = uuid7()
    earlier = _claim(key, request, "hold", hold_id)
    if earlier is not None:
        return Hold.objects.get(pk=earlier.result_id)
    _apply_balances(
        {
            debit.pk: (debit, _Delta(debits_pending=amount)),
            credit.pk: (credit, _Delta(credits_pending=amount)),
        }
    )
    return Hold.objects.create(
        id=hold_id,
        ledger=ledger,
        debit_account=debit,
        credit_account=credit,
        amount=amount,
        expires_at=expires_at,
        reference=reference,
    )


@transaction.atomic
def hold_post(*, key: str, hold_id: UUID, amount: int | None = None) -> Transaction:
    """Post a pending hold for its full amount or less; the rest of the reservation is freed."""
    if amount is not None:
        _check_amount(amount)
    request = _request_hash("hold_post", hold=str(hold_id), amount=amount)
    txn_id = uuid7()
    earlier = _claim(key, request, "transaction", txn_id)
    if earlier is not None:
        return Transaction.objects.get(pk=earlier.result_id)
    hold, now = _lock_pending_hold(hold_id)
    if hold.expires_at is not None and hold.expires_at <= now:
        raise HoldExpired(hold_id)
    posted = hold.amount if amount is None else amount
    if posted > hold.amount:
        raise InvalidPosting(
            gettext_lazy("cannot post %(posted)s fen of a %(held)s fen hold"),
            params={"posted": posted, "held": hold.amount},
        )
    Hold.objects.filter(pk=hold.pk).update(status=Hold.Status.POSTED, resolved_at=now)
    return _post(
        txn_id=txn_id,
        ledger=hold.ledger,
        kind=Transaction.Kind.HOLD_POST,
        legs=[Leg(hold.debit_account, posted), Leg(hold.credit_account, -posted)],
        hold=hold,
        reference=hold.reference,
        released=hold,
    )


@transaction.atomic
def hold_void(*, key: str, hold_id: UUID) -> Hold:
    """Release a pending hold without posting anything."""
    request = _request_hash("hold_void", hold=str(hold_id))
    earlier = _claim(key, request, "hold", hold_id)
    if earlier is not None:
        return Hold.objects.get(pk=earlier.result_id)
    return _release(hold_id, Hold.Status.VOIDED)


def holds_void_expired(*, now: datetime | None = None, batch: int = 500) -> int:
    """Mark pending holds past their expiry as expired, each in its own transaction."""
    now = now or timezone.now()
    due = list(
        Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:batch]
    )
    expired = 0
    for hold_id in due:
        try:
            with transaction.atomic():
                _release(hold_id, Hold.Status.EXPIRED)
        except HoldNotPending:
            continue  # posted or voided since the list was read
        expired += 1
    return expired


def _lock_pending_hold(hold_id: UUID) -> tuple[Hold, datetime]:
    hold = (
        Hold.objects.select_for_update(of=("self",))
        .select_related("debit_account", "credit_account")
        .filter(pk=hold_id)
        .first()
    )
    if hold is None:
        raise InvalidPosting(gettext_lazy("hold %(hold)s does not exist"), params={"hold": hold_id})
    if hold.status != Hold.Status.PENDING:
        raise HoldNotPending(hold_id, hold.status)
    return hold, timezone.now()


def _release(hold_id: UUID, status: str) -> Hold:
    hold, now = _lock_pending_hold(hold_id)
    Hold.objects.filter(pk=hold.pk).update(status=status, resolved_at=now)
    _apply_balances(_release_deltas(hold))
    hold.status, hold.resolved_at = status, now
    return hold


def _release_deltas(hold: Hold) -> dict[int, tuple[Account, _Delta]]:
    return {
        hold.debit_account_id: (hold.debit_account, _Delta(debits_pending=-hold.amount)),
        hold.credit_account_id: (hold.credit_account, _Delta(credits_pending=-hold.amount)),
    }


# --- the hash chain ---------------------------------------------------------------------------


def chain_seal(*, batch: int = 5000, wait: bool = True) -> int:
    """Link every committed, not yet chained transaction into its ledger's hash chain.

    Postings queue themselves (``ChainQueue``) and seal right after they commit; the beat task
    seals whatever is left. Sealers exclude each other with the head's row lock, which no
    posting takes. With ``wait=False`` (the after-commit path) a sealer that finds another at
    work leaves the queue to it or to the next seal, so postings never queue behind the chain;
    a transaction therefore joins the chain within a beat interval at the latest.
    """
    sealed = 0
    for ledger in Ledger.values:
        while ChainQueue.objects.filter(ledger=ledger).exists():
            with transaction.atomic():
                head = _lock_chain_head(ledger, wait=wait)
                if head is None:
                    break  # another sealer is at work on this ledger
                queued = list(
                    ChainQueue.objects.filter(ledger=ledger)
                    .order_by("created_at", "transaction_id")
                    .values_list("transaction_id", flat=True)[:batch]
                )
                pending = list(
                    Transaction.objects.filter(pk__in=queued).order_by("created_at", "id")
                )
                entries: dict[UUID, list[tuple[int, int]]] = {txn.pk: [] for txn in pending}
                for txn_id, account_id, amount in Entry.objects.filter(
                    transaction_id__in=entries
                ).values_list("transaction_id", "account_id", "amount"):
                    entries[txn_id].append((account_id, amount))
                links = []
                for txn in pending:
                    head.seq += 1
                    content = chain.transaction_bytes(txn, entries[txn.pk])
                    head.hash = chain.link_hash(head.hash, content)
                    links.append(
                        ChainLink(ledger=ledger, seq=head.seq, transaction=txn, hash=head.hash)
                    )
                ChainLink.objects.bulk_create(links)
                ChainQueue.objects.filter(transaction_id__in=queued).delete()
                head.save(update_fields=["seq", "hash"])
                sealed += len(links)
            if len(queued) < batch:
                break
    return sealed


def _lock_chain_head(ledger: str, *, wait: bool) -> ChainHead | None:
    heads = ChainHead.objects.select_for_update(skip_locked=not wait).filter(ledger=ledger)
    head = heads.first()
    if head is None and not ChainHead.objects.filter(ledger=ledger).exists():
        ChainHead.objects.get_or_create(ledger=ledger)  # the ledger's first seal
        head = heads.first()
    return head


def _seal_after_commit() -> None:
    chain_seal(wait=False)


def _seal_once_after_commit() -> None:
    """Register one seal for the current transaction, however many postings it makes.

    Django drops the callbacks of a rolled-back transaction or savepoint, so a later posting
    registers again when needed.
    """
    if not any(item[1] is _seal_after_commit for item in connection.run_on_commit):
        transaction.on_commit(_seal_after_commit, robust=True)


# --- internals --------------------------------------------------------------------------------


def _post(
    *,
    txn_id: UUID,
    ledger: str,
    kind: str,
    legs: Sequence[Leg],
    reference: str = "",
    description: str = "",
    hold: Hold | None = None,
    reverses: Transaction | None = None,
    released: Hold | None = None,
) -> Transaction:
    _check_legs(legs)
    deltas = _release_deltas(released) if released is not None else {}
    for leg in legs:
        _, delta = deltas.setdefault(leg.account.pk, (leg.account, _Delta()))
        if leg.amount > 0:
            delta.debits_posted += leg.amount
        else:
            delta.credits_posted -= leg.amount
    _apply_balances(deltas)
    txn = Transaction(
        id=txn_id,
        ledger=ledger,
        kind=kind,
        hold=hold,
        reverses=reverses,
        reference=reference,
        description=description,
    )
    txn.save(force_insert=True)
    Entry.objects.bulk_create(
        Entry(transaction=txn, account=leg.account, amount=leg.amount) for leg in legs
    )
    ChainQueue.objects.create(transaction=txn, ledger=ledger, created_at=txn.created_at)
    _seal_once_after_commit()
    return txn


def _apply_balances(deltas: dict[int, tuple[Account, _Delta]]) -> None:
    """Add each delta to one balance slot of its account, in account order (no deadlocks).

    For an account with a limit the UPDATE carries the limit as its condition; PostgreSQL
    re-checks the condition on the latest row version after waiting for another writer, so
    the check and the write are one atomic step.
    """
    for account_id in sorted(deltas):
        account, delta = deltas[account_id]
        rows = BalanceSlot.objects.filter(account_id=account_id, slot=_slot_for(account))
        condition, requested = _limit_condition(account, delta)
        if condition is not None:
            rows = rows.filter(condition)
        changes = {
            field: F(field) + value
            for field, value in vars(delta).items()
            if value  # only the counters this posting moves
        }
        if not changes:
            continue
        if rows.update(**changes) == 1:
            continue
        if condition is not None:
            raise LimitExceeded(account.code, _available(account), requested)
        raise LedgerError(  # pragma: no cover
            gettext_lazy("account %(code)s has no balance slot"), params={"code": account.code}
        )


def _limit_condition(account: Account, delta: _Delta) -> tuple[LessThanOrEqual | None, int]:
    if account.debits_must_not_exceed_credits:
        asked = delta.debits_posted + delta.debits_pending
        used: Expression = F("debits_posted") + F("debits_pending") + Value(asked)
        return LessThanOrEqual(used, F("credits_posted") + Value(delta.credits_posted)), asked
    if account.credits_must_not_exceed_debits:
        asked = delta.credits_posted + delta.credits_pending
        used = F("credits_posted") + F("credits_pending") + Value(asked)
        return LessThanOrEqual(used, F("debits_posted") + Value(delta.debits_posted)), asked
    return None, 0


def _available(account: Account) -> int:
    row = BalanceSlot.objects.get(account=account, slot=0)
    if account.debits_must_not_exceed_credits:
        return row.credits_posted - row.debits_posted - row.debits_pending
    return row.debits_posted - row.credits_posted - row.credits_pending


_slot_seed = threading.local()


def _slot_for(account: Account) -> int:
    """The balance slot this thread writes for a multi-slot account.

    Fixed per thread (each thread has its own connection), so one database transaction posting
    to a hot account twice touches one row, while other threads and processes, with their own
    random seeds, mostly land on other rows.
    """
    if account.balance_slots == 1:
        return 0
    seed = getattr(_slot_seed, "value", None)
    if seed is None:
        seed = _slot_seed.value = random.randrange(1 << 30)  # noqa: S311 - load spreading
    return int(seed) % account.balance_slots


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidPosting(
            gettext_lazy("amount must be an integer number of fen, not %(amount)s"),
            params={"amount": repr(amount)},
        )
    if not 0 < amount <= MAX_AMOUNT:
        raise InvalidPosting(
            gettext_lazy("amount must be between 1 and %(max)s fen, not %(amount)s"),
            params={"max": MAX_AMOUNT, "amount": amount},
        )


def _check_legs(legs: Sequence[Leg]) -> str:
    """Refuse what the database would refuse at commit, so SQLite refuses it too."""
    if len(legs) < 2:
        raise InvalidPosting(gettext_lazy("a transaction needs at least two legs"))
    for leg in legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int) or leg.amount == 0:
            raise InvalidPosting(
                gettext_lazy("leg amount must be a non-zero integer of fen: %(amount)s"),
                params={"amount": repr(leg.amount)},
            )
        if abs(leg.amount) > MAX_AMOUNT:
            raise InvalidPosting(
                gettext_lazy("leg amount exceeds %(max)s fen"), params={"max": MAX_AMOUNT}
            )
        if leg.account.pk is None:
            raise InvalidPosting(gettext_lazy("leg account is not saved"))
    if len({leg.account.pk for leg in legs}) < 2:
        raise InvalidPosting(
            gettext_lazy("a transaction moves money between at least two accounts")
        )
    total = sum(leg.amount for leg in legs)
    if total != 0:
        raise InvalidPosting(
            gettext_lazy("legs sum to %(total)s fen, not zero"), params={"total": total}
        )
    ledgers = {leg.account.ledger for leg in legs}
    if len(ledgers) != 1:
        raise CrossLedgerTransfer(
            gettext_lazy("a transaction cannot cross ledgers: %(ledgers)s"),
            params={"ledgers": sorted(ledgers)},
        )
    return ledgers.pop()


def _request_hash(operation: str, **request: Any) -> str:
    payload = json.dumps({"op": operation, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


# Double-quoted identifiers read the same on PostgreSQL and SQLite; values are parameters.
_CLAIM_SQL = (
    'INSERT INTO "ledger_idempotencyrecord" ("key", "request_hash", "result_type", "result_id",'
    ' "created_at") VALUES (%s, %s, %s, %s, %s) ON CONFLICT ("key") DO NOTHING RETURNING "key"'
)


def _claim(
    key: str, request_hash: str, result_type: str, result_id: UUID
) -> IdempotencyRecord | None:
    """Record ``key`` for this request; return the earlier record if the key was used before.

    ``INSERT ... ON CONFLICT DO NOTHING`` waits for a concurrent, uncommitted claim of the same
    key, so the earlier record is always visible once this returns.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidPosting(
            gettext_lazy("an idempotency key of 1 to %(max)s characters is needed"),
            params={"max": MAX_KEY_LENGTH},
        )
    meta = IdempotencyRecord._meta
    params = [
        key,
        request_hash,
        result_type,
        meta.get_field("result_id").get_db_prep_value(result_id, connection),
        meta.get_field("created_at").get_db_prep_value(timezone.now(), connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        if cursor.fetchone() is not None:
            return None
    earlier = IdempotencyRecord.objects.get(key=key)
    if earlier.request_hash != request_hash or earlier.result_type != result_type:
        raise IdempotencyConflict(key)
    return earlier
