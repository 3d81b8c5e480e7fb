"""Reads of the ledger that are more than a ``.get()``."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Sum

from .models import Account, BalanceSlot, Side


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
