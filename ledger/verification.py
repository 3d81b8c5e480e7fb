"""Read-only integrity checks of the whole ledger, run by ``manage.py verify_ledger``.

Each check streams from the database, so memory stays flat however large the ledger grows.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from . import chain
from .models import (
    GENESIS_HASH,
    Account,
    BalanceSlot,
    ChainHead,
    ChainLink,
    Entry,
    Hold,
    Ledger,
    Transaction,
)

# Postings queue themselves and a beat task seals the queue in batches every minute; a
# transaction still outside the chain after this long means sealing has stopped.
SEAL_GRACE = timedelta(minutes=5)


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    transactions: int = 0
    accounts: int = 0
    links: int = 0
    unsealed_recent: int = 0

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_ledger() -> Report:
    report = Report()
    _check_transactions(report)
    _check_balances(report)
    _check_trial_balance(report)
    for ledger in Ledger.values:
        _check_chain(report, ledger)
    return report


def _check_transactions(report: Report) -> None:
    report.transactions = Transaction.objects.count()
    unbalanced = (
        Transaction.objects.annotate(total=Sum("entries__amount"), entry_count=Count("entries"))
        .filter(
            Q(entry_count__lt=2) | ~Q(entry_count=F("legs")) | ~Q(total=0) | Q(total__isnull=True)
        )
        .values_list("id", "entry_count", "total")
    )
    for txn_id, legs, total in unbalanced.iterator():
        report.problems.append(f"transaction {txn_id}: {legs} entries summing to {total or 0}")
    crossed = Entry.objects.exclude(account__ledger=F("transaction__ledger")).values_list(
        "transaction_id", "account__code"
    )
    for txn_id, code in crossed.iterator():
        report.problems.append(f"transaction {txn_id}: entry on {code} crosses ledgers")


def _check_balances(report: Report) -> None:
    stored = {
        row["account_id"]: row
        for row in BalanceSlot.objects.values("account_id").annotate(
            debits_posted=Sum("debits_posted"),
            credits_posted=Sum("credits_posted"),
            debits_pending=Sum("debits_pending"),
            credits_pending=Sum("credits_pending"),
        )
    }
    posted = {
        row["account_id"]: row
        for row in Entry.objects.values("account_id").annotate(
            debits=Sum("amount", filter=Q(amount__gt=0)),
            credits=Sum("amount", filter=Q(amount__lt=0)),
        )
    }
    pending_debits = dict(
        Hold.objects.filter(status=Hold.Status.PENDING)
        .values("debit_account_id")
        .annotate(total=Sum("amount"))
        .values_list("debit_account_id", "total")
    )
    pending_credits = dict(
        Hold.objects.filter(status=Hold.Status.PENDING)
        .values("credit_account_id")
        .annotate(total=Sum("amount"))
        .values_list("credit_account_id", "total")
    )
    accounts = Account.objects.order_by("id").values_list(
        "id", "code", "debits_must_not_exceed_credits", "credits_must_not_exceed_debits"
    )
    for account_id, code, debit_limit, credit_limit in accounts.iterator():
        report.accounts += 1
        row = stored.get(account_id)
        if row is None:
            report.problems.append(f"account {code}: no stored balance")
            continue
        sums = posted.get(account_id, {})
        expected = {
            "debits_posted": int(sums.get("debits") or 0),
            "credits_posted": -int(sums.get("credits") or 0),
            "debits_pending": int(pending_debits.get(account_id) or 0),
            "credits_pending": int(pending_credits.get(account_id) or 0),
        }
        for name, value in expected.items():
            if int(row[name]) != value:
                report.problems.append(
                    f"account {code}: stored {name} {int(row[name])} != {value} from entries/holds"
                )
        d_posted, c_posted = int(row["debits_posted"]), int(row["credits_posted"])
        if debit_limit and d_posted + int(row["debits_pending"]) > c_posted:
            report.problems.append(f"account {code}: debits exceed credits (limit broken)")
        if credit_limit and c_posted + int(row["credits_pending"]) > d_posted:
            report.problems.append(f"account {code}: credits exceed debits (limit broken)")


def _check_trial_balance(report: Report) -> None:
    for ledger in Ledger.values:
        entries = Entry.objects.filter(transaction__ledger=ledger).aggregate(total=Sum("amount"))
        if int(entries["total"] or 0) != 0:
            report.problems.append(f"trial balance {ledger}: entries sum to {entries['total']}")
        slots = BalanceSlot.objects.filter(account__ledger=ledger).aggregate(
            debits=Sum("debits_posted"),
            credits=Sum("credits_posted"),
            debits_pending=Sum("debits_pending"),
            credits_pending=Sum("credits_pending"),
        )
        debits, credits = int(slots["debits"] or 0), int(slots["credits"] or 0)
        if debits != credits:
            report.problems.append(
                f"trial balance {ledger}: stored debits {debits} != stored credits {credits}"
            )
        if int(slots["debits_pending"] or 0) != int(slots["credits_pending"] or 0):
            report.problems.append(f"trial balance {ledger}: pending debits != pending credits")


def _entries_in_chain_order(ledger: str) -> Iterator[tuple[UUID, int, int]]:
    return (
        Entry.objects.filter(transaction__ledger=ledger, transaction__chain_link__isnull=False)
        .order_by("transaction__chain_link__seq", "id")
        .values_list("transaction_id", "account_id", "amount")
        .iterator(chunk_size=5000)
    )


def _check_chain(report: Report, ledger: str) -> None:
    links = (
        ChainLink.objects.filter(ledger=ledger)
        .select_related("transaction")
        .order_by("seq")
        .iterator(chunk_size=2000)
    )
    entries = _entries_in_chain_order(ledger)
    pending_entry: tuple[UUID, int, int] | None = next(entries, None)
    previous, expected_seq = GENESIS_HASH, 1
    for link in links:
        report.links += 1
        if link.seq != expected_seq:
            report.problems.append(
                f"chain {ledger}: link {expected_seq} missing (found {link.seq})"
            )
            expected_seq = link.seq
        own: list[tuple[int, int]] = []
        while pending_entry is not None and pending_entry[0] == link.transaction_id:
            own.append((pending_entry[1], pending_entry[2]))
            pending_entry = next(entries, None)
        txn = link.transaction
        computed = chain.link_hash(previous, chain.transaction_bytes(txn, own))
        if computed != link.hash:
            report.problems.append(
                f"chain {ledger}: link {link.seq} (transaction {txn.pk}) does not match its content"
            )
        previous, expected_seq = link.hash, expected_seq + 1
    head = ChainHead.objects.filter(ledger=ledger).first() or ChainHead(ledger=ledger)
    if head.seq != expected_seq - 1 or head.hash != previous:
        report.problems.append(
            f"chain {ledger}: head at {head.seq} does not match the last link {expected_seq - 1}"
        )
    unsealed = Transaction.objects.filter(ledger=ledger, chain_link__isnull=True)
    late = unsealed.filter(created_at__lt=timezone.now() - SEAL_GRACE).count()
    if late:
        report.problems.append(f"chain {ledger}: {late} transactions left unsealed")
    report.unsealed_recent += unsealed.count() - late
