"""The money-ledger accounts a hospital's flows post to.

House accounts shared by every encounter of an institution (revenue, channel clearing, insurer
and bank receivables, refunds payable) are busy: they get 16 balance slots so concurrent
postings do not queue on one row (see ``ledger.models.BalanceSlot``). Each encounter has its
own patient receivable and deposit-held accounts.
"""

from accounts.models import Institution, Partner
from ledger import services as ledger
from ledger.models import Account, Ledger, Side

from ..models import Encounter
from ..selectors import deposit_code

HOT = 16


def _house(institution: Institution, name: str, side: str, label: str) -> Account:
    return ledger.account_create(
        code=f"money:inst:{institution.pk}:{name}",
        name=f"{institution.code} {label}",
        ledger=Ledger.MONEY,
        normal_side=side,
        balance_slots=HOT,
    )


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
