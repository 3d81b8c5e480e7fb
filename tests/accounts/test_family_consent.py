"""亲情付 for a parent: the adult child asks, the parent consents by the code sent to the
parent's phone (entered by the child), or in person at a desk when the parent has no phone."""

import json
from datetime import date

import pytest

from accounts import crypto
from accounts.exceptions import CodeNotValid, FamilyRuleViolated, TooManyCodes, WrongCode
from accounts.models import AuditEvent, FamilyLink, SmsCode, SmsMessage
from accounts.services.family import family_link_consent, family_link_request

pytestmark = pytest.mark.django_db(transaction=True)  # the services' transactions are durable


@pytest.fixture
def family(make_person):
    child = make_person("林子豪", birth=date(1985, 4, 4), phone="13900020001")
    parent = make_person("林国强", birth=date(1955, 1, 1), phone="13900020002")
    return child, parent


def code_sent(link: FamilyLink) -> str:
    code = SmsCode.objects.filter(purpose="family_consent", subject=str(link.pk)).latest("pk")
    message = SmsMessage.objects.get(event_key=f"family_consent:{code.pk}")
    assert message.person_id == link.beneficiary_id and message.text == ""  # a secret: unlisted
    assert crypto.decrypt(message.phone_encrypted) == "13900020002"
    return json.loads(crypto.decrypt(message.params_encrypted))["code"]


def test_the_parent_consents_by_the_code_sent_to_their_phone(family):
    child, parent = family
    link = family_link_request(
        actor="patient:1", payer=child, beneficiary=parent, consent=True, cap=50_000
    )
    assert (link.status, link.consent_at, link.relation) == ("pending", None, "child_of_parent")
    code = code_sent(link)
    message = SmsMessage.objects.get(template="CONSENT_CODE")
    assert json.loads(crypto.decrypt(message.params_encrypted))["name"] == "林子豪"

    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(WrongCode):
        family_link_consent(actor="patient:1", payer=child, link_id=link.pk, code=wrong)
    assert SmsCode.objects.get(purpose="family_consent").attempts == 1  # kept though refused
    link.refresh_from_db()
    assert link.status == "pending"

    done = family_link_consent(actor="patient:1", payer=child, link_id=link.pk, code=code)
    assert done.status == "active" and done.consent_by == "林国强"
    assert done.consent_channel == "sms" and done.consent_at is not None
    assert done.cap_account is not None  # the cap is funded once the link carries costs
    assert AuditEvent.objects.filter(action="family_link.create", object_id=str(link.pk)).exists()
    with pytest.raises(FamilyRuleViolated):  # used: nothing waits any more
        family_link_consent(actor="patient:1", payer=child, link_id=link.pk, code=code)


def test_five_wrong_codes_void_it_and_someone_else_cannot_consent(family, make_person):
    child, parent = family
    link = family_link_request(actor="patient:1", payer=child, beneficiary=parent, consent=True)
    code = code_sent(link)
    stranger = make_person("王五", birth=date(1990, 1, 1))
    with pytest.raises(FamilyRuleViolated):  # not the one who asked
        family_link_consent(actor="patient:9", payer=stranger, link_id=link.pk, code=code)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(WrongCode):
            family_link_consent(actor="patient:1", payer=child, link_id=link.pk, code=wrong)
    with pytest.raises(CodeNotValid):  # void now, the right code too
        family_link_consent(actor="patient:1", payer=child, link_id=link.pk, code=code)
    assert FamilyLink.objects.get(pk=link.pk).status == "pending"


def test_a_parent_without_a_phone_consents_at_a_desk(make_person):
    child = make_person("林子豪", birth=date(1985, 4, 4), phone="13900020001")
    parent = make_person("林国强", birth=date(1955, 1, 1))
    with pytest.raises(FamilyRuleViolated) as refused:
        family_link_request(actor="patient:1", payer=child, beneficiary=parent, consent=True)
    assert refused.value.field == "beneficiary"
    assert not FamilyLink.objects.exists() and not SmsMessage.objects.exists()


def test_on_the_portal_the_child_asks_and_enters_the_code_the_parent_got(family, client):
    from accounts.selectors import person_id_number
    from accounts.services.staff import patient_user_ensure

    child, parent = family
    client.force_login(patient_user_ensure(actor="test", person=child))
    asked = client.post(
        "/portal/family/add/parent/",
        {
            "parent-name": parent.name,
            "parent-id_number": person_id_number(parent),
            "parent-consent": "on",
        },
        follow=True,
    )
    assert "验证码已发送到林国强的手机" in asked.content.decode()
    link = FamilyLink.objects.get(status="pending")
    assert "等待对方同意" in asked.content.decode()

    wrong = client.post(f"/portal/family/{link.pk}/consent/", {"code": "12"}, follow=True)
    assert "验证码错误" in wrong.content.decode()  # said on the page, the link still waiting
    assert FamilyLink.objects.get(pk=link.pk).status == "pending"
    done = client.post(f"/portal/family/{link.pk}/consent/", {"code": code_sent(link)}, follow=True)
    assert "林国强已同意" in done.content.decode()
    assert FamilyLink.objects.get(pk=link.pk).status == "active"


@pytest.mark.postgres
def test_the_same_request_sent_at_once_makes_one_waiting_link(family):
    from tests.threads import run_threads

    child, parent = family
    results = run_threads(
        lambda i: family_link_request(
            actor="patient:1", payer=child, beneficiary=parent, consent=True
        ),
        threads=4,
    )
    links = [r for r in results if isinstance(r, FamilyLink)]
    assert links and all(r.pk == links[0].pk for r in links), results
    refused = [r for r in results if not isinstance(r, FamilyLink)]
    assert all(isinstance(r, (FamilyRuleViolated, TooManyCodes)) for r in refused), results
    assert FamilyLink.objects.filter(status="pending").count() == 1
    live = SmsCode.objects.filter(purpose="family_consent", voided_at__isnull=True)
    assert live.count() == 1  # the parent has one code to tell


def test_a_consent_code_does_not_use_up_the_parents_sign_ins(family):
    from accounts.services.sms_codes import sign_in_code_send

    child, parent = family
    family_link_request(actor="patient:1", payer=child, beneficiary=parent, consent=True)
    sign_in_code_send(phone="13900020002")  # the parent signs in the same minute
    assert SmsCode.objects.filter(purpose="sign_in").count() == 1
