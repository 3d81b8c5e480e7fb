"""Stays settled against the insurer simulator, shared by the fallback, stranded-settle and
concurrency tests: the two bills, the steps a cashier and a bank take over the API, what the
simulator and the adapter saw, and the ledger check.

Amounts (simulator policy, see ``settlement/insurer/policy.py``):

- the ward bill, inpatient: A ¥1,300.00, B ¥400.00, C ¥150.00 = ¥1,850.00; eligible 1,660.00
  − deductible 800.00 = 860.00 × 85 % = fund ¥731.00; the personal account pays ¥500.00;
  self-pay ¥619.00; the insurer's share ¥1,231.00.
- the clinic bill, outpatient: A ¥300.00, C ¥50.00 = ¥350.00; (300.00 − 200.00) × 60 % = fund
  ¥60.00; the personal account pays ¥240.00; self-pay ¥50.00; the insurer's share ¥300.00.
"""

from typing import Any

from accounts.models import CreditLine, Department
from accounts.selectors import person_id_number
from ledger.selectors import account_balance
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.models import Encounter, InsuranceClaim, InsurerCall
from tests.factories import charge_line

WARD_TOTAL, WARD_FUND, WARD_ACCOUNT, WARD_SELF = 185_000, 73_100, 50_000, 61_900
WARD_SHARE = WARD_FUND + WARD_ACCOUNT
CLINIC_TOTAL, CLINIC_FUND, CLINIC_ACCOUNT, CLINIC_SELF = 35_000, 6_000, 24_000, 5_000
CLINIC_SHARE = CLINIC_FUND + CLINIC_ACCOUNT


def ward_items() -> list[dict[str, Any]]:
    return [
        charge_line(
            code="D001", name="头孢", category="drug", insurance_class="A", unit_price="1000.00"
        ),
        charge_line(
            code="E007",
            name="CT",
            category="exam",
            insurance_class="B",
            quantity="2",
            unit_price="200.00",
        ),
        charge_line(unit_price="150.00"),
        charge_line(
            code="D002",
            name="输液",
            category="drug",
            insurance_class="A",
            quantity="1.5",
            unit_price="200.00",
        ),
    ]


def clinic_items() -> list[dict[str, Any]]:
    return [
        charge_line(
            code="D010", name="头孢", category="drug", insurance_class="A", unit_price="300.00"
        ),
        charge_line(code="T020", name="血常规", category="exam", unit_price="50.00"),
    ]


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def open_line(bank: Any, person: Any, score: int = 640) -> CreditLine:
    """The bank grants ``person`` a line (¥3,000 for a score of 601 and up)."""
    granted = bank.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": person_id_number(person),
            "name": person.name,
            "score": score,
            "score_provider": "白鹭分",
        },
    )
    assert granted.status_code == 201, granted.json()
    assert granted.json()["limit"] == "3000.00"
    return CreditLine.objects.get(pk=granted.json()["id"])


def admit(cashier: Any, person: Any, department: Department, kind: str) -> Encounter:
    admitted = cashier.post(
        "/api/v1/encounters/",
        {"person": person.pk, "kind": kind, "department": department.pk},
        format="json",
    )
    assert admitted.status_code == 201, admitted.json()
    return Encounter.objects.get(pk=admitted.json()["id"])


def charge(cashier: Any, encounter: Encounter, items: list[dict[str, str]], total: int) -> None:
    posted = cashier.post(
        f"/api/v1/encounters/{encounter.pk}/charges/", {"items": items}, format="json"
    )
    assert posted.status_code == 201, posted.json()
    bill = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()
    assert bill["total"] == yuan(total)


def settle(cashier: Any, encounter: Encounter, body: dict[str, str] | None = None) -> Any:
    return cashier.post(f"/api/v1/encounters/{encounter.pk}/settle/", body or {}, format="json")


def standing(sim: Any, encounter: Encounter) -> list[dict[str, Any]]:
    """The simulator's settlements for the encounter that are not cancelled."""
    return [
        s
        for s in sim.state()["settlements"]
        if s["mdtrt_id"] == str(encounter.pk) and s["cancelled_at"] is None
    ]


def calls(encounter: Encounter) -> list[tuple[str, str]]:
    """The adapter's calls for the encounter, in order: (infno, outcome)."""
    return list(
        InsurerCall.objects.filter(mdtrt_id=str(encounter.pk))
        .order_by("started_at", "pk")
        .values_list("infno", "outcome")
    )


def claim_of(encounter: Encounter) -> InsuranceClaim:
    return InsuranceClaim.objects.get(encounter=encounter)


def posted(account: Any) -> int:
    return account_balance(account).posted


def assert_ledger_intact() -> None:
    chain_seal()
    report = verify_ledger()
    assert report.intact, report.problems
