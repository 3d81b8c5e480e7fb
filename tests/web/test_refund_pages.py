"""Refunds owed, on the pages: the cashier's refunds desk pays one out (in a real browser too),
the encounter page and the receipt show it paid with its date, and the patient's portal shows
it owed, then paid.

The owed refund is made as production makes one (``tests.settlement.refunds_owed``): cash at
the window while the insurer simulator was down, then the deferred claim settles.
"""

import re
from datetime import date

import pytest
from django.test import Client
from django.utils import timezone

from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import patient_user_ensure, staff_create
from ledger.models import Transaction
from ledger.selectors import account_balance
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.models import Refund
from settlement.services import house
from settlement.services.refunds import refund_pay
from tests.settlement.conftest import Simulator
from tests.settlement.refunds_owed import refund_owed
from tests.web.conftest import sign_in

PASSWORD = "desk-password-1"  # noqa: S105 - a test account
PHONE = "13900000077"
DESK = "/cashier/refunds/"


@pytest.fixture
def insurer(tmp_path):
    simulator = Simulator(tmp_path / "insurer-sim.json", tmp_path / "insurer-sim.log")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def owed(insurer, make_person) -> Refund:
    """¥980 owed to 林江, who paid a ¥1,000 bill in cash at 厦门市第三医院 while the insurer
    was down."""
    hospital = institution_ensure(actor="test", code="XMH3", name="厦门市第三医院")
    clinic = department_ensure(actor="test", institution=hospital, code="OPD", name="门诊")
    patient = make_person("林江", birth=date(1966, 6, 6), phone=PHONE)
    patient_user_ensure(actor="test", person=patient)
    refund = refund_owed(insurer, clinic, patient, 100_000)
    assert (refund.amount, refund.channel) == (98_000, "cash")
    return refund


def staff_user(username: str, role: str):
    """Staff of 厦门市第三医院, where the refund is owed (a desk sees its own institution's)."""
    hospital = institution_ensure(actor="test", code="XMH3", name="厦门市第三医院")
    user, _ = staff_create(actor="test", institution=hospital, username=username, role=role)
    user.set_password(PASSWORD)
    user.save()
    return user


def desk_form(refund: Refund, token: str, reference: str, channel: str = "cash") -> dict:
    prefix = f"refund-{refund.pk}"
    return {
        "refund": str(refund.pk),
        f"{prefix}-token": token,
        f"{prefix}-channel": channel,
        f"{prefix}-reference": reference,
    }


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- who may open the desk, and the form's answers (Django test client) -----------------------


@pytest.mark.django_db
def test_only_the_desk_opens_the_refunds_page(owed, make_person):
    anonymous = Client()
    response = anonymous.get(DESK)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    for role in ("finance",):
        client = Client()
        client.force_login(staff_user(f"{role}-r", role))
        assert client.get(DESK).status_code == 403
        token = "7b0c56a8-3f43-4b4e-9b55-3f0d5a4f0c11"
        assert client.post(DESK, desk_form(owed, token, "R1")).status_code == 403
    patient = Client()
    patient.force_login(owed.encounter.person.user)
    assert patient.get(DESK).status_code == 403
    owed.refresh_from_db()
    assert owed.status == "owed"
    for role in ("cashier", "admin"):
        client = Client()
        client.force_login(staff_user(f"{role}-r", role))
        page = client.get(DESK)
        assert page.status_code == 200
        assert f'data-refund="{owed.pk}"' in text(page)
        assert 'href="/cashier/refunds/"' in text(client.get("/cashier/"))


@pytest.mark.django_db
def test_the_desk_pays_once_even_when_the_form_is_sent_twice(owed):
    client = Client()
    client.force_login(staff_user("cashier-r", "cashier"))
    form = desk_form(owed, "3f1e4c1a-8d2b-4c55-9f3e-2b7a9d6c0e01", "CASH-0001")
    first = client.post(DESK, form)
    assert (first.status_code, first["Location"]) == (302, DESK + "#paid")
    postings = Transaction.objects.count()
    again = client.post(DESK, form)  # a double click: where the first went, nothing done
    assert (again.status_code, again["Location"]) == (302, DESK + "#paid")
    assert Transaction.objects.count() == postings
    owed.refresh_from_db()
    assert (owed.status, owed.reference, owed.channel) == ("paid", "CASH-0001", "cash")
    assert owed.paid_by.startswith("staff:")
    # The same refund from a form opened before it was paid: refused, in Chinese.
    stale = client.post(DESK, desk_form(owed, "9d7c1b7e-61a4-4f0e-8c1f-5e0f3a2b6c77", "CASH-2"))
    assert stale.status_code == 200
    assert "这笔退款已经退还" in text(stale)
    assert Transaction.objects.count() == postings
    hospital = owed.encounter.institution
    assert account_balance(house.refunds_payable(hospital)).posted == 0
    chain_seal()
    assert verify_ledger().intact


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reference", "said"),
    [("", "必填"), ("R\x01", "控制字符"), ("x" * 65, "64")],
)
def test_a_bad_reference_is_said_next_to_its_field(owed, reference, said):
    client = Client()
    client.force_login(staff_user("cashier-r", "cashier"))
    response = client.post(DESK, desk_form(owed, "0b8f0c52-2a7e-4f4a-9b1c-7e3d5f6a8b90", reference))
    assert response.status_code == 200
    form = response.context["owed"][0]["form"]
    assert said in " ".join(form.errors["reference"])
    owed.refresh_from_db()
    assert owed.status == "owed"


@pytest.mark.django_db
def test_an_unknown_refund_on_the_desk_is_404(owed):
    client = Client()
    client.force_login(staff_user("cashier-r", "cashier"))
    form = desk_form(owed, "5c2d7a61-0f3b-4b8e-a1c2-9e8d7f6a5b43", "R1")
    form["refund"] = "987654"
    assert client.post(DESK, form).status_code == 404


# --- the patient's portal ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_portal_shows_the_refund_owed_then_paid(owed):
    client = Client()
    client.force_login(owed.encounter.person.user)
    before = text(client.get("/portal/refunds/"))
    owed_part = before.split('id="refunds-owed"')[1].split('id="refunds-paid"')[0]
    assert f'data-refund="{owed.pk}"' in owed_part
    assert "厦门市第三医院" in owed_part and "¥980.00" in owed_part
    assert "医保补结后退还" in owed_part and "待退还" in owed_part
    assert timezone.localtime(owed.created_at).strftime("%Y-%m-%d") in owed_part
    assert 'id="nothing-paid"' in before
    assert 'href="/portal/refunds/"' in text(client.get("/portal/"))

    paid = refund_pay(actor="staff:1:desk", refund_id=owed.pk, reference="CASH-9", key="k")
    after = text(client.get("/portal/refunds/"))
    paid_part = after.split('id="refunds-paid"')[1]
    assert f'data-refund="{owed.pk}"' in paid_part
    assert "厦门市第三医院" in paid_part and "¥980.00" in paid_part and "已退还" in paid_part
    assert timezone.localtime(paid.paid_at).strftime("%Y-%m-%d") in paid_part
    assert 'id="nothing-owed"' in after

    # Staff do not open the portal.
    desk = Client()
    desk.force_login(staff_user("cashier-p", "cashier"))
    assert desk.get("/portal/refunds/").status_code == 403


# --- the desk in a browser --------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_cashier_pays_a_refund_out_at_the_desk(owed, page, live_server):
    staff_user("cashier-b", "cashier")
    sign_in(page, live_server, "cashier-b", PASSWORD)
    page.wait_for_url(f"{live_server.url}/cashier/")
    with page.expect_navigation():
        page.click("nav >> text=待退款")
    row = page.locator(f"#refund-{owed.pk}")
    assert "林江" in row.inner_text() and "980.00" in row.inner_text()
    channel = row.locator(f"select[name=refund-{owed.pk}-channel]")
    assert channel.input_value() == "cash"  # the channel the patient paid by
    row.locator(f"input[name=refund-{owed.pk}-reference]").fill("CASH-20261206-01")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()

    assert page.locator(f"#refund-{owed.pk}").count() == 0
    assert page.locator("#no-refunds").is_visible()
    paid_row = page.locator(f"#refunds-paid tr[data-refund='{owed.pk}']")
    assert "CASH-20261206-01" in paid_row.inner_text() and "现金" in paid_row.inner_text()
    owed.refresh_from_db()
    assert (owed.status, owed.reference, owed.channel) == ("paid", "CASH-20261206-01", "cash")
    hospital = owed.encounter.institution
    assert account_balance(house.refunds_payable(hospital)).posted == 0
    assert account_balance(house.clearing(hospital, "cash")).posted == 2_000

    # The encounter page and the receipt show it paid, with its date.
    day = timezone.localtime(owed.paid_at).strftime("%Y-%m-%d")
    page.goto(f"{live_server.url}/cashier/encounters/{owed.encounter_id}/")
    refund_row = page.locator("#refunds tr[data-reason='insurance_reversal']")
    assert refund_row.get_attribute("data-status") == "paid"
    assert day in refund_row.inner_text() and "已退还" in refund_row.inner_text()
    assert "CASH-20261206-01" in refund_row.inner_text()
    page.goto(f"{live_server.url}/cashier/encounters/{owed.encounter_id}/receipt/")
    on_receipt = page.locator(f"#receipt-refunds tr[data-refund='{owed.pk}']")
    assert on_receipt.get_attribute("data-status") == "paid"
    assert day in on_receipt.inner_text() and "980.00" in on_receipt.inner_text()
    chain_seal()
    assert verify_ledger().intact
