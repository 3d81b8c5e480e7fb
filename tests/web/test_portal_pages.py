"""The patient portal: who may open which page, and a patient's own pages in a real browser.

Every portal page is tried anonymously (→ sign-in), as a cashier (403) and as another patient
(404 for objects that are not theirs). The browser tests sign in with an SMS code, read the
credit line, link a minor child (with field errors in Chinese), read the daily bill, settle,
check the receipt's verification code, and read the bill on a phone-sized screen.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import Department, FamilyLink, Person, SmsCode
from accounts.selectors import person_id_number
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import patient_user_ensure, staff_create
from settlement.models import Encounter, Receipt, Receivable
from settlement.services.encounters import (
    ChargeItem,
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.settle import encounter_settle
from tests.factories import grant_line, home_institution, link_family, make_id_number
from tests.web.conftest import sms_sign_in

ROOT = Path(__file__).resolve().parents[2]
PHONE_A = "13900000001"
PHONE_B = "13900000002"


@dataclass
class World:
    a: Person
    b: Person
    child: Person
    encounter_a: Encounter
    encounter_b: Encounter
    receipt_a: Receipt
    receipt_b: Receipt
    link_b: FamilyLink


def _admit_with_charges(person: Person, department: Department) -> Encounter:
    encounter = encounter_admit(
        actor="test", person=person, department=department, kind="inpatient"
    )
    Encounter.objects.filter(pk=encounter.pk).update(admitted_at=timezone.now() - timedelta(days=1))
    today = timezone.localdate()
    days = [
        [
            ChargeItem("D001", "头孢", "drug", "A", Decimal(1), 100_000, today - timedelta(days=1)),
            ChargeItem("E007", "CT", "exam", "B", Decimal(2), 20_000, today - timedelta(days=1)),
        ],
        [
            ChargeItem("R100", "单人病房", "bed", "C", Decimal(1), 15_000, today),
            ChargeItem("D002", "输液", "drug", "A", Decimal("1.5"), 20_000, today),
        ],
    ]
    for items in days:
        charges_post(key=uuid4().hex, actor="test", encounter_id=encounter.pk, items=items)
    return encounter


def _settle_offline(encounter: Encounter) -> Receipt:
    # The insurer at a closed port: settled as self-pay on the credit line, insurance deferred.
    with override_settings(INSURER_URL="http://127.0.0.1:9", INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=encounter.pk)
    return Receipt.objects.get(encounter=encounter, superseded_by__isnull=True)


@pytest.fixture
def world(make_person: Any, make_partner: Any) -> World:
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="PED", name="儿科", default_deposit=200_000
    )
    department.refresh_from_db()
    partner, _ = make_partner("厦门国际银行", grace_days=10)
    a = make_person("陈静", birth=date(1988, 3, 14), phone=PHONE_A)
    b = make_person("王磊", birth=date(1985, 6, 2), phone=PHONE_B)
    child = make_person("陈小雨", birth=date(2015, 9, 1))
    b_child = make_person("王小明", birth=date(2016, 1, 9))
    for person in (a, b):
        patient_user_ensure(actor="test", person=person)
        grant_line(partner, person, limit=300_000)
    link_b = link_family(b, b_child)
    encounter_a = _admit_with_charges(a, department)
    encounter_b = _admit_with_charges(b, department)
    receipt_a = _settle_offline(encounter_a)
    receipt_b = _settle_offline(encounter_b)
    return World(a, b, child, encounter_a, encounter_b, receipt_a, receipt_b, link_b)


def portal_pages(w: World) -> list[tuple[str, str]]:
    """(method, path) of every portal page, on objects that belong to patient A."""
    return [
        ("get", "/portal/"),
        ("get", "/portal/owed/"),
        ("get", "/portal/family/"),
        ("post", "/portal/family/add/minor/"),
        ("post", "/portal/family/add/parent/"),
        ("post", f"/portal/family/{w.link_b.pk}/revoke/"),
        ("get", "/portal/encounters/"),
        ("get", f"/portal/encounters/{w.encounter_a.pk}/"),
        ("get", f"/portal/receipts/{w.receipt_a.receipt_no}/"),
        ("get", "/portal/messages/"),
    ]


# --- who may open what (Django test client) ---------------------------------------------------


@pytest.mark.django_db
def test_every_portal_page_sends_the_anonymous_to_sign_in_and_refuses_staff(world, client):
    for method, url in portal_pages(world):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/portal/sign-in/?next="), url
    cashier, _ = staff_create(
        actor="test", institution=home_institution(), username="cashier1", role="cashier"
    )
    client.force_login(cashier)
    for method, url in portal_pages(world):
        assert getattr(client, method)(url).status_code == 403, url


@pytest.mark.django_db
def test_a_patient_sees_only_their_own_data(world, client):
    client.force_login(world.a.user)
    for method, url in portal_pages(world):
        if method == "get":
            assert getattr(client, method)(url).status_code == 200, url
    mine = client.get(f"/portal/encounters/{world.encounter_a.pk}/").content.decode()
    assert "头孢" in mine and "1400.00" in mine and "450.00" in mine
    # B's encounter, bill, receipt and link are not found for A, and nothing of B's is listed.
    assert client.get(f"/portal/encounters/{world.encounter_b.pk}/").status_code == 404
    assert client.get(f"/portal/receipts/{world.receipt_b.receipt_no}/").status_code == 404
    code = world.receipt_b.verification_code
    assert (
        client.get(f"/portal/receipts/{world.receipt_b.receipt_no}/?code={code}").status_code == 404
    )
    assert client.post(f"/portal/family/{world.link_b.pk}/revoke/").status_code == 404
    world.link_b.refresh_from_db()
    assert world.link_b.status == FamilyLink.Status.ACTIVE
    for url in ("/portal/", "/portal/owed/", "/portal/family/", "/portal/encounters/"):
        body = client.get(url).content.decode()
        assert "王" not in body, url
        assert str(world.encounter_b.pk) not in body, url
    owed = client.get("/portal/owed/").content.decode()
    assert "1850.00" in owed and "厦门国际银行" in owed
    # A's own revoke works only on A's link.
    link = link_family(world.a, world.child)
    client.force_login(world.b.user)
    assert client.post(f"/portal/family/{link.pk}/revoke/").status_code == 404
    assert client.get(f"/portal/encounters/{world.encounter_a.pk}/").status_code == 404
    client.force_login(world.a.user)
    assert client.post(f"/portal/family/{link.pk}/revoke/").status_code == 302
    link.refresh_from_db()
    assert link.status == FamilyLink.Status.REVOKED


@pytest.mark.django_db
def test_family_forms_say_what_is_wrong_by_the_field(world, client, settings):
    client.force_login(world.a.user)
    no_consent = client.post("/portal/family/add/minor/", {"minor-id_number": "x"})
    assert no_consent.status_code == 200
    form = no_consent.context["minor_form"]
    assert set(form.errors) == {"name", "id_number", "consent"}
    unknown = make_id_number(date(2016, 2, 3))
    not_enrolled = client.post(
        "/portal/family/add/minor/",
        {"minor-name": "某人", "minor-id_number": unknown, "minor-consent": "on"},
    )
    assert "没有" in not_enrolled.context["minor_form"].errors["id_number"][0]
    wrong_name = client.post(
        "/portal/family/add/minor/",
        {
            "minor-name": "别人",
            "minor-id_number": person_id_number(world.child),
            "minor-consent": "on",
        },
    )
    assert (
        wrong_name.context["minor_form"].errors["id_number"]
        == not_enrolled.context["minor_form"].errors["id_number"]
    )  # a wrong name and an unknown number read the same: nobody learns who is enrolled
    adult = client.post(
        "/portal/family/add/minor/",
        {
            "minor-name": world.b.name,
            "minor-id_number": person_id_number(world.b),
            "minor-consent": "on",
        },
    )
    assert list(adult.context["minor_form"].errors) == ["id_number"]
    assert not FamilyLink.objects.filter(payer=world.a).exists()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # English second
    english = client.post("/portal/family/add/minor/", {"minor-id_number": unknown})
    assert english.context["minor_form"].errors["consent"] == ["This field is required."]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    added = client.post(
        "/portal/family/add/parent/",
        {
            "parent-name": world.child.name,
            "parent-id_number": person_id_number(world.child),
            "parent-consent": "on",
        },
    )
    # A child is not a parent: said on the ID number, in Chinese.
    assert "只能为年长于自己的人（父母）付费" in added.context["parent_form"].errors["id_number"][0]
    assert not FamilyLink.objects.filter(payer=world.a).exists()


# --- in the browser ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_patient_signs_in_by_phone_sees_credit_and_links_a_child(world, page, live_server):
    sms_sign_in(page, live_server, PHONE_A)
    page.wait_for_url(f"{live_server.url}/portal/")
    line = page.locator(".credit-line").first
    assert line.locator(".limit").inner_text() == "¥3000.00"
    assert line.locator(".drawn").inner_text() == "¥1850.00"
    assert line.locator(".available").inner_text() == "¥1150.00"
    due = (timezone.localdate() + timedelta(days=10)).isoformat()
    assert due in line.locator(".due").inner_text()

    page.click("text=亲情付")
    form = page.locator("#add-minor")
    form.locator("input[name=minor-name]").fill(world.child.name)
    form.locator("input[name=minor-id_number]").fill(person_id_number(world.child))
    form.locator("button[type=submit]").click()
    errors = page.locator("#add-minor .errorlist")
    assert "必填" in errors.inner_text()  # the consent box, in Chinese

    form = page.locator("#add-minor")
    form.locator("input[name=minor-name]").fill(world.child.name)
    form.locator("input[name=minor-id_number]").fill("350203201509010000")
    form.locator("input[name=minor-consent]").check()
    form.locator("button[type=submit]").click()
    assert "身份证号" in page.locator("#add-minor .errorlist").inner_text()

    form = page.locator("#add-minor")
    form.locator("input[name=minor-name]").fill(world.child.name)
    form.locator("input[name=minor-id_number]").fill(person_id_number(world.child))
    form.locator("input[name=minor-consent]").check()
    form.locator("button[type=submit]").click()
    assert "陈小雨" in page.locator("table.links").inner_text()
    link = FamilyLink.objects.get(payer=world.a, beneficiary=world.child)
    assert (link.relation, link.consent_channel, link.consent_by) == (
        "parent_of_minor",
        "portal",
        "陈静",
    )

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"tr[data-link='{link.pk}'] button").click()
    page.wait_for_load_state()
    assert "已撤销" in page.locator(f"tr[data-link='{link.pk}']").inner_text()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_daily_bill_receipt_check_and_phone_screen(world, page, browser, live_server):
    sms_sign_in(page, live_server, PHONE_A)
    page.wait_for_url(f"{live_server.url}/portal/")
    page.click("text=就诊与账单")
    page.locator("table.encounters a").first.click()
    days = page.locator("table.day")
    assert days.count() == 2
    assert days.nth(0).locator(".subtotal").inner_text() == "¥1400.00"
    assert days.nth(1).locator(".subtotal").inner_text() == "¥450.00"
    assert page.locator(".bill .total").inner_text() == "¥1850.00"
    assert page.locator(".settlement .self-pay").inner_text() == "¥1850.00"

    page.locator(".receipts a").first.click()
    code = page.locator(".verification-code").inner_text()
    assert code == world.receipt_a.verification_code
    page.fill("input[name=code]", "WRONG")
    page.click("form[method=get] button[type=submit]")
    assert "不符" in page.locator(".verify-result").inner_text()
    page.fill("input[name=code]", code.lower())
    page.click("form[method=get] button[type=submit]")
    assert "真实" in page.locator(".verify-result").inner_text()

    owed = Receivable.objects.get(encounter=world.encounter_a)
    page.click("text=待还款")
    assert owed.due_date.isoformat() in page.locator("table.owed").inner_text()

    phone = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    try:
        small = phone.new_page()
        errors: list[str] = []
        small.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        # A second sign-in a minute after the first (codes are one a minute per phone).
        SmsCode.objects.update(created_at=timezone.now() - timedelta(minutes=1))
        sms_sign_in(small, live_server, PHONE_A)
        small.wait_for_url(f"{live_server.url}/portal/")
        for url in ("/portal/", f"/portal/encounters/{world.encounter_a.pk}/", "/portal/family/"):
            small.goto(f"{live_server.url}{url}")
            fits = small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert fits, url
        assert not errors, errors
    finally:
        phone.close()


# --- what the pages call things: due dates, categories, classes, channels ---------------------


def _settle_outpatient_offline(person: Person, department: Department, price: int) -> Receivable:
    visit = encounter_admit(actor="test", person=person, department=department, kind="outpatient")
    charges_post(
        key=uuid4().hex,
        actor="test",
        encounter_id=visit.pk,
        items=[ChargeItem("L001", "血常规", "lab", "A", Decimal(1), price, timezone.localdate())],
    )
    _settle_offline(visit)
    return Receivable.objects.get(encounter=visit)


@pytest.mark.django_db
def test_the_next_due_date_shows_what_falls_due_then_and_a_debt_reads_as_one(world, client):
    """¥680 due first and ¥1,850 later: the date shows ¥680 beside it, the line's total apart;
    an unpaid debt is not yet due or overdue, never "not settled"."""
    today = timezone.localdate()
    later = Receivable.objects.get(encounter=world.encounter_a)
    Receivable.objects.filter(pk=later.pk).update(due_date=today + timedelta(days=40))
    sooner = _settle_outpatient_offline(world.a, world.encounter_a.department, 68_000)
    assert sooner.due_date == today + timedelta(days=10)
    client.force_login(world.a.user)

    home = client.get("/portal/").content.decode()
    assert f"{sooner.due_date.isoformat()} (¥680.00)" in home
    assert "(¥2530.00)" not in home and "¥2530.00" in home  # owed in all, on its own

    owed = client.get("/portal/owed/").content.decode()
    assert "未到期" in owed and "未结算" not in owed
    Receivable.objects.filter(pk=sooner.pk).update(due_date=today - timedelta(days=1))
    owed = client.get("/portal/owed/").content.decode()
    assert "已逾期" in owed and "未到期" in owed  # past due before the nightly task marks it
    bill = client.get(f"/portal/encounters/{world.encounter_a.pk}/").content.decode()
    assert "未到期" in bill and "未结算" not in bill


@pytest.mark.django_db
def test_the_bill_says_categories_classes_and_channels_in_the_page_language(
    world, client, settings, make_person
):
    client.force_login(world.a.user)
    html = client.get(f"/portal/encounters/{world.encounter_a.pk}/").content.decode()
    for said in ("药品费", "检查费", "床位费", "甲类", "乙类", "丙类"):
        assert said in html, said
    for code in ("· drug ·", "· exam ·", "· bed ·", "· A<", "· B<", "· C<"):
        assert code not in html, code

    # A deposit by bank card, most of it refunded: the channel is said in Chinese.
    patient = make_person("郭敏", birth=date(1979, 11, 11), phone="13900000009")
    patient_user_ensure(actor="test", person=patient)
    stay = encounter_admit(
        actor="test", person=patient, department=world.encounter_a.department, kind="inpatient"
    )
    deposit_pay(key=uuid4().hex, actor="test", encounter_id=stay.pk, amount=260_000, channel="card")
    charges_post(
        key=uuid4().hex,
        actor="test",
        encounter_id=stay.pk,
        items=[ChargeItem("D001", "头孢", "drug", "A", Decimal(1), 66_000, timezone.localdate())],
    )
    _settle_offline(stay)
    client.force_login(patient.user)
    html = client.get(f"/portal/encounters/{stay.pk}/").content.decode()
    assert "经银行卡退款 ¥1940.00" in html and "bank card" not in html

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # English second
    english = client.get(f"/portal/encounters/{stay.pk}/").content.decode()
    assert "Refund of ¥1940.00 through Bank card" in english
    assert "· Drugs · Class A (甲)" in english
