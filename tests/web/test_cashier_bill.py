"""The bill by day (每日清单) on the cashier's encounter page: a section a day, one reverse form
for the page whose reason a line's own button sends with that line, the rows built in Python
(``settlement.web.bill_rows``) and escaped there; a long stay's earlier days folded."""

import re
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import staff_create
from settlement.models import Channel, Charge, Encounter
from settlement.services.encounters import ChargeItem, charge_reverse, charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from settlement.web.bill_rows import ALL_DAYS_OPEN_UP_TO
from tests.factories import home_institution
from tests.web.conftest import sign_in

PASSWORD = "desk-password-1"  # noqa: S105 - a test account


@pytest.fixture
def department():
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=200_000
    )
    department.refresh_from_db()
    return department


def cashier(username: str = "cashier-bill"):
    user, _ = staff_create(
        actor="test", institution=home_institution(), username=username, role="cashier"
    )
    user.set_password(PASSWORD)
    user.save()
    return user


def stay_with(
    department, make_person, days: int, per_day: int, name: str = "检查", patient: str = "林海"
) -> Encounter:
    """An inpatient stay of ``days`` days to today, ``per_day`` lines a day."""
    person = make_person(patient, birth=date(1970, 2, 2))
    encounter = encounter_admit(
        actor="test", person=person, department=department, kind=Encounter.Kind.INPATIENT
    )
    Encounter.objects.filter(pk=encounter.pk).update(
        admitted_at=timezone.now() - timedelta(days=days)
    )
    today = timezone.localdate()
    items = [
        ChargeItem(f"C{n}", name, "drug", "A", Decimal(1), 100 + n, today - timedelta(days - 1 - d))
        for d in range(days)
        for n in range(per_day)
    ]
    charges_post(actor="test", encounter_id=encounter.pk, items=items, key=uuid.uuid4().hex)
    return encounter


def page_of(client: Client, encounter: Encounter) -> str:
    answer = client.get(f"/cashier/encounters/{encounter.pk}/")
    assert answer.status_code == 200
    return answer.content.decode()


@pytest.mark.django_db
def test_one_reverse_form_and_a_button_for_each_line_that_can_be_reversed(department, make_person):
    stay = stay_with(department, make_person, days=2, per_day=3)
    first = stay.charges.order_by("pk").first()
    charge_reverse(actor="test", charge_id=first.pk, reason="重复收费")
    reversal = stay.charges.get(reverses=first)
    client = Client()
    client.force_login(cashier())

    html = page_of(client, stay)
    assert len(re.findall(r"<form[^>]*reverse-form", html)) == 1
    assert re.search(r'<input type="text" id="reverse-reason" name="reason"[^>]* required', html)
    buttons = re.findall(r'<button form="reverse-form" name="charge" value="(\d+)"', html)
    others = stay.charges.exclude(pk__in=[first.pk, reversal.pk]).order_by("pk")
    assert buttons == [str(charge.pk) for charge in others]
    assert f'<tr class="charge reversed" data-charge="{first.pk}">' in html
    assert f'<tr class="charge reversal" data-charge="{reversal.pk}">' in html
    settled = stay_with(department, make_person, days=1, per_day=1, patient="林已结")
    Encounter.objects.filter(pk=settled.pk).update(status=Encounter.Status.SETTLED)
    settled_html = page_of(client, settled)
    assert 'id="reverse-form"' not in settled_html and "<button form=" not in settled_html


@pytest.mark.django_db
def test_what_the_his_sent_is_escaped_in_the_rows(department, make_person):
    stay = stay_with(
        department, make_person, days=1, per_day=1, name='<script>alert("x")</script>&'
    )
    charge_reverse(actor="test", charge_id=stay.charges.get().pk, reason="<b>错</b>")
    client = Client()
    client.force_login(cashier())

    html = page_of(client, stay)
    assert "<script>alert" not in html and "<b>错</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in html
    assert "&lt;b&gt;错&lt;/b&gt;" in html


@pytest.mark.django_db
def test_a_line_is_reversed_with_the_reason_and_the_day_comes_back(department, make_person):
    stay = stay_with(department, make_person, days=3, per_day=1)
    wrong = stay.charges.order_by("service_date").first()
    client = Client()
    client.force_login(cashier())

    refused = client.post(
        f"/cashier/encounters/{stay.pk}/", {"action": "reverse", "charge": wrong.pk}
    )
    assert refused.status_code == 200 and not Charge.objects.filter(reverses=wrong).exists()
    assert 'class="errorlist"' in refused.content.decode()

    answer = client.post(
        f"/cashier/encounters/{stay.pk}/",
        {"action": "reverse", "charge": wrong.pk, "reason": "重复收费"},
    )
    assert answer.status_code == 302
    assert answer["Location"].endswith(f"#day-{wrong.service_date.isoformat()}")
    assert Charge.objects.get(reverses=wrong).reason == "重复收费"


@pytest.mark.django_db
def test_a_long_stay_folds_its_earlier_days(department, make_person):
    per_day = ALL_DAYS_OPEN_UP_TO // 2 + 1  # two days are more than are shown all open
    stay = stay_with(department, make_person, days=3, per_day=per_day)
    client = Client()
    client.force_login(cashier())

    html = page_of(client, stay)
    days = re.findall(
        r'<details class="bill-day" id="day-([\d-]+)" data-date="[\d-]+"( open)?>', html
    )
    today = timezone.localdate()
    assert days == [
        ((today - timedelta(2)).isoformat(), ""),
        ((today - timedelta(1)).isoformat(), ""),
        (today.isoformat(), " open"),
    ]
    assert html.count('<tr class="charge"') == 3 * per_day  # folded days still hold their rows
    small = stay_with(department, make_person, days=2, per_day=2, patient="林小海")
    assert re.findall(r'data-date="[\d-]+"( open)?>', page_of(client, small)) == [" open"] * 2


class TestInABrowser:
    pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

    def test_enter_in_the_reason_field_reverses_nothing(
        self, page, live_server, department, make_person
    ):
        stay = stay_with(department, make_person, days=1, per_day=2)
        first, second = stay.charges.order_by("pk")
        cashier("cashier-enter")
        sign_in(page, live_server, "cashier-enter", PASSWORD)
        page.goto(f"{live_server.url}/cashier/encounters/{stay.pk}/")

        page.fill("#reverse-reason", "录入错误")
        page.press("#reverse-reason", "Enter")  # the form's default button is a disabled one
        with page.expect_navigation():
            page.click(f"tr[data-charge='{second.pk}'] button[name=charge]")
        reversed_ = Charge.objects.filter(reverses__isnull=False).values_list("reverses", flat=True)
        assert list(reversed_) == [second.pk]
        assert "reversed" in (page.get_attribute(f"tr[data-charge='{second.pk}']", "class") or "")

    def test_a_folded_day_opens_on_a_click_and_when_named_in_the_address(
        self, page, live_server, department, make_person
    ):
        stay = stay_with(department, make_person, days=2, per_day=ALL_DAYS_OPEN_UP_TO)
        first_day = (timezone.localdate() - timedelta(1)).isoformat()
        cashier("cashier-days")
        sign_in(page, live_server, "cashier-days", PASSWORD)
        url = f"{live_server.url}/cashier/encounters/{stay.pk}/"
        page.goto(url)

        folded = page.locator(f"#day-{first_day}")
        assert folded.get_attribute("open") is None
        assert not folded.locator("tr.charge").first.is_visible()
        assert folded.locator(".day-subtotal").is_visible()
        folded.locator("summary").click()
        assert folded.locator("tr.charge").first.is_visible()

        page.goto(f"{url}#day-{first_day}")
        page.reload()
        assert page.locator(f"#day-{first_day}").get_attribute("open") is not None


@pytest.mark.django_db
def test_the_receipt_lists_every_line_of_every_day(department, make_person):
    stay = stay_with(department, make_person, days=2, per_day=2, name="<i>药</i>")
    with override_settings(INSURER_URL="http://127.0.0.1:9", INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="test", encounter_id=stay.pk, channel=Channel.CASH)
    client = Client()
    client.force_login(cashier())

    html = client.get(f"/cashier/encounters/{stay.pk}/receipt/").content.decode()
    rows = re.findall(
        r'<tr><td>([\d-]+)</td><td>([^<]*)</td><td class="money">([\d.-]+)</td>'
        r'<td class="money">([\d.-]+)</td><td class="money">([\d.-]+)</td></tr>',
        html,
    )
    today = timezone.localdate()
    assert rows == [
        ((today - timedelta(days)).isoformat(), "&lt;i&gt;药&lt;/i&gt;", "1", price, price)
        for days in (1, 0)
        for price in ("1.00", "1.01")
    ]
