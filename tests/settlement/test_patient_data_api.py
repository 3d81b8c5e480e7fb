"""The patient API's reads (``/api/patient/v1/``): encounters, a bill, refunds, messages.

A patient reads their own, and the stays their own credit line carries for a family member;
everything else is a 404 or left out of a list. The portal's messages page lists the same.
"""

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import uuid4

import pytest
from rest_framework.test import APIClient

from accounts.models import Partner, Person, SmsMessage
from accounts.services.family import family_link_revoke
from accounts.services.notices import sms_queue
from accounts.services.patient_tokens import patient_token_issue, patient_token_revoke
from accounts.services.staff import patient_user_ensure
from settlement.models import Encounter, Refund
from settlement.selectors import encounter_bill
from settlement.services.encounters import charges_post, encounter_admit
from tests.factories import charge_item, grant_line, link_family
from tests.settlement.refunds_owed import refund_owed
from tests.settlement.test_notices import settled_on_credit

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

API = "/api/patient/v1/"


def bearer(person: Person) -> APIClient:
    client = APIClient()
    key = patient_token_issue(person=person, actor="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@dataclass
class Family:
    parent: Person  # pays for the child through 亲情付
    child: Person
    stranger: Person  # unrelated, with a stay of their own
    parent_stay: Encounter
    child_stay: Encounter  # drawn on the parent's line
    later_stay: Encounter  # the child's, after the link was revoked: not the parent's
    stranger_stay: Encounter
    refund: Refund  # owed to the stranger


@pytest.fixture
def family(shared_sim, department, make_person, make_partner) -> Family:
    bank: Partner = make_partner("厦门银行")[0]
    parent = make_person("陈建国", birth=date(1980, 1, 1), phone="13900010001")
    child = make_person("陈小雨", birth=date(2015, 6, 1), phone="13900010002")
    stranger = make_person("王芳", birth=date(1985, 3, 1), phone="13900010003")
    # First: the insurer's retry settles every claim deferred by then.
    refund = refund_owed(shared_sim, department, stranger, 100_000)
    grant_line(bank, parent)
    grant_line(bank, stranger)
    link = link_family(parent, child)
    parent_stay = settled_on_credit(department, parent, 30_000)
    child_stay = settled_on_credit(department, child, 20_000)
    family_link_revoke(actor="test", link_id=link.pk)
    later_stay = open_stay(department, child)  # no line carries it
    stranger_stay = settled_on_credit(department, stranger, 40_000)
    return Family(
        parent, child, stranger, parent_stay, child_stay, later_stay, stranger_stay, refund
    )


def open_stay(department: Any, person: Person) -> Encounter:
    """A visit with ¥70 of charges, not settled."""
    visit = encounter_admit(actor="desk", person=person, department=department, kind="outpatient")
    charges_post(actor="desk", encounter_id=visit.pk, items=[charge_item(7_000)], key=uuid4().hex)
    return visit


def ids(answer: Any) -> list[str]:
    return [row["id"] for row in answer.json()["results"]]


# --- who may call -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["encounters/", "refunds/", "messages/"])
def test_no_bearer_token_no_answer(family, path, staff_client):
    assert APIClient().get(API + path).status_code == 401
    staff = staff_client("cashier")  # a staff token is no patient's
    assert staff.get(API + path).status_code == 401
    client = APIClient()
    key = patient_token_issue(person=family.parent, actor="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(API + path).status_code == 200
    token = family.parent.tokens.get()
    patient_token_revoke(token=token, actor="test")
    answer = client.get(API + path)
    assert answer.status_code == 401 and answer.json()["error"]["code"]


# --- encounters and bills ---------------------------------------------------------------------


def test_a_payer_lists_their_own_and_the_stays_their_line_carried(family):
    answer = bearer(family.parent).get(API + "encounters/")

    assert answer.status_code == 200
    body = answer.json()
    assert body["count"] == 2 and body["next"] is None
    rows = {row["id"]: row for row in body["results"]}
    assert rows == {
        str(family.parent_stay.pk): {
            "id": str(family.parent_stay.pk),
            "person": "陈建国",
            "institution": "厦门市第一医院",
            "status": "settled_insurance_deferred",
            "total": "300.00",
            "self_pay": "300.00",
            "paid_by_me": False,
        },
        str(family.child_stay.pk): {
            "id": str(family.child_stay.pk),
            "person": "陈小雨",
            "institution": "厦门市第一医院",
            "status": "settled_insurance_deferred",
            "total": "200.00",
            "self_pay": "200.00",
            "paid_by_me": True,
        },
    }


def test_a_beneficiary_lists_their_own_stays_only(family):
    answer = bearer(family.child).get(API + "encounters/")

    assert ids(answer) == [str(family.later_stay.pk), str(family.child_stay.pk)]
    later = answer.json()["results"][0]
    assert (later["status"], later["total"], later["self_pay"], later["paid_by_me"]) == (
        "open",
        "70.00",
        None,
        False,
    )


def test_the_bill_is_the_staff_bill_for_own_and_carried_stays(family, staff_client):
    parent = bearer(family.parent)
    for stay in (family.parent_stay, family.child_stay):
        answer = parent.get(f"{API}encounters/{stay.pk}/bill/")
        assert answer.status_code == 200
        staff_bill = staff_client("cashier").get(f"/api/v1/encounters/{stay.pk}/bill/").json()
        assert answer.json() == staff_bill == encounter_bill(Encounter.objects.get(pk=stay.pk))

    child = bearer(family.child)
    assert child.get(f"{API}encounters/{family.child_stay.pk}/bill/").status_code == 200


@pytest.mark.parametrize(
    ("who", "whose"),
    [
        ("parent", "later_stay"),  # the child's, after the link was revoked
        ("parent", "stranger_stay"),
        ("child", "parent_stay"),
        ("stranger", "child_stay"),
        ("stranger", "parent_stay"),
    ],
)
def test_anyone_elses_bill_is_not_found(family, who, whose):
    stay = getattr(family, whose)
    answer = bearer(getattr(family, who)).get(f"{API}encounters/{stay.pk}/bill/")

    assert answer.status_code == 404
    assert set(answer.json()) == {"error"} and str(stay.pk) not in answer.content.decode()


def test_a_malformed_or_unknown_encounter_is_not_found(family):
    client = bearer(family.parent)
    assert client.get(f"{API}encounters/not-a-uuid/bill/").status_code == 404
    unknown = client.get(f"{API}encounters/00000000-0000-0000-0000-000000000000/bill/")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"]


# --- refunds ----------------------------------------------------------------------------------


def test_a_patient_lists_their_own_refunds_owed_then_paid(family, staff_client):
    answer = bearer(family.stranger).get(API + "refunds/")
    assert answer.json()["results"] == [
        {
            "id": family.refund.pk,
            "encounter": str(family.refund.encounter_id),
            "person": family.stranger.pk,
            "amount": "980.00",
            "reason": "insurance_reversal",
            "status": "owed",
            "created_at": family.refund.created_at.isoformat(),
        }
    ]
    paid = staff_client("cashier").post(
        f"/api/v1/refunds/{family.refund.pk}/pay/", {"reference": "CASH-1"}, format="json"
    )
    assert paid.status_code == 200, paid.json()
    [row] = bearer(family.stranger).get(API + "refunds/").json()["results"]
    assert row["status"] == "paid"

    for other in (family.parent, family.child):
        assert bearer(other).get(API + "refunds/").json() == {
            "count": 0,
            "next": None,
            "previous": None,
            "results": [],
        }


# --- messages ---------------------------------------------------------------------------------


def test_a_patient_reads_the_notices_sent_to_them_and_no_login_code(family):
    sms_queue(
        key="sign-in:test",
        phone="13900010001",
        template="LOGIN_CODE",
        params={"code": "123456"},
        person=family.parent,
    )
    answer = bearer(family.parent).get(API + "messages/")

    assert answer.status_code == 200
    rows = answer.json()["results"]
    settled = SmsMessage.objects.get(event_key=f"settled:{family.parent_stay.pk}")
    draw = SmsMessage.objects.get(event_key=f"family-draw:{family.child_stay.pk}")
    assert [row["id"] for row in rows] == [str(draw.pk), str(settled.pk)]  # newest first
    assert rows[0] == {
        "id": str(draw.pk),
        "template": "FAMILY_DRAW",
        "text": "陈小雨本次就医使用了您的亲情付额度200.00元。",
        "status": "pending",
        "created_at": draw.created_at.isoformat(),
        "sent_at": None,
    }
    assert rows[1]["template"] == "SETTLED" and "300.00" in rows[1]["text"]

    child_rows = bearer(family.child).get(API + "messages/").json()["results"]
    assert [row["text"] for row in child_rows] == [
        SmsMessage.objects.get(event_key=f"settled:{family.child_stay.pk}").text
    ]
    stranger_rows = bearer(family.stranger).get(API + "messages/").json()["results"]
    assert [row["template"] for row in stranger_rows] == ["SETTLED", "REFUND_READY"]


def test_the_portal_lists_the_same_messages_in_chinese(family, client):
    patient_user_ensure(actor="test", person=family.parent)
    client.force_login(family.parent.user)

    page = client.get("/portal/messages/")

    assert page.status_code == 200
    body = page.content.decode()
    assert "我的消息" in body and 'href="/portal/messages/"' in body
    assert "陈小雨本次就医使用了您的亲情付额度200.00元。" in body
    assert "亲情付支出" in body and "费用已结算" in body and "发送中" in body
    assert "王芳" not in body and "980.00" not in body

    client.force_login(patient_user_ensure(actor="test", person=family.stranger))
    other = client.get("/portal/messages/").content.decode()
    assert "退款待领取" in other and "陈小雨" not in other


def test_the_portal_shows_a_payer_the_stays_their_line_carried_with_bill_and_receipt(
    family, client
):
    patient_user_ensure(actor="test", person=family.parent)
    client.force_login(family.parent.user)

    listed = client.get("/portal/encounters/").content.decode()
    assert f"/portal/encounters/{family.child_stay.pk}/" in listed
    assert "陈小雨的就诊，由我的信用额度支付（亲情付）" in listed
    assert f"/portal/encounters/{family.later_stay.pk}/" not in listed  # after the revocation
    assert f"/portal/encounters/{family.stranger_stay.pk}/" not in listed
    detail = client.get(f"/portal/encounters/{family.child_stay.pk}/")
    assert detail.status_code == 200
    receipt = family.child_stay.receipts.get()
    assert client.get(f"/portal/receipts/{receipt.receipt_no}/").status_code == 200
    for stay in (family.later_stay, family.stranger_stay):
        assert client.get(f"/portal/encounters/{stay.pk}/").status_code == 404
    strangers = family.stranger_stay.receipts.get()
    assert client.get(f"/portal/receipts/{strangers.receipt_no}/").status_code == 404
