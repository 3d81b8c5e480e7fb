"""The money-ledger accounts a hospital's flows post to.

House accounts shared by every encounter of an institution (revenue, channel clearing, insurer
and bank receivables, refunds payable) are busy: they get 16 balance slots so concurrent
postings do not queue on one row (see ``ledger.models.BalanceSlot``). Each encounter has its
own patient receivable and deposit-held accounts.
"""

from django.db import transaction

from accounts.models import Institution, Partner
from ledger import services as ledger
from ledger.models import Account, Ledger, Side

from ..models import Encounter
from ..selectors import deposit_code

HOT = 16


# House accounts by code, as committed: an account, once made, never changes or goes (the ledger
# refuses both), so a process asks the database for each once. One made in a transaction is
# remembered only when that commits; ``forget_house_accounts`` empties the memory when the
# database itself is emptied (tests' flushes).
_known: dict[str, Account] = {}


def _house(institution: Institution, name: str, side: str, label: str) -> Account:
    code = f"money:inst:{institution.pk}:{name}"
    known = _known.get(code)
    if known is not None:
        return known
    account = ledger.account_create(
        code=code,
        name=f"{institution.code} {label}",
        ledger=Ledger.MONEY,
        normal_side=side,
        balance_slots=HOT,
    )
    transaction.on_commit(lambda: _known.setdefault(code, account))
    return account


def forget_house_accounts(**kwargs: object) -> None:
    """Empty the memory of house accounts (connected to ``post_migrate``, which a flush sends)."""
    _known.clear()


def revenue(institution: Institution, category: str) -> Account:
    return _house(institution, f"revenue:{category}", Side.CREDIT, f"medical revenue {category}")


def clearing(institution: Institution, channel: str) -> Account:
    return _house(institution, f"clearing:{channel}", Side.DEBIT, f"{channel} clearing")


def insurer_receivable(institution: Institution) -> Account:
    return _house(institution, "insurer", Side.DEBIT, "insurer receivable")


def bank_receivable(institution: Institution, partner: Partner) -> Account:
    return _house(institution, f"bank:{partner.pk}", Side.DEBIT, f"{partner.name} receivable")


def refunds_payable(institution: Institution) -> Account:
    return _house(institution, "refunds", Side.CREDIT, "refunds payable")


def patient_receivable(encounter: Encounter) -> Account:
    return ledger.account_create(
        code=f"money:enc:{encounter.pk}:receivable",
        name="patient receivable",
        ledger=Ledger.MONEY,
        normal_side=Side.DEBIT,
    )


def deposit_held(encounter: Encounter) -> Account:
    return ledger.account_create(
        code=deposit_code(encounter),
        name="patient deposit held",
        ledger=Ledger.MONEY,
        normal_side=Side.CREDIT,
        credits_must_not_exceed_debits=False,
    )
