"""Reads of the ledger that are more than a ``.get()``."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Sum

from .models import Account, BalanceSlot, Ledger, Side


@dataclass(frozen=True)
class Balance:
    """An account's stored balance in fen, posted and pending, debits and credits."""

    normal_side: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False

    @property
    def posted(self) -> int:
        """The posted balance on the account's normal side."""
        if self.normal_side == Side.DEBIT:
            return self.debits_posted - self.credits_posted
        return self.credits_posted - self.debits_posted

    @property
    def pending(self) -> int:
        """Pending holds on the account's normal side."""
        if self.normal_side == Side.DEBIT:
            return self.debits_pending - self.credits_pending
        return self.credits_pending - self.debits_pending

    @property
    def available(self) -> int | None:
        """What a limited account can still take (pending holds count); ``None`` if unlimited."""
        if self.debits_must_not_exceed_credits:
            return self.credits_posted - self.debits_posted - self.debits_pending
        if self.credits_must_not_exceed_debits:
            return self.debits_posted - self.credits_posted - self.credits_pending
        return None


_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def account_balance(account: Account) -> Balance:
    """The account's balance: a sum over at most 64 slot rows, whatever its history."""
    return account_balances([account])[account.pk]


def account_balances(accounts: Iterable[Account]) -> dict[int, Balance]:
    by_id = {account.pk: account for account in accounts}
    rows = (
        BalanceSlot.objects.filter(account_id__in=by_id)
        .values("account_id")
        .annotate(**{f"sum_{name}": Sum(name) for name in _COUNTERS})
    )
    result = {}
    for row in rows:
        account = by_id[row["account_id"]]
        result[account.pk] = Balance(
            normal_side=account.normal_side,
            debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
            **{name: int(row[f"sum_{name}"]) for name in _COUNTERS},
        )
    return result


@dataclass(frozen=True)
class TrialBalanceRow:
    """A ledger's stored balances summed over every account (fen)."""

    ledger: str
    accounts: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def difference(self) -> int:
        """Posted debits less posted credits: zero when the ledger balances."""
        return self.debits_posted - self.credits_posted

    @property
    def balanced(self) -> bool:
        return self.difference == 0 and self.debits_pending == self.credits_pending


def trial_balance() -> list[TrialBalanceRow]:
    """Sum of the balance slots' debits and credits per ledger."""
    rows = {
        row["account__ledger"]: row
        for row in BalanceSlot.objects.values("account__ledger").annotate(
            accounts=Count("account_id", distinct=True),
            debits_posted=Sum("debits_posted"),
            credits_posted=Sum("credits_posted"),
            debits_pending=Sum("debits_pending"),
            credits_pending=Sum("credits_pending"),
        )
    }
    result = []
    for ledger in Ledger.values:
        row = rows.get(ledger, {})
        result.append(
            TrialBalanceRow(
                ledger=ledger,
                accounts=int(row.get("accounts") or 0),
                debits_posted=int(row.get("debits_posted") or 0),
                credits_posted=int(row.get("credits_posted") or 0),
                debits_pending=int(row.get("debits_pending") or 0),
                credits_pending=int(row.get("credits_pending") or 0),
            )
        )
    return result
