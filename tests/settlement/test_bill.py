"""The daily bill (每日清单): each line is what the charge API says of it, grouped by day.

``encounter_bill`` reads a stay's lines as plain rows (a long stay has thousands); these tests
hold it to ``charge_out``, which reads each line as a model instance, line by line.
"""

import json
from datetime import date, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from settlement.models import Encounter, InsuranceClaim
from settlement.selectors import charge_out, encounter_bill
from settlement.services.encounters import charge_reverse, charges_post, encounter_admit
from tests.factories import charge_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def stay(department, make_person):
    """A three-day stay: odd quantities and prices, a name that needs escaping, two lines
    reversed (one reversal posted on a later day than its line)."""
    patient = make_person("住院病人", birth=date(1970, 1, 1))
    encounter = encounter_admit(
        actor="test", person=patient, department=department, kind=Encounter.Kind.INPATIENT
    )
    Encounter.objects.filter(pk=encounter.pk).update(admitted_at=timezone.now() - timedelta(3))
    today = timezone.localdate()
    lines = [
        charge_item(100, quantity=Decimal("1.000"), service_date=today - timedelta(2)),
        charge_item(12_345, quantity=Decimal("1.5"), service_date=today - timedelta(2)),
        charge_item(1, quantity=Decimal(1000), category="hisonly", service_date=today),
        charge_item(99_999_999, quantity=Decimal("0.001"), insurance_class="A"),
        charge_item(7, quantity=Decimal("2.25"), name="名<称>&\"'", code="X&1"),
        charge_item(5_000, service_date=today - timedelta(1)),
    ]
    # Posted out of date order, as a HIS may send a late line.
    charges_post(actor="test", encounter_id=encounter.pk, items=lines[3:], key=uuid4().hex)
    charges_post(actor="test", encounter_id=encounter.pk, items=lines[:3], key=uuid4().hex)
    first = encounter.charges.get(unit_price=12_345)
    charge_reverse(actor="test", charge_id=first.pk, reason="重复 <b>收费</b>")
    last = encounter.charges.get(unit_price=7)
    charge_reverse(actor="test", charge_id=last.pk, reason="wrong")
    return encounter


def expected_bill_lines(encounter: Encounter) -> list[dict]:
    """The bill's lines the slow way: ``charge_out`` of each model instance, with the flags."""
    charges = list(encounter.charges.order_by("service_date", "pk"))
    reversed_ids = {charge.reverses_id for charge in charges}
    bill_open = encounter.status == Encounter.Status.OPEN and not (
        InsuranceClaim.objects.filter(encounter=encounter).exclude(setl_id="").exists()
    )
    return [
        {
            **charge_out(charge),
            "reversed": charge.pk in reversed_ids,
            "reversible": bill_open
            and charge.reverses_id is None
            and charge.pk not in reversed_ids,
        }
        for charge in charges
    ]


def test_each_line_is_what_the_charge_api_says_with_its_flags(stay):
    bill = encounter_bill(stay)

    lines = [item for day in bill["days"] for item in day["items"]]
    assert lines == expected_bill_lines(stay)
    # Keys in the order the API has always written them.
    assert [list(item) for item in lines] == [
        [*charge_out(stay.charges.first()), "reversed", "reversible"]
    ] * len(lines)
    assert {line["quantity"] for line in lines} >= {"1", "1.5", "-1.5", "1000", "0.001", "2.25"}


def test_days_in_order_with_their_subtotals_and_the_totals(stay):
    bill = encounter_bill(stay)

    today = timezone.localdate()
    assert [day["date"] for day in bill["days"]] == [
        (today - timedelta(days)).isoformat() for days in (2, 1, 0)
    ]
    for day in bill["days"]:
        assert {item["service_date"] for item in day["items"]} == {day["date"]}
        assert [item["id"] for item in day["items"]] == sorted(item["id"] for item in day["items"])
    subtotals = [
        sum(charge.amount for charge in stay.charges.filter(service_date=day["date"]))
        for day in bill["days"]
    ]
    assert [day["subtotal"] for day in bill["days"]] == [f"{fen / 100:.2f}" for fen in subtotals]
    total = sum(subtotals)
    assert (bill["total"], bill["paid"], bill["outstanding"], bill["settlement"]) == (
        f"{total / 100:.2f}",
        "0.00",
        f"{total / 100:.2f}",
        None,
    )


def test_no_line_is_reversible_once_the_insurer_holds_the_bill(stay):
    InsuranceClaim.objects.create(encounter=stay, setl_id="S-9", medfee_sumamt=1)

    lines = [item for day in encounter_bill(stay)["days"] for item in day["items"]]
    assert lines == expected_bill_lines(stay)
    assert not any(line["reversible"] for line in lines)
    assert sum(line["reversed"] for line in lines) == 2


def test_a_stay_without_charges_has_an_empty_bill(department, make_person):
    patient = make_person("门诊病人", birth=date(1980, 5, 5))
    visit = encounter_admit(
        actor="test", person=patient, department=department, kind=Encounter.Kind.OUTPATIENT
    )
    bill = encounter_bill(visit)
    assert (bill["days"], bill["total"], bill["outstanding"]) == ([], "0.00", "0.00")


def test_the_api_writes_the_bill_as_drfs_own_json_renderer_would(stay, staff_client):
    answer = staff_client("cashier").get(f"/api/v1/encounters/{stay.pk}/bill/")

    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/json"
    assert answer.content == JSONRenderer().render(encounter_bill(stay))


def test_an_indented_or_browsable_answer_has_the_same_bill(stay, staff_client):
    """Compact JSON writes each line as it is made (orjson fragments); an answer asked for
    indented, or the browsable API's page, takes the lines as objects: the same bill."""
    client = staff_client("cashier")
    url = f"/api/v1/encounters/{stay.pk}/bill/"

    indented = client.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.status_code == 200
    assert indented.content == JSONRenderer().render(
        encounter_bill(stay), "application/json; indent=2"
    )
    assert json.loads(indented.content) == json.loads(client.get(url).content)
    page = client.get(url, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert "&quot;reversible&quot;" in page.content.decode()
