"""The double-entry ledger: accounts, journal transactions, entries, holds and the hash chain.

Amounts are integer fen. An entry's ``amount`` is signed: positive is a debit, negative a credit,
so a balanced transaction's entries sum to zero. Rows here are written only by
``ledger.services``; PostgreSQL triggers (installed by django-pgtrigger migrations) refuse an
unbalanced transaction at commit and any UPDATE or DELETE of what has been posted.
"""

import pgtrigger
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .ids import uuid7

GENESIS_HASH = "0" * 64

# Deferred constraint check run at COMMIT, once per new journal transaction: it has as many
# entries as it says (``legs``, at least two) and they sum to zero. It reads the entries by the
# (transaction, leg) index and joins nothing. What the trigger does not re-check per entry the
# schema holds: an entry's leg is unique in its transaction and below its ``legs``, so once the
# count matched at commit no entry can be added later; and composite foreign keys (installed
# by migration 0004 on PostgreSQL) tie the entry's ``ledger`` and ``legs`` to its transaction's
# and its ``ledger`` to its account's, so no entry crosses ledgers.
BALANCED_FUNC = """
DECLARE
    total numeric;
    n integer;
BEGIN
    SELECT COALESCE(SUM(e.amount), 0), COUNT(*)
      INTO total, n
      FROM ledger_entry e
     WHERE e.transaction_id = NEW.id;
    IF n < 2 OR n <> NEW.legs OR total <> 0 THEN
        RAISE EXCEPTION 'ledger: transaction % is unbalanced (% of % entries, sum %)',
            NEW.id, n, NEW.legs, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
"""


def _append_only(model: str) -> pgtrigger.Protect:
    return pgtrigger.Protect(
        name=f"{model}_append_only",
        operation=pgtrigger.Update | pgtrigger.Delete,
    )


def _balanced_at_commit(model: str) -> pgtrigger.Trigger:
    return pgtrigger.Trigger(
        name=f"{model}_balanced",
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        timing=pgtrigger.Deferred,
        func=BALANCED_FUNC,
    )


class Ledger(models.TextChoices):
    MONEY = "money", "money"
    CREDIT = "credit", "credit"


class Side(models.TextChoices):
    DEBIT = "debit", "debit"
    CREDIT = "credit", "credit"


class Account(models.Model):
    """A ledger account. ``code`` is an opaque, unique name given by the caller.

    The limit flags follow TigerBeetle: with ``debits_must_not_exceed_credits`` the posted and
    pending debits together never exceed the posted credits (a credit line's capacity), and the
    mirror for ``credits_must_not_exceed_debits``.

    ``balance_slots`` spreads a busy house account's stored balance over several rows; see
    ``BalanceSlot``. An account with a limit always has exactly one slot, which postings lock.
    """

    code = models.CharField(max_length=160, unique=True)
    name = models.CharField(max_length=200, blank=True)
    ledger = models.CharField(max_length=16, choices=Ledger.choices)
    normal_side = models.CharField(max_length=6, choices=Side.choices)
    debits_must_not_exceed_credits = models.BooleanField(default=False)
    credits_must_not_exceed_debits = models.BooleanField(default=False)
    balance_slots = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="account_one_limit_flag",
                condition=~Q(
                    debits_must_not_exceed_credits=True, credits_must_not_exceed_debits=True
                ),
            ),
            models.CheckConstraint(
                name="account_slots_range",
                condition=Q(balance_slots__gte=1, balance_slots__lte=64),
            ),
            # The target of entries' composite foreign key (account, ledger).
            models.UniqueConstraint(fields=["id", "ledger"], name="account_id_ledger"),
            models.CheckConstraint(
                name="account_limited_has_one_slot",
                condition=Q(balance_slots=1)
                | Q(debits_must_not_exceed_credits=False, credits_must_not_exceed_debits=False),
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="account_no_delete", operation=pgtrigger.Delete),
            pgtrigger.Protect(
                name="account_fixed_fields",
                operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange(
                    "code",
                    "ledger",
                    "normal_side",
                    "debits_must_not_exceed_credits",
                    "credits_must_not_exceed_debits",
                    "balance_slots",
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def has_limit(self) -> bool:
        return self.debits_must_not_exceed_credits or self.credits_must_not_exceed_debits


class BalanceSlot(models.Model):
    """One share of an account's stored balance; the balance is the sum over its slots.

    Reading a balance sums at most ``Account.balance_slots`` rows (64 at most), so it costs the
    same however long the account's history is. Each posting adds to one slot in the same
    database transaction as its entries. The counters only grow, except pending amounts, which
    fall back when a hold is posted or voided.

    Busy house accounts (revenue, bank or insurer receivable) get several slots: a posting
    updates the slot picked for its database connection, so concurrent postings by different
    connections land on different rows and do not queue behind one row lock, while the sum over
    the slots stays exact because every change is a relative ``UPDATE ... SET x = x + n``. An
    account with a limit has one slot and the limit is checked by a conditional UPDATE of that
    row, which PostgreSQL re-evaluates after waiting for a concurrent writer's lock; the CHECK
    constraints below hold the limit at the database level too.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="balance_rows")
    slot = models.PositiveSmallIntegerField()
    # Copied from the account at creation so the database can check the limit on this row.
    debits_must_not_exceed_credits = models.BooleanField(default=False)
    credits_must_not_exceed_debits = models.BooleanField(default=False)
    debits_posted = models.BigIntegerField(default=0)
    credits_posted = models.BigIntegerField(default=0)
    debits_pending = models.BigIntegerField(default=0)
    credits_pending = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "slot"], name="balance_slot_unique"),
            models.CheckConstraint(
                name="balance_posted_not_negative",
                condition=Q(debits_posted__gte=0, credits_posted__gte=0),
            ),
            models.CheckConstraint(
                name="balance_debit_limit",
                condition=Q(debits_must_not_exceed_credits=False)
                | Q(
                    debits_pending__gte=0,
                    credits_posted__gte=F("debits_posted") + F("debits_pending"),
                ),
            ),
            models.CheckConstraint(
                name="balance_credit_limit",
                condition=Q(credits_must_not_exceed_debits=False)
                | Q(
                    credits_pending__gte=0,
                    debits_posted__gte=F("credits_posted") + F("credits_pending"),
                ),
            ),
        ]
        triggers = [pgtrigger.Protect(name="balance_no_delete", operation=pgtrigger.Delete)]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.slot}"


class Transaction(models.Model):
    """A posted journal transaction: two or more entries summing to zero, never edited."""

    class Kind(models.TextChoices):
        TRANSFER = "transfer", "transfer"
        HOLD_POST = "hold_post", "hold posted"
        REVERSAL = "reversal", "reversal"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    ledger = models.CharField(max_length=16, choices=Ledger.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    hold = models.OneToOneField(
        "Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="posting"
    )
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    reference = models.CharField(max_length=120, blank=True, db_index=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # How many entries it has; the commit check counts them (see BALANCED_FUNC).
    legs = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(name="transaction_two_legs", condition=Q(legs__gte=2)),
            # The target of entries' composite foreign key (transaction, ledger, legs).
            models.UniqueConstraint(
                fields=["id", "ledger", "legs"], name="transaction_id_ledger_legs"
            ),
            models.CheckConstraint(
                name="transaction_kind_links",
                condition=Q(kind="transfer", hold__isnull=True, reverses__isnull=True)
                | Q(kind="hold_post", hold__isnull=False, reverses__isnull=True)
                | Q(kind="reversal", hold__isnull=True, reverses__isnull=False),
            ),
        ]
        triggers = [_append_only("transaction"), _balanced_at_commit("transaction")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class Entry(models.Model):
    """One leg of a transaction: ``amount`` fen, positive for a debit, negative for a credit.

    ``ledger`` and ``legs`` repeat the transaction's and ``leg`` numbers the entry within it
    (0 to ``legs`` - 1), so the database can hold the zero-sum and one-ledger rules with
    constraints and one check per transaction (see BALANCED_FUNC). On PostgreSQL the composite
    foreign key (transaction, ledger, legs) stands in for the plain one to the transaction.
    """

    transaction = models.ForeignKey(
        Transaction,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,  # the (transaction, leg) unique index serves
        db_constraint=False,  # the composite foreign key of migration 0004 serves
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField()
    ledger = models.CharField(max_length=16, choices=Ledger.choices)
    leg = models.PositiveSmallIntegerField()
    legs = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(name="entry_not_zero", condition=~Q(amount=0)),
            models.UniqueConstraint(fields=["transaction", "leg"], name="entry_leg_unique"),
            models.CheckConstraint(name="entry_leg_in_range", condition=Q(leg__lt=F("legs"))),
        ]
        triggers = [_append_only("entry")]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount:+d}"


class Hold(models.Model):
    """A pending two-phase transfer reserving ``amount`` from ``debit_account``.

    A hold moves from ``pending`` to exactly one of ``posted`` (for its amount or less),
    ``voided`` or ``expired``; nothing else about it changes afterwards.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        POSTED = "posted", "posted"
        VOIDED = "voided", "voided"
        EXPIRED = "expired", "expired"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    ledger = models.CharField(max_length=16, choices=Ledger.choices)
    debit_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    credit_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True)
    reference = models.CharField(max_length=120, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="hold_amount_positive", condition=Q(amount__gt=0)),
            models.CheckConstraint(
                name="hold_two_accounts", condition=~Q(debit_account=F("credit_account"))
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="hold_pending_expiry",
                condition=Q(status="pending", expires_at__isnull=False),
            )
        ]
        triggers = [
            pgtrigger.Protect(name="hold_no_delete", operation=pgtrigger.Delete),
            pgtrigger.Protect(
                name="hold_resolve_once",
                operation=pgtrigger.Update,
                condition=pgtrigger.Condition(
                    "OLD.status <> 'pending' OR NEW.amount <> OLD.amount"
                    " OR NEW.debit_account_id <> OLD.debit_account_id"
                    " OR NEW.credit_account_id <> OLD.credit_account_id"
                    " OR NEW.ledger <> OLD.ledger"
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.id} ({self.status})"


class ChainLink(models.Model):
    """The hash-chain position of a posted transaction within its ledger.

    ``hash`` = sha256(previous link's hash, the transaction's canonical content with its entries).
    """

    ledger = models.CharField(max_length=16, choices=Ledger.choices)
    seq = models.BigIntegerField()
    transaction = models.OneToOneField(
        Transaction, on_delete=models.PROTECT, related_name="chain_link"
    )
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ledger", "seq"], name="chain_seq_unique")]
        triggers = [_append_only("chainlink")]

    def __str__(self) -> str:
        return f"{self.ledger}#{self.seq}"


class ChainQueue(models.Model):
    """A posted transaction not yet in the chain; the sealer links it and deletes this row.

    It keeps finding the unsealed transactions cheap however long the ledger grows.
    """

    transaction = models.OneToOneField(
        Transaction, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    ledger = models.CharField(max_length=16, choices=Ledger.choices)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["ledger", "created_at"], name="chain_queue_order")]

    def __str__(self) -> str:
        return str(self.transaction_id)


class ChainHead(models.Model):
    """The last link of each ledger's chain; only the sealer locks it."""

    ledger = models.CharField(max_length=16, choices=Ledger.choices, primary_key=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"{self.ledger}#{self.seq}"


class IdempotencyRecord(models.Model):
    """The first use of a posting key: what was asked (as a hash) and what it produced."""

    key = models.CharField(max_length=200, primary_key=True)
    request_hash = models.CharField(max_length=64)
    result_type = models.CharField(max_length=16)
    result_id = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        triggers = [_append_only("idempotencyrecord")]

    def __str__(self) -> str:
        return self.key
