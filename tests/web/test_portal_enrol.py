"""The portal's enrolment page against the shipped credit-score simulator (a child process)."""

from datetime import date
from typing import Any

import pytest
from django.utils.translation import override

from accounts.models import Consent, CreditApplication, CreditLine, Person
from accounts.services.staff import patient_user_ensure, staff_create
from settlement.services.enrolment import CONSENT_TEXT
from tests.factories import home_institution
from tests.settlement.test_enrolment import pin, platform, score_platform  # noqa: F401

pytestmark = pytest.mark.django_db

PAGE = "/portal/enrol/"


@pytest.fixture
def citizen(make_person: Any) -> Person:
    person = make_person("陈美玲", birth=date(1988, 3, 14))
    patient_user_ensure(actor="test", person=person)
    return person


def nothing_written() -> bool:
    return not (
        Consent.objects.exists()
        or CreditApplication.objects.exists()
        or CreditLine.objects.exists()
    )


def test_the_page_is_for_the_signed_in_patient_only(client, citizen):
    assert client.get(PAGE)["Location"].startswith("/portal/sign-in/?next=")
    cashier, _ = staff_create(
        actor="test", institution=home_institution(), username="cashier-e", role="cashier"
    )
    client.force_login(cashier)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"consent": "on"}).status_code == 403


def test_the_consent_is_shown_in_full_and_enrolment_grants_a_line(
    client,
    citizen,
    make_partner,
    score_platform,  # noqa: F811 - the fixture imported above
):
    partner, _ = make_partner("厦门国际银行")
    pin(score_platform, citizen, 640)
    client.force_login(citizen.user)

    page = client.get(PAGE).content.decode()
    with override("zh-hans"):
        words = str(CONSENT_TEXT)
    assert words in page and "白鹭分" in words
    assert 'type="checkbox" name="consent"' in page and partner.name in page

    # Not ticked: the form says so, and the platform is not asked.
    refused = client.post(PAGE, {"bank": partner.pk})
    assert refused.status_code == 200 and "errorlist" in refused.content.decode()
    assert nothing_written()

    done = client.post(PAGE, {"bank": partner.pk, "consent": "on"}, follow=True)
    body = done.content.decode()
    assert "开通成功" in body and "¥3000.00" in body and "已授信" in body
    line = CreditLine.objects.get(person=citizen)
    assert line.limit == 300_000
    consent = Consent.objects.get(person=citizen)
    assert (consent.channel, consent.scope) == ("portal", words)


def test_a_platform_outage_is_said_on_the_page_and_nothing_is_written(
    client,
    citizen,
    make_partner,
    score_platform,  # noqa: F811 - the fixture imported above
):
    partner, _ = make_partner("厦门国际银行")
    client.force_login(citizen.user)
    score_platform.control(mode="fail")

    response = client.post(PAGE, {"bank": partner.pk, "consent": "on"})

    assert response.status_code == 200
    assert "暂时无法连接信用分平台" in response.content.decode()
    assert nothing_written()


def test_a_declined_enrolment_says_why(
    client,
    citizen,
    make_partner,
    score_platform,  # noqa: F811 - the fixture imported above
):
    partner, _ = make_partner("厦门国际银行")
    pin(score_platform, citizen, None)
    client.force_login(citizen.user)

    body = client.post(PAGE, {"bank": partner.pk, "consent": "on"}, follow=True).content.decode()

    assert "未能开通" in body and "信用平台没有您的信用分" in body
    assert not CreditLine.objects.exists()


def test_a_patient_withdraws_their_own_consent_on_the_page(
    client,
    citizen,
    make_person,
    make_partner,
    score_platform,  # noqa: F811 - the fixture imported above
):
    partner, _ = make_partner("厦门国际银行")
    pin(score_platform, citizen, 640)
    client.force_login(citizen.user)
    client.post(PAGE, {"bank": partner.pk, "consent": "on"})
    consent = Consent.objects.get(person=citizen)
    url = f"/portal/enrol/consents/{consent.pk}/revoke/"
    assert "我的授权" in client.get(PAGE).content.decode()

    stranger = make_person("王磊")
    patient_user_ensure(actor="test", person=stranger)
    client.force_login(stranger.user)
    assert client.post(url).status_code == 404
    consent.refresh_from_db()
    assert consent.revoked_at is None

    client.force_login(citizen.user)
    body = client.post(url, follow=True).content.decode()
    assert "授权已撤回" in body and "我的授权" not in body
    consent.refresh_from_db()
    assert consent.revoked_at is not None
    assert client.get(url).status_code == 405
