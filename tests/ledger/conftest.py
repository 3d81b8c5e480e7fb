import itertools

import pytest

from ledger import services
from ledger.models import Account

_codes = itertools.count(1)


def new_account(
    ledger: str = "money",
    normal_side: str = "debit",
    *,
    limit: str | None = None,
    slots: int = 1,
    prefix: str = "acct",
) -> Account:
    """A fresh account through the service; ``limit`` is "debits" or "credits" or None."""
    return services.account_create(
        code=f"{prefix}-{next(_codes)}",
        ledger=ledger,
        normal_side=normal_side,
        debits_must_not_exceed_credits=limit == "debits",
        credits_must_not_exceed_debits=limit == "credits",
        balance_slots=slots,
    )


@pytest.fixture
def make_account():
    return new_account
