"""The city platform's view of every institution and bank: its API and its page (in a real
browser too), for role platform only."""

from datetime import timedelta
from uuid import uuid4

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import staff_create
from core.money import fen_to_yuan
from settlement.models import Receivable
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.repayments import repayment_apply
from settlement.services.settle import encounter_settle
from tests.factories import charge_item, grant_line
from tests.settlement.conftest import Simulator
from tests.web.conftest import sign_in

pytestmark = pytest.mark.django_db
PASSWORD = "platform-pass-2026"


@pytest.fixture
def insurer(tmp_path):
    simulator = Simulator(tmp_path / "insurer-sim.json", tmp_path / "insurer-sim.log")
    simulator.start()
    with override_settings(INSURER_URL=simulator.url, INSURER_TIMEOUT_SECONDS=3):
        yield simulator
    simulator.stop()


@pytest.fixture
def city(insurer, make_person, make_partner):
    """Two hospitals and a community centre; a patient's visit at the first drawn on a bank's
    line and half repaid; another's visit at the second, who has no line, paid in cash."""
    first = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    second = institution_ensure(actor="test", code="XMH2", name="厦门市第二医院")
    institution_ensure(actor="test", code="XMC1", name="思明区社区卫生服务中心", kind="community")
    wards = [
        department_ensure(actor="test", institution=i, code="IM", name="内科")
        for i in (first, second)
    ]
    bank, _ = make_partner("厦门银行")
    patient = make_person()
    grant_line(bank, patient)
    walk_in = make_person(name="李四", birth=patient.birth_date.replace(year=1990))  # no line

    def stay(ward, patient, channel):
        encounter = encounter_admit(
            actor="test", person=patient, department=ward, kind="outpatient"
        )
        items = [charge_item(40_000, insurance_class="C")]
        charges_post(actor="test", encounter_id=encounter.pk, items=items, key=uuid4().hex)
        encounter_settle(actor="test", encounter_id=encounter.pk, channel=channel)
        return encounter

    on_credit = stay(wards[0], patient, None)
    stay(wards[1], walk_in, "cash")
    receivable = Receivable.objects.get(encounter=on_credit)
    repayment_apply(
        partner=bank,
        receivable_id=str(receivable.pk),
        amount=receivable.amount // 2,
        bank_txn_id="TXN-1",
        paid_at=timezone.now(),
    )
    return bank, receivable


def platform_user(username: str = "city-ops"):
    user, token = staff_create(actor="test", username=username, role="platform", institution=None)
    user.set_password(PASSWORD)
    user.save()
    return user, token


def test_the_summary_gives_each_institution_and_bank_its_figures(city):
    bank, receivable = city
    _, token = platform_user()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    answer = client.get("/api/v1/platform/summary/")

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["date"] == timezone.localdate().isoformat()
    by_code = {row["code"]: row for row in body["institutions"]}
    assert set(by_code) == {"XMH1", "XMH2", "XMC1"}
    drawn = receivable.amount
    first = by_code["XMH1"]
    assert (first["settlements_today"], first["drawn"], first["repaid"], first["overdue"]) == (
        1,
        fen_to_yuan(drawn),
        fen_to_yuan(drawn // 2),
        "0.00",
    )
    assert by_code["XMH2"]["settlements_today"] == 1 and by_code["XMH2"]["drawn"] == "0.00"
    # Enrolled at an institution: whom it has seen holding an open line (the walk-in has none).
    assert (first["enrolled"], first["lines"], first["limit_total"]) == (1, 1, "3000.00")
    assert (by_code["XMH2"]["enrolled"], by_code["XMH2"]["limit_total"]) == (0, "0.00")
    assert by_code["XMC1"]["kind"] == "community" and by_code["XMC1"]["settlements_today"] == 0
    assert body["banks"] == [
        {
            "name": "厦门银行",
            "enrolled": 1,
            "lines": 1,
            "limit_total": "3000.00",
            "drawn": fen_to_yuan(drawn),
            "repaid": fen_to_yuan(drawn // 2),
            "overdue": "0.00",
        }
    ]


def test_what_is_owed_past_its_due_date_counts_as_overdue_before_the_nightly_task(city):
    _, receivable = city
    Receivable.objects.filter(pk=receivable.pk).update(
        due_date=timezone.localdate() - timedelta(days=1)
    )
    _, token = platform_user()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    body = client.get("/api/v1/platform/summary/").json()
    owed = receivable.amount - receivable.amount // 2
    assert {row["code"]: row["overdue"] for row in body["institutions"]}["XMH1"] == (
        fen_to_yuan(owed)
    )
    assert body["banks"][0]["overdue"] == fen_to_yuan(owed)


@pytest.mark.parametrize("role", ["cashier", "finance", "admin"])
def test_the_summary_and_the_page_are_the_platforms_only(role):
    hospital = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    user, token = staff_create(actor="test", username=role, role=role, institution=hospital)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/platform/summary/").status_code == 403
    assert APIClient().get("/api/v1/platform/summary/").status_code == 401
    pages = Client()
    pages.force_login(user)
    assert pages.get("/platform/").status_code == 403


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_platform_operator_sees_every_institution_and_bank(city, page, live_server):
    platform_user("city-ops-b")
    sign_in(page, live_server, "city-ops-b", PASSWORD)
    page.wait_for_url(f"{live_server.url}/platform/")
    rows = page.locator("#institutions tbody tr")
    assert rows.count() == 3
    first = page.locator("#institutions tr[data-institution=XMH1]").inner_text()
    assert "厦门市第一医院" in first and "医院" in first
    assert (
        "社区卫生服务中心" in page.locator("#institutions tr[data-institution=XMC1]").inner_text()
    )
    assert "厦门银行" in page.locator("#banks").inner_text()
    bar = page.locator("#drawn-chart g[data-institution=XMH1] rect").first
    assert int(bar.get_attribute("width")) > 0
