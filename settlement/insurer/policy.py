"""How an insurer splits a bill: fund payment, personal account and the patient's cash.

Everything is integer fen; percentages are ``Decimal`` and every product is rounded to the fen
half up, never through ``float``. Per encounter:

- class C (丙) is all self-pay;
- of class B (乙), ``class_b_self_share`` (10 %) is self-pay first, the rest is eligible;
- ``eligible = A + B - round(B × 10 %)``;
- ``fund = round(max(eligible - deductible, 0) × fund rate)`` with the deductible (起付线) and
  rate of the encounter's kind (inpatient ¥800 and 85 %, outpatient ¥200 and 60 %);
- the personal account (个人账户, ¥500 per person to begin with, shared by all of a person's
  encounters) pays the patient's share of class A and B items: ``min(balance, A + B - fund)``;
- the patient pays the rest in cash: ``psn_cash_pay = total - fund - acct_pay``.

Worked example, inpatient, A ¥10,000.00, B ¥2,000.00, C ¥500.00, account balance ¥500.00::

    B self-pay share  round(200000 × 0.10)           =   20000 fen
    eligible          1000000 + 200000 - 20000       = 1180000
    fund              round((1180000 - 80000) × 0.85) =  935000   (¥9,350.00)
    acct_pay          min(50000, 1200000 - 935000)   =   50000   (¥500.00)
    psn_cash_pay      1250000 - 935000 - 50000       =  265000   (¥2,650.00)

so ``medfee_sumamt`` ¥12,500.00 = ¥9,350.00 + ¥500.00 + ¥2,650.00, and the person's account
is left with ¥0.00 for the next encounter.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

KINDS = ("inpatient", "outpatient")
CLASSES = ("A", "B", "C")


@dataclass(frozen=True)
class Policy:
    """The insurer's rules; amounts in fen, rates as ``Decimal`` fractions."""

    deductible_inpatient: int = 80_000
    deductible_outpatient: int = 20_000
    fund_rate_inpatient: Decimal = Decimal("0.85")
    fund_rate_outpatient: Decimal = Decimal("0.60")
    class_b_self_share: Decimal = Decimal("0.10")
    personal_account: int = 50_000

    def __post_init__(self) -> None:
        for name in ("deductible_inpatient", "deductible_outpatient", "personal_account"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("fund_rate_inpatient", "fund_rate_outpatient", "class_b_self_share"):
            rate = getattr(self, name)
            if not isinstance(rate, Decimal) or not 0 <= rate <= 1:
                raise ValueError(f"{name} must be a Decimal between 0 and 1")

    def deductible(self, kind: str) -> int:
        return (
            self.deductible_inpatient if _kind(kind) == "inpatient" else self.deductible_outpatient
        )

    def fund_rate(self, kind: str) -> Decimal:
        return self.fund_rate_inpatient if _kind(kind) == "inpatient" else self.fund_rate_outpatient


@dataclass(frozen=True)
class PolicySplit:
    """``medfee_sumamt == fund_pay_sumamt + acct_pay + psn_cash_pay``, all in fen."""

    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int


def round_fen(value: Decimal) -> int:
    """Round to the whole fen, half up (``1234.5`` → ``1235``)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def class_totals(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Sum ``(insurance_class, fen)`` lines per class; a reversal line is simply negative."""
    totals = dict.fromkeys(CLASSES, 0)
    for insurance_class, amount in lines:
        if insurance_class not in totals:
            raise ValueError(f"unknown insurance class {insurance_class!r}")
        totals[insurance_class] += int(amount)
    for insurance_class, total in totals.items():
        if total < 0:
            raise ValueError(f"class {insurance_class} lines sum to a negative amount")
    return totals


def compute_split(
    policy: Policy, *, kind: str, lines: Iterable[tuple[str, int]], account_balance: int
) -> PolicySplit:
    """Split one encounter's ``(insurance_class, fen)`` lines under ``policy``.

    ``account_balance`` is what is left on the person's account before this encounter; the
    caller deducts the returned ``acct_pay`` from it once the settlement is made.
    """
    if account_balance < 0:
        raise ValueError("account_balance must not be negative")
    totals = class_totals(lines)
    a, b, c = totals["A"], totals["B"], totals["C"]
    eligible = a + b - round_fen(b * policy.class_b_self_share)
    fund = round_fen(max(eligible - policy.deductible(kind), 0) * policy.fund_rate(kind))
    acct_pay = min(account_balance, a + b - fund)
    total = a + b + c
    return PolicySplit(
        medfee_sumamt=total,
        fund_pay_sumamt=fund,
        acct_pay=acct_pay,
        psn_cash_pay=total - fund - acct_pay,
    )


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return kind
