"""Errors on the pages are said in Chinese, on the field they concern, and an outside system's
technical text (the insurer client's OSError) never reaches a page."""

import uuid
from datetime import date, timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.services.family import family_link_create, family_links_lapse
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import patient_user_ensure, staff_create
from settlement.models import Encounter, InsuranceClaim
from settlement.services.encounters import encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import INSURER_DOWN

CHARGE = {
    "action": "charge",
    "code": "C1",
    "name": "诊查费",
    "category": "exam",
    "insurance_class": "C",
    "quantity": "1",
    "unit_price": "50.00",
}


@pytest.fixture
def ward():
    institution = institution_ensure(actor="test", code="XMERR", name="厦门市错误医院")
    department = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=0
    )
    department.refresh_from_db()
    return department


def staff(role: str) -> Client:
    """Staff of the hospital the visits are at (a desk sees its own institution's)."""
    hospital = institution_ensure(actor="test", code="XMERR", name="厦门市错误医院")
    user, _ = staff_create(actor="test", institution=hospital, username=f"{role}-errors", role=role)
    client = Client()
    client.force_login(user)
    return client


def visit(ward, person) -> Encounter:
    return encounter_admit(
        actor="test", person=person, department=ward, kind=Encounter.Kind.OUTPATIENT
    )


@pytest.mark.django_db
def test_a_charge_line_refused_by_the_service_is_said_on_its_field_in_chinese(ward, make_person):
    encounter = visit(ward, make_person("陈一", birth=date(1980, 1, 1)))
    before_admission = timezone.localdate(encounter.admitted_at) - timedelta(days=1)
    response = staff("cashier").post(
        f"/cashier/encounters/{encounter.pk}/",
        {**CHARGE, "token": str(uuid.uuid4()), "service_date": before_admission.isoformat()},
    )
    assert response.status_code == 200
    errors = response.context["charge_form"].errors
    assert errors["service_date"] == ["服务日期须在就诊开始日期与今天之间。"]
    assert "service_date must be" not in response.content.decode()
    assert not encounter.charges.exists()


@pytest.mark.django_db
def test_settling_without_cover_asks_for_a_channel_in_chinese_on_its_field(ward, make_person):
    encounter = visit(ward, make_person("陈二", birth=date(1981, 1, 1)))
    cashier = staff("cashier")
    today = timezone.localdate().isoformat()
    cashier.post(
        f"/cashier/encounters/{encounter.pk}/",
        {**CHARGE, "token": str(uuid.uuid4()), "service_date": today},
    )
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        response = cashier.post(
            f"/cashier/encounters/{encounter.pk}/", {"action": "settle", "channel": ""}
        )
    [said] = response.context["settle_form"].errors["channel"]
    assert "50.00" in said and "请选择支付方式" in said
    assert "self-pay" not in response.content.decode()


@pytest.mark.django_db
def test_a_settled_visit_refuses_a_charge_in_chinese(ward, make_person):
    encounter = visit(ward, make_person("陈三", birth=date(1982, 1, 1)))
    encounter_settle(actor="test", encounter_id=encounter.pk)  # no charges: no insurer call
    response = staff("cashier").post(
        f"/cashier/encounters/{encounter.pk}/",
        {**CHARGE, "token": str(uuid.uuid4()), "service_date": timezone.localdate().isoformat()},
    )
    # Settled, the page offers no charge form; one posted anyway is refused in words.
    [said] = response.context["charge_form"].non_field_errors()
    assert said == "本次就诊已结算，不能再修改。"


@pytest.mark.django_db
def test_claims_pages_say_why_in_chinese_not_the_insurer_clients_error(ward, make_person):
    encounter = visit(ward, make_person("陈四", birth=date(1983, 1, 1)))
    cashier = staff("cashier")
    cashier.post(
        f"/cashier/encounters/{encounter.pk}/",
        {**CHARGE, "token": str(uuid.uuid4()), "service_date": timezone.localdate().isoformat()},
    )
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=encounter.pk, channel="cash")
    claim = InsuranceClaim.objects.get(encounter=encounter)
    assert claim.status == "deferred" and claim.last_error  # kept for the API and the logs
    for client, url in ((cashier, "/cashier/claims/"), (staff("finance"), "/finance/claims/")):
        html = client.get(url).content.decode()
        assert "医保系统未应答，系统会自动重试。" in html, url
        assert claim.last_error[:40] not in html, url
        assert "Errno" not in html and "refused" not in html, url


@pytest.mark.django_db
def test_the_portal_says_a_refused_revocation_in_chinese(make_person):
    parent = make_person("陈父", birth=date(1980, 1, 1))
    child = make_person("陈子", birth=date(2015, 1, 1))
    link = family_link_create(
        actor="test",
        payer=parent,
        beneficiary=child,
        relation="parent_of_minor",
        consent=True,
        consent_by=parent.name,
        consent_channel="cashier",
    )
    assert family_links_lapse(today=date(2033, 1, 2)) == 1
    patient_user_ensure(actor="test", person=parent)
    parent.refresh_from_db()
    client = Client()
    client.force_login(parent.user)
    response = client.post(f"/portal/family/{link.pk}/revoke/", follow=True)
    said = [str(m) for m in response.context["messages"]]
    assert said == ["此关联已失效。"]
