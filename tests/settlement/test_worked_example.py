"""The worked example, end to end over HTTP, with the insurer simulator as a real process.

A minor is admitted on a parent's credit line (亲情付) with the deposit waived, is charged on two
days, is settled (the insurer pays its share, the line pays the self-pay), the bank sees the
receivable, the parent repays and the line is whole again. Every ledger balance is asserted
along the way, and ``verify_ledger`` is clean at the end.
"""

from datetime import date, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import CreditLine
from accounts.selectors import person_id_number
from accounts.services.institutions import department_ensure, institution_ensure
from ledger.selectors import account_balance
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.models import Encounter, Receivable
from settlement.services import house

pytestmark = pytest.mark.django_db


def yuan(response, *path):
    value = response.json() if hasattr(response, "json") else response
    for key in path:
        value = value[key]
    return value


@pytest.fixture
def hospital():
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="PED", name="儿科", default_deposit=200_000
    )
    department.refresh_from_db()
    return institution, department


def test_minor_on_a_parents_line_end_to_end(hospital, make_person, make_partner, staff_client, sim):
    institution, department = hospital
    partner, bank = make_partner("厦门国际银行", grace_days=10)
    mother = make_person("陈静", birth=date(1988, 3, 14))
    child = make_person("陈小雨", birth=date(2015, 9, 1))
    cashier = staff_client("cashier")

    granted = bank.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": person_id_number(mother),
            "name": "陈静",
            "score": 640,
            "score_provider": "白鹭分",
        },
    )
    assert granted.status_code == 201 and granted.json()["limit"] == "3000.00"
    line_id = granted.json()["id"]
    linked = cashier.post(
        "/api/v1/family-links/",
        {
            "payer": mother.pk,
            "beneficiary": child.pk,
            "relation": "parent_of_minor",
            "consent": True,
        },
        format="json",
    )
    assert linked.status_code == 201

    # Admission: the ¥2,000 deposit is waived and held on the mother's line.
    admitted = cashier.post(
        "/api/v1/encounters/",
        {"person": child.pk, "kind": "inpatient", "department": department.pk},
        format="json",
    )
    assert admitted.status_code == 201, admitted.json()
    body = admitted.json()
    assert body["deposit"] == {"required": "2000.00", "waived": True, "paid": "0.00"}
    assert body["funding_line"]["id"] == line_id
    assert body["funding_line"]["holder"] == mother.pk
    assert body["funding_line"]["via_family_link"] == linked.json()["id"]
    encounter = Encounter.objects.get(pk=body["id"])
    line = CreditLine.objects.get(pk=line_id)
    figures = bank.get(f"/api/partner/v1/credit-lines/{line_id}/").json()
    assert (figures["held"], figures["drawn"], figures["available"]) == (
        "2000.00",
        "0.00",
        "1000.00",
    )

    # Charges on two days.
    today = timezone.localdate()
    yesterday = today - timedelta(days=1)
    Encounter.objects.filter(pk=encounter.pk).update(admitted_at=timezone.now() - timedelta(days=1))
    day_one = [
        {
            "code": "D001",
            "name": "头孢",
            "category": "drug",
            "insurance_class": "A",
            "quantity": "1",
            "unit_price": "1000.00",
            "service_date": yesterday.isoformat(),
        },
        {
            "code": "E007",
            "name": "CT",
            "category": "exam",
            "insurance_class": "B",
            "quantity": "2",
            "unit_price": "200.00",
            "service_date": yesterday.isoformat(),
        },
    ]
    day_two = [
        {
            "code": "R100",
            "name": "单人病房",
            "category": "bed",
            "insurance_class": "C",
            "quantity": "1",
            "unit_price": "150.00",
            "service_date": today.isoformat(),
        },
        {
            "code": "D002",
            "name": "输液",
            "category": "drug",
            "insurance_class": "A",
            "quantity": "1.5",
            "unit_price": "200.00",
            "service_date": today.isoformat(),
        },
    ]
    for items in (day_one, day_two):
        posted = cashier.post(
            f"/api/v1/encounters/{encounter.pk}/charges/", {"items": items}, format="json"
        )
        assert posted.status_code == 201, posted.json()
    bill = cashier.get(f"/api/v1/encounters/{encounter.pk}/bill/").json()
    assert bill["total"] == "1850.00"
    assert [(d["date"], d["subtotal"]) for d in bill["days"]] == [
        (yesterday.isoformat(), "1400.00"),
        (today.isoformat(), "450.00"),
    ]
    assert (bill["paid"], bill["outstanding"], bill["settlement"]) == ("0.00", "1850.00", None)
    assert account_balance(house.patient_receivable(encounter)).posted == 185_000

    # Settlement. Inpatient policy: A 1,300, B 400 (10% = 40 self-pay first), C 150;
    # eligible 1,660 − deductible 800 = 860 × 85% = 731.00 fund; the child's personal account
    # pays 500.00 of its A/B share; self-pay 1,850 − 731 − 500 = 619.00, drawn on the line.
    with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=3):
        settled = cashier.post(f"/api/v1/encounters/{encounter.pk}/settle/", {}, format="json")
    assert settled.status_code == 200, settled.json()
    result = settled.json()
    assert result["status"] == "settled"
    assert (result["total"], result["insurance_fund"], result["personal_account"]) == (
        "1850.00",
        "731.00",
        "500.00",
    )
    assert (result["self_pay"], result["funded_by"]) == ("619.00", "credit")
    assert result["due_date"] == (today + timedelta(days=10)).isoformat()
    receipt = cashier.get(f"/api/v1/receipts/{result['receipt_no']}/").json()
    code = receipt["verification_code"]
    assert cashier.get(f"/api/v1/receipts/{result['receipt_no']}/?code={code}").json()["verified"]
    assert not cashier.get(f"/api/v1/receipts/{result['receipt_no']}/?code=X").json()["verified"]

    with override_settings(INSURER_URL=sim.url):
        again = cashier.post(f"/api/v1/encounters/{encounter.pk}/settle/", {}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_settled"
    charge_after = cashier.post(
        f"/api/v1/encounters/{encounter.pk}/charges/", {"items": day_two}, format="json"
    )
    assert charge_after.status_code == 409

    # Ledger after settlement.
    assert account_balance(house.patient_receivable(encounter)).posted == 0
    assert account_balance(house.insurer_receivable(institution)).posted == 123_100
    assert account_balance(house.bank_receivable(institution, partner)).posted == 61_900
    assert account_balance(house.revenue(institution, "drug")).posted == 130_000
    assert account_balance(house.revenue(institution, "exam")).posted == 40_000
    assert account_balance(house.revenue(institution, "bed")).posted == 15_000
    assert account_balance(line.capacity_account).debits_pending == 0
    assert account_balance(line.capacity_account).available == 300_000 - 61_900
    assert account_balance(line.drawn_account).posted == 61_900
    figures = bank.get(f"/api/partner/v1/credit-lines/{line_id}/").json()
    assert (figures["held"], figures["drawn"], figures["available"]) == (
        "0.00",
        "619.00",
        "2381.00",
    )

    # The bank sees the receivable and its statement for the day.
    receivables = bank.get("/api/partner/v1/receivables/?status=open").json()["results"]
    assert [(r["amount"], r["outstanding"], r["encounter"]) for r in receivables] == [
        ("619.00", "619.00", str(encounter.pk))
    ]
    statement = bank.get(f"/api/partner/v1/statements/{today.isoformat()}/").json()
    assert statement["net_amount"] == "619.00"
    assert statement["items"] == [
        {"reference": receivables[0]["reference"], "kind": "draw", "amount": "619.00"}
    ]

    # The mother repays the bank; a replay is answered the same; the line is whole again.
    repayment = {
        "receivable": receivables[0]["id"],
        "amount": "619.00",
        "bank_txn_id": "XMIB-20261123-0001",
        "paid_at": timezone.now().isoformat(),
    }
    repaid = bank.post("/api/partner/v1/repayments/", repayment)
    assert repaid.status_code == 201, repaid.json()
    replay = bank.post("/api/partner/v1/repayments/", repayment)
    assert (replay.status_code, replay.json()) == (201, repaid.json())
    other = bank.post("/api/partner/v1/repayments/", {**repayment, "amount": "1.00"})
    assert other.status_code == 409
    receivable = Receivable.objects.get(pk=receivables[0]["id"])
    assert (receivable.outstanding, receivable.status) == (0, "repaid")
    assert account_balance(line.capacity_account).available == 300_000
    assert account_balance(line.drawn_account).posted == 0
    figures = bank.get(f"/api/partner/v1/credit-lines/{line_id}/").json()
    assert (figures["held"], figures["drawn"], figures["available"]) == (
        "0.00",
        "0.00",
        "3000.00",
    )

    chain_seal()
    report = verify_ledger()
    assert report.intact, report.problems
