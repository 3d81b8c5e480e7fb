"""The cashier console: who may see it, and the desk's work in a real browser.

The browser tests follow the worked example: a minor admitted on a parent's line (deposit
waived), charges on two days, the bill by day, settlement with the insurer simulator, the
receipt; then reversing a charge, a deposit amount refused in Chinese, and the outage banner
when the insurer simulator is stopped.
"""

import re
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import Person
from accounts.selectors import person_id_number
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import patient_user_ensure, staff_create
from settlement.models import Channel, Encounter, InsuranceClaim
from settlement.services.encounters import (
    ChargeItem,
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.settle import encounter_settle
from tests.factories import grant_line, home_institution
from tests.settlement.conftest import Simulator
from tests.web.conftest import sign_in

PASSWORD = "desk-password-1"  # noqa: S105 - a test account


@pytest.fixture
def department():
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="PED", name="儿科", default_deposit=200_000
    )
    department.refresh_from_db()
    return department


def staff_user(username: str, role: str):
    user, _ = staff_create(
        actor="test", institution=home_institution(), username=username, role=role
    )
    user.set_password(PASSWORD)
    user.save()
    return user


def charge(code: str, name: str, category: str, klass: str, quantity: str, price: int, day: date):
    return ChargeItem(code, name, category, klass, Decimal(quantity), price, day)


# --- who may see the pages --------------------------------------------------------------------


@pytest.fixture
def pages(department, make_person):
    """Every cashier page, with the objects its URL needs (one settled, zero-bill visit)."""
    person = make_person("王芳", birth=date(1985, 1, 2))
    visit = encounter_admit(
        actor="test", person=person, department=department, kind=Encounter.Kind.OUTPATIENT
    )
    encounter_settle(actor="test", encounter_id=visit.pk)  # no charges: the insurer is not asked
    return [
        "/cashier/",
        "/cashier/?q=王",
        "/cashier/persons/new/",
        f"/cashier/persons/{person.pk}/",
        f"/cashier/encounters/{visit.pk}/",
        f"/cashier/encounters/{visit.pk}/receipt/",
        "/cashier/claims/",
    ]


@pytest.mark.django_db
def test_anonymous_is_sent_to_sign_in(pages):
    client = Client()
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url
    assert client.post(pages[3], {"action": "admit"}).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["patient", "finance"])
def test_other_roles_are_refused(pages, role, make_person):
    client = Client()
    if role == "patient":
        patient = make_person("李雷", birth=date(1990, 6, 1))
        client.force_login(patient_user_ensure(actor="test", person=patient))
    else:
        client.force_login(staff_user("finance1", "finance"))
    for url in pages:
        assert client.get(url).status_code == 403, url
    assert client.post(pages[3], {"action": "admit"}).status_code == 403
    assert client.post(pages[4], {"action": "settle"}).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["cashier", "admin"])
def test_cashier_and_admin_see_every_page(pages, role):
    client = Client()
    client.force_login(staff_user(f"{role}1", role))
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Content-Language"] == "zh-hans", url


@pytest.mark.django_db
def test_a_domain_error_lands_on_its_field(department, make_person):
    """The service's own check (a deposit on a settled visit, a duplicate ID number) is shown
    on the form, with a 400, and nothing is posted."""
    person = make_person("赵六", birth=date(1975, 3, 3))
    client = Client()
    client.force_login(staff_user("cashier2", "cashier"))
    response = client.post(
        "/cashier/persons/new/",
        {"name": "赵六", "id_number": person_id_number(person), "phone": ""},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["id_number"]
    assert Person.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "birth", "said"),
    [
        ("\u200b\u202e", "19850102", "姓名至少要有一个可见字符。"),
        ("张\x07三", "19850102", "姓名不能包含控制字符。"),
        ("张三", "18991231", "身份证号码中的出生日期早于1900年。"),
    ],
)
def test_a_refused_name_or_birth_date_is_said_in_chinese(department, name, birth, said):
    from stdnum.cn import ric

    base = f"350203{birth}011"
    client = Client()
    client.force_login(staff_user("cashier3", "cashier"))
    response = client.post(
        "/cashier/persons/new/",
        {"name": name, "id_number": base + ric.calc_check_digit(base + "0"), "phone": ""},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert said in response.content.decode()
    assert not Person.objects.exists()


@pytest.mark.django_db
def test_a_form_sent_twice_takes_effect_once(department, make_person):
    """A double click or a resent admission (the same one-time token) admits once, and both
    answers go to the same visit; a new form (a new token) admits again."""
    person = make_person("钱七", birth=date(1980, 6, 6))
    client = Client()
    client.force_login(staff_user("cashier3", "cashier"))
    form = {"action": "admit", "department": department.pk, "kind": "outpatient"}
    token = str(uuid.uuid4())
    first = client.post(f"/cashier/persons/{person.pk}/", {**form, "token": token})
    again = client.post(f"/cashier/persons/{person.pk}/", {**form, "token": token})
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"]
    assert Encounter.objects.filter(person=person).count() == 1
    other = client.post(f"/cashier/persons/{person.pk}/", {**form, "token": str(uuid.uuid4())})
    assert other["Location"] != first["Location"]
    assert Encounter.objects.filter(person=person).count() == 2


# --- the desk in a browser --------------------------------------------------------------------


@pytest.fixture
def insurer(tmp_path):
    """The insurer simulator as a real process; the live server (a thread here) is told."""
    simulator = Simulator(tmp_path / "insurer-sim.json", tmp_path / "insurer-sim.log")
    simulator.start()
    with override_settings(INSURER_URL=simulator.url, INSURER_TIMEOUT_SECONDS=3):
        yield simulator
    simulator.stop()


def submit(page, selector: str) -> None:
    with page.expect_navigation():
        page.click(f"{selector} button[type=submit]")


def post_charge(page, code, name, category, klass, quantity, price, day: date) -> None:
    page.fill("#id_code", code)
    page.fill("#id_name", name)
    page.fill("#id_category", category)
    page.select_option("#id_insurance_class", klass)
    page.fill("#id_quantity", quantity)
    page.fill("#id_unit_price", price)
    page.fill("#id_service_date", day.isoformat())
    submit(page, "#charge-form")
    assert page.locator("#charge-form .errorlist").count() == 0, page.inner_text("#charge-form")


class TestAtTheDesk:
    pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

    def test_minor_on_a_parents_line_from_admission_to_receipt(
        self, page, live_server, insurer, department, make_person, make_partner
    ):
        partner, _ = make_partner("厦门国际银行", grace_days=10)
        mother = make_person("陈静", birth=date(1988, 3, 14))
        child = make_person("陈小雨", birth=date(2015, 9, 1))
        grant_line(partner, mother)
        staff_user("cashier1", "cashier")
        sign_in(page, live_server, "cashier1", PASSWORD)
        assert page.url == f"{live_server.url}/cashier/"

        # Find the child by ID number (through the keyed hash) and link the mother's line.
        page.fill("#id_q", person_id_number(child))
        submit(page, "form[method=get]")
        with page.expect_navigation():
            page.click("#people a")
        assert page.inner_text("#person-name") == "陈小雨"
        page.click("#family-links summary")
        page.fill("#id_other_id_number", person_id_number(mother))
        page.select_option("#id_this_is", "beneficiary")
        page.select_option("#id_relation", "parent_of_minor")
        page.fill("#id_consent_by", "陈静")
        page.check("#id_consent")
        submit(page, "#link-form")
        assert "陈静" in page.inner_text("#family-links table")

        # Admission: the ¥2,000 deposit is waived and held on the mother's line.
        page.select_option("#id_department", str(department.pk))
        page.select_option("#id_kind", "inpatient")
        submit(page, "#admit-form")
        assert page.get_attribute("#deposit", "data-waived") == "true"
        assert page.inner_text("#deposit-required") == "2000.00"
        assert page.get_attribute("#funding-line", "data-own") == "false"
        assert page.get_attribute("#funding-line", "data-holder") == str(mother.pk)
        assert "陈静" in page.inner_text("#deposit-waived")
        encounter = Encounter.objects.get(person=child)
        assert encounter.deposit_waived and encounter.funding_line.person_id == mother.pk

        # Charges on two days, then the bill by day.
        Encounter.objects.filter(pk=encounter.pk).update(
            admitted_at=timezone.now() - timedelta(days=1)
        )
        today = timezone.localdate()
        yesterday = today - timedelta(days=1)
        page.reload()
        post_charge(page, "D001", "头孢", "drug", "A", "1", "1000.00", yesterday)
        post_charge(page, "E007", "CT", "exam", "B", "2", "200", yesterday)
        post_charge(page, "R100", "单人病房", "bed", "C", "1", "150.00", today)
        post_charge(page, "D002", "输液", "drug", "A", "1.5", "200.00", today)
        days = page.locator("details.bill-day")
        assert days.count() == 2
        assert [days.nth(i).get_attribute("data-date") for i in range(2)] == [
            yesterday.isoformat(),
            today.isoformat(),
        ]
        assert page.locator(".day-subtotal").all_inner_texts() == ["1400.00", "450.00"]
        assert page.inner_text("#bill-total") == "1850.00"
        assert page.inner_text("#bill-outstanding") == "1850.00"

        # Settle in one action: the insurer's split, the line pays the self-pay.
        submit(page, "#settle-form")
        assert page.get_attribute("#settlement-status", "data-status") == "settled"
        assert page.inner_text("#settled-total") == "1850.00"
        assert page.inner_text("#settled-fund") == "731.00"
        assert page.inner_text("#settled-account") == "500.00"
        assert page.inner_text("#settled-self-pay") == "619.00"
        assert page.get_attribute("#settled-funded-by", "data-funded-by") == "credit"
        assert page.inner_text("#settled-due-date") == (today + timedelta(days=10)).isoformat()
        receipt_no = page.inner_text("#receipt-no").strip()
        assert receipt_no and receipt_no == encounter.settlement.receipt_no
        assert page.locator("#charge-form, #settle-form, .reverse-form").count() == 0

        with page.expect_navigation():
            page.click("#receipt-link")
        assert page.inner_text("#receipt-no") == receipt_no
        assert page.inner_text("#receipt-total") == "1850.00"
        assert page.locator("#insurer-outage").count() == 0

    def test_reversing_a_charge(self, page, live_server, department, make_person):
        patient = make_person("周杰", birth=date(1979, 1, 18))
        encounter = encounter_admit(
            actor="test", person=patient, department=department, kind=Encounter.Kind.OUTPATIENT
        )
        today = timezone.localdate()
        charges_post(
            key=uuid.uuid4().hex,
            actor="test",
            encounter_id=encounter.pk,
            items=[
                charge("E007", "CT", "exam", "B", "1", 20_000, today),
                charge("L001", "血常规", "lab", "A", "1", 3_500, today),
            ],
        )
        staff_user("cashier1", "cashier")
        sign_in(page, live_server, "cashier1", PASSWORD)
        page.goto(f"{live_server.url}/cashier/encounters/{encounter.pk}/")
        assert page.inner_text("#bill-total") == "235.00"

        ct = encounter.charges.get(code="E007")
        row = page.locator(f"tr[data-charge='{ct.pk}']")
        # The page's one reverse form: the reason, then the line's own button.
        assert page.locator("form.reverse-form").count() == 1
        page.fill("#reverse-reason", "重复收费")
        with page.expect_navigation():
            row.locator("button[name=charge]").click()
        assert page.url.endswith(f"#day-{today.isoformat()}")
        assert "reversed" in (page.get_attribute(f"tr[data-charge='{ct.pk}']", "class") or "")
        reversal = encounter.charges.get(reverses=ct)
        assert reversal.amount == -20_000
        reversal_row = page.locator(f"tr[data-charge='{reversal.pk}']")
        assert "-200.00" in reversal_row.inner_text() and "重复收费" in reversal_row.inner_text()
        assert page.inner_text("#bill-total") == "35.00"
        assert page.locator(f"tr[data-charge='{ct.pk}'] button").count() == 0
        lab = encounter.charges.get(code="L001")
        assert page.locator(f"tr[data-charge='{lab.pk}'] button[name=charge]").count() == 1

    def test_a_bad_deposit_amount_is_refused_in_chinese(
        self, page, live_server, department, make_person
    ):
        patient = make_person("吴强", birth=date(1970, 7, 7))  # no credit line: a deposit is due
        encounter = encounter_admit(
            actor="test", person=patient, department=department, kind=Encounter.Kind.INPATIENT
        )
        staff_user("cashier1", "cashier")
        sign_in(page, live_server, "cashier1", PASSWORD)
        page.goto(f"{live_server.url}/cashier/encounters/{encounter.pk}/")
        assert page.get_attribute("#deposit", "data-waived") == "false"
        assert page.locator("#funding-line").count() == 0

        page.fill("#id_amount", "12.345")
        page.select_option("#id_channel", Channel.ALIPAY)
        submit(page, "#deposit-form")
        error = page.inner_text("#deposit-form .errorlist")
        assert "小数" in error and "2" in error, error
        assert page.input_value("#id_amount") == "12.345"
        assert not encounter.deposits.exists()

        page.fill("#id_amount", "2000.50")
        submit(page, "#deposit-form")
        assert page.inner_text("#deposit-paid") == "2000.50"
        assert encounter.deposits.get().amount == 200_050

    def test_the_outage_banner_when_the_insurer_is_down(
        self, page, live_server, insurer, department, make_person, make_partner
    ):
        partner, _ = make_partner("厦门银行", grace_days=10)
        patient = make_person("林海", birth=date(1982, 2, 2))
        grant_line(partner, patient)
        encounter = encounter_admit(
            actor="test", person=patient, department=department, kind=Encounter.Kind.INPATIENT
        )
        charges_post(
            key=uuid.uuid4().hex,
            actor="test",
            encounter_id=encounter.pk,
            items=[charge("R100", "病房", "bed", "C", "1", 15_000, timezone.localdate())],
        )
        staff_user("cashier1", "cashier")
        sign_in(page, live_server, "cashier1", PASSWORD)
        assert page.locator("#insurer-outage").count() == 0

        insurer.stop()
        page.goto(f"{live_server.url}/cashier/encounters/{encounter.pk}/")
        submit(page, "#settle-form")
        assert page.get_attribute("#settlement-status", "data-status") == (
            "settled_insurance_deferred"
        )
        assert page.inner_text("#settled-self-pay") == "150.00"
        assert page.locator("#insurer-outage").is_visible()
        assert InsuranceClaim.objects.get(encounter=encounter).status == "deferred"

        with page.expect_navigation():
            page.click("#insurer-outage a")
        assert page.locator(f"tr.claim[data-encounter='{encounter.pk}']").count() == 1
        assert page.locator("#insurer-outage").is_visible()


# --- what the pages call things: visits, deposits, categories, classes ------------------------

INSURER_DOWN = "http://127.0.0.1:9"  # nothing listens: the settlement is all self-pay


def shown(html: str, element_id: str) -> str:
    """The text of the element with this id (one without child elements)."""
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"#{element_id} is not on the page"
    return found.group(1).strip()


def cashier_client(username: str = "cashier-labels") -> Client:
    client = Client()
    client.force_login(staff_user(username, "cashier"))
    return client


@pytest.mark.django_db
def test_an_outpatient_visit_does_not_say_admitted(department, make_person):
    patient = make_person("郑伟", birth=date(1981, 4, 4))
    visit = encounter_admit(
        actor="test", person=patient, department=department, kind=Encounter.Kind.OUTPATIENT
    )
    charges_post(
        key=uuid.uuid4().hex,
        actor="test",
        encounter_id=visit.pk,
        items=[charge("L001", "血常规", "lab", "A", "1", 3_500, timezone.localdate())],
    )
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=visit.pk, channel=Channel.CASH)
    client = cashier_client()
    for url in (
        f"/cashier/encounters/{visit.pk}/",
        f"/cashier/encounters/{visit.pk}/receipt/",
        f"/cashier/persons/{patient.pk}/",
    ):
        html = client.get(url).content.decode()
        assert "入院" not in html, url
        assert "就诊时间" in html, url
    # An outpatient visit takes no deposit: the card does not say one is required.
    assert "应交" not in client.get(f"/cashier/encounters/{visit.pk}/").content.decode()
    stay = encounter_admit(
        actor="test", person=patient, department=department, kind=Encounter.Kind.INPATIENT
    )
    inpatient = client.get(f"/cashier/encounters/{stay.pk}/").content.decode()
    assert "入院时间" in inpatient and "应交" in inpatient


@pytest.mark.django_db
def test_after_settlement_the_deposit_shows_what_was_taken_used_and_refunded(
    department, make_person
):
    """¥2,600 taken by bank card, ¥660 of self-pay: the card says so, and that ¥1,940 went
    back (the API's ``deposit.paid``, what is held now, is 0.00 by then)."""
    department = department_ensure(
        actor="test",
        institution=department.institution,
        code=department.code,
        name=department.name,
        default_deposit=260_000,
    )
    patient = make_person("孙丽", birth=date(1972, 8, 8))  # no credit line: the deposit is paid
    stay = encounter_admit(
        actor="test", person=patient, department=department, kind=Encounter.Kind.INPATIENT
    )
    deposit_pay(
        key=uuid.uuid4().hex,
        actor="test",
        encounter_id=stay.pk,
        amount=260_000,
        channel=Channel.CARD,
    )
    today = timezone.localdate()
    charges_post(
        key=uuid.uuid4().hex,
        actor="test",
        encounter_id=stay.pk,
        items=[
            charge("D001", "头孢", "drug", "A", "1", 46_000, today),
            charge("E007", "CT", "exam", "B", "1", 20_000, today),
        ],
    )
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=stay.pk)

    html = cashier_client().get(f"/cashier/encounters/{stay.pk}/").content.decode()
    assert shown(html, "deposit-required") == "2600.00"
    assert shown(html, "deposit-paid") == "2600.00"
    assert shown(html, "deposit-used") == "660.00"
    assert shown(html, "deposit-refunded") == "1940.00"
    refunds = html[html.index('id="refunds"') :]
    refunds = refunds[: refunds.index("</table>")]
    for said in ("预交金结余退还", "银行卡", "1940.00", "已退还"):
        assert said in refunds, said


@pytest.mark.django_db
def test_the_bill_says_categories_and_insurance_classes_in_the_page_language(
    department, make_person, staff_client, settings
):
    patient = make_person("冯刚", birth=date(1966, 6, 6))
    visit = encounter_admit(
        actor="test", person=patient, department=department, kind=Encounter.Kind.OUTPATIENT
    )
    today = timezone.localdate()
    charges_post(
        key=uuid.uuid4().hex,
        actor="test",
        encounter_id=visit.pk,
        items=[
            charge("D001", "头孢", "drug", "A", "1", 1_000, today),
            charge("E007", "CT", "exam", "B", "1", 1_000, today),
            charge("R100", "病房", "bed", "C", "1", 1_000, today),
            charge("X001", "其他", "hisonly", "A", "1", 1_000, today),
        ],
    )
    client = cashier_client()
    html = client.get(f"/cashier/encounters/{visit.pk}/").content.decode()
    for said in ("药品费", "检查费", "床位费", "甲类", "乙类", "丙类", "hisonly"):
        assert said in html, said
    for code in ("drug", "exam", "bed"):
        assert f">{code}</td>" not in html, code
    assert '<option value="drug">药品费</option>' in html  # the form's suggestions too

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # English second
    english = client.get(f"/cashier/encounters/{visit.pk}/").content.decode()
    assert ">Drugs</td>" in english and ">Class B (乙)</td>" in english

    # The API's bill keeps its codes.
    bill = staff_client("cashier").get(f"/api/v1/encounters/{visit.pk}/bill/").json()
    items = [item for day in bill["days"] for item in day["items"]]
    assert [(i["category"], i["insurance_class"]) for i in items] == [
        ("drug", "A"),
        ("exam", "B"),
        ("bed", "C"),
        ("hisonly", "A"),
    ]
