"""Settlement rules found by review: a bill fixed once the insurer settled; ended family links."""

from datetime import date, timedelta
from uuid import uuid4

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.services.family import family_link_revoke
from accounts.services.institutions import department_ensure, institution_ensure
from ledger.selectors import account_balance
from settlement.exceptions import EncounterStateError, SelfPayNotCovered
from settlement.models import Encounter, InsuranceClaim
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import charge_item, grant_line, link_family

pytestmark = pytest.mark.django_db


@pytest.fixture
def ward():
    institution = institution_ensure(actor="test", code="XMH9", name="测试医院")
    department = department_ensure(
        actor="test", institution=institution, code="PED", name="儿科", default_deposit=50_000
    )
    department.refresh_from_db()
    return department


def charge(encounter: Encounter, amount: int) -> None:
    charges_post(
        key=uuid4().hex,
        actor="test",
        encounter_id=encounter.pk,
        items=[
            charge_item(amount),
        ],
    )


def test_no_charge_changes_once_the_insurer_has_settled_the_bill(ward, make_person):
    patient = make_person("病人", birth=date(1970, 1, 1))
    encounter = encounter_admit(actor="test", person=patient, department=ward, kind="inpatient")
    charge(encounter, 10_000)
    # An earlier settle reached the insurer, then failed here and put the encounter back.
    InsuranceClaim.objects.create(encounter=encounter, setl_id="S-1", medfee_sumamt=10_000)
    with pytest.raises(EncounterStateError, match="insurer has already settled"):
        charge(encounter, 500)


def test_a_revoked_family_link_carries_only_what_the_stay_holds(
    ward, make_person, make_partner, shared_sim
):
    partner, _ = make_partner()
    mother = make_person("母", birth=date(1985, 1, 1))
    child = make_person("子", birth=date(2016, 1, 1))
    line = grant_line(partner, mother)
    link = link_family(mother, child)
    encounter = encounter_admit(actor="test", person=child, department=ward, kind="inpatient")
    assert encounter.deposit_waived and encounter.funding_link == link
    charge(encounter, 200_000)
    family_link_revoke(actor="test", link_id=link.pk)

    with override_settings(INSURER_URL=shared_sim.url):
        with pytest.raises(SelfPayNotCovered):
            encounter_settle(actor="test", encounter_id=encounter.pk)
        settlement = encounter_settle(actor="test", encounter_id=encounter.pk, channel="cash")
    assert (settlement.paid_by_credit, settlement.paid_by_channel) == (50_000, 150_000)
    assert account_balance(line.drawn_account).posted == 50_000
    assert timezone.now() - timedelta(minutes=5) < settlement.settled_at


def test_the_bill_says_which_lines_can_still_be_reversed(ward, make_person):
    from settlement.selectors import encounter_bill
    from settlement.services.encounters import charge_reverse

    patient = make_person("病人", birth=date(1970, 1, 1))
    encounter = encounter_admit(actor="test", person=patient, department=ward, kind="inpatient")
    charge(encounter, 10_000)
    charge(encounter, 2_000)
    first, second = encounter.charges.order_by("pk")
    reversal = charge_reverse(actor="test", charge_id=first.pk, reason="wrong item")

    def flags() -> dict[int, tuple[bool, bool]]:
        bill = encounter_bill(encounter)
        return {
            item["id"]: (item["reversed"], item["reversible"])
            for day in bill["days"]
            for item in day["items"]
        }

    assert flags() == {
        first.pk: (True, False),
        second.pk: (False, True),
        reversal.pk: (False, False),
    }
    InsuranceClaim.objects.create(encounter=encounter, setl_id="S-2", medfee_sumamt=2_000)
    assert flags()[second.pk] == (False, False)  # the insurer holds the bill now


def test_reading_a_visit_and_its_bill_writes_nothing(ward, make_person, staff_client):
    from ledger.models import Account

    visit = encounter_admit(
        actor="test", person=make_person("林木"), department=ward, kind=Encounter.Kind.OUTPATIENT
    )
    cashier = staff_client("cashier", ward.institution)
    accounts = Account.objects.count()
    assert cashier.get(f"/api/v1/encounters/{visit.pk}/").json()["deposit"]["paid"] == "0.00"
    assert cashier.get(f"/api/v1/encounters/{visit.pk}/bill/").json()["paid"] == "0.00"
    assert Account.objects.count() == accounts


def test_a_deposit_or_charges_sent_again_with_their_key_take_effect_once(ward, make_person):
    from ledger.models import Transaction
    from settlement.models import Charge, Deposit
    from settlement.services.encounters import deposit_pay

    stay = encounter_admit(
        actor="test", person=make_person("李雷"), department=ward, kind=Encounter.Kind.INPATIENT
    )
    postings = Transaction.objects.count()
    first = deposit_pay(actor="t", encounter_id=stay.pk, amount=50_000, channel="cash", key="k1")
    again = deposit_pay(actor="t", encounter_id=stay.pk, amount=50_000, channel="cash", key="k1")
    assert again.pk == first.pk and Deposit.objects.filter(encounter=stay).count() == 1
    items = [charge_item(8_000)]
    lines = charges_post(actor="t", encounter_id=stay.pk, items=items, key="k2")
    assert charges_post(actor="t", encounter_id=stay.pk, items=items, key="k2") == lines
    assert Transaction.objects.count() == postings + 2
    # Another key is another deposit and another line, as two real payments are.
    deposit_pay(actor="t", encounter_id=stay.pk, amount=50_000, channel="cash", key="k3")
    charges_post(actor="t", encounter_id=stay.pk, items=items, key="k4")
    assert Deposit.objects.filter(encounter=stay).count() == 2
    assert Charge.objects.filter(encounter=stay).count() == 2
    assert Transaction.objects.count() == postings + 4


def test_the_insurer_is_sent_the_standing_lines_in_day_order(ward, make_person):
    """A reversed line and its reversal are left out, and so is a line of no amount; the rest go
    by service day, then as they were posted."""
    from settlement.services.encounters import charge_reverse
    from settlement.services.insurer_claims import fee_lines

    patient = make_person("病人", birth=date(1970, 1, 1))
    encounter = encounter_admit(actor="test", person=patient, department=ward, kind="inpatient")
    today = timezone.localdate()
    Encounter.objects.filter(pk=encounter.pk).update(admitted_at=timezone.now() - timedelta(days=2))
    charges_post(
        key=uuid4().hex,
        actor="test",
        encounter_id=encounter.pk,
        items=[
            charge_item(1_000, code="TODAY-1"),
            charge_item(2_000, code="WRONG"),
            charge_item(0, code="FREE"),
            charge_item(3_000, code="YESTERDAY", service_date=today - timedelta(days=1)),
            charge_item(4_000, code="TODAY-2"),
        ],
    )
    wrong = encounter.charges.get(code="WRONG")
    charge_reverse(actor="test", charge_id=wrong.pk, reason="wrong item")

    lines = fee_lines(encounter)
    assert [(line.code, line.amount, line.service_date) for line in lines] == [
        ("YESTERDAY", 3_000, today - timedelta(days=1)),
        ("TODAY-1", 1_000, today),
        ("TODAY-2", 4_000, today),
    ]
    assert lines.total == 8_000 == sum(encounter.charges.values_list("amount", flat=True))
