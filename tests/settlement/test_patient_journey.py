"""A citizen the system has never seen, with only a phone: registers in the city's app, is
owed a refund from a first visit paid in cash (while the insurer was down), enrols for credit
medical care, is admitted without a deposit, reads the bill, is told when it is due, and sees
the refund — through the APIs the app and the hospital's desk call, against the insurer and
credit-score simulators.
"""

import json
from datetime import date, timedelta
from uuid import uuid4

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto
from accounts.credit_score.client import citizen_hash
from accounts.models import Person, SmsMessage
from settlement.services.notices import notices_due_soon
from tests.factories import make_id_number
from tests.settlement.refunds_owed import refund_owed
from tests.settlement.test_enrolment import platform, score_platform  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PHONE = "13900040001"
APP = "/api/patient/v1/"


def the_code_sent() -> str:
    """The sign-in code as the phone gets it (the outbox's copy, before it is sent)."""
    message = SmsMessage.objects.get(template="LOGIN_CODE")
    return json.loads(crypto.decrypt(message.params_encrypted))["code"]


def texts(person: Person) -> dict[str, str]:
    return dict(
        SmsMessage.objects.filter(person=person)
        .exclude(template="LOGIN_CODE")
        .values_list("template", "text")
    )


def test_a_stranger_with_a_phone_registers_enrols_is_treated_first_and_is_told(
    score_platform,  # noqa: F811 - the imported fixture
    shared_sim,
    department,
    make_partner,
    staff_client,
):
    bank, _ = make_partner("厦门国际银行")
    id_number = make_id_number(date(1975, 9, 9))
    score_platform.request(
        "POST", "/sim/pin", {"id_number_hash": citizen_hash(id_number), "score": 700}
    )

    # Registers with the phone: a code by SMS, then the code with name and ID number.
    app = APIClient()
    assert app.post(APP + "auth/sms/", {"phone": PHONE}, format="json").status_code == 202
    signed_in = app.post(
        APP + "auth/token/",
        {"phone": PHONE, "code": the_code_sent(), "name": "赵明", "id_number": id_number},
        format="json",
    )
    assert signed_in.status_code == 200, signed_in.content
    person = Person.objects.get()
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {signed_in.json()['token']}")
    assert app.get(APP + "me/").json()["credit_lines"] == []

    # A first visit, before enrolling: paid in cash while the insurer was down; the insurer's
    # share is owed back once it answers again.
    refund = refund_owed(shared_sim, department, person, 100_000)

    # Enrols: consent recorded, the score read, the bank's tier granted at once.
    enrolled = app.post(
        APP + "enrolment/",
        {"consent": True, "bank": bank.name},
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid4().hex,
    )
    assert enrolled.status_code == 201, enrolled.content
    assert enrolled.json()["status"] == "granted" and enrolled.json()["credit_line"]
    assert len(app.get(APP + "me/").json()["credit_lines"]) == 1

    # Admitted without a deposit: the line holds it instead.
    desk = staff_client("cashier")
    admitted = desk.post(
        "/api/v1/encounters/",
        {"person": person.pk, "kind": "inpatient", "department": "GEN"},
        format="json",
    )
    assert admitted.status_code == 201, admitted.content
    stay = admitted.json()
    assert stay["deposit"]["waived"] is True and stay["funding_line"]["holder"] == person.pk
    charged = desk.post(
        f"/api/v1/encounters/{stay['id']}/charges/",
        {
            "items": [
                {
                    "code": "D1",
                    "name": "头孢",
                    "category": "drug",
                    "insurance_class": "A",
                    "quantity": "1",
                    "unit_price": "2000.00",
                    "service_date": timezone.localdate().isoformat(),
                }
            ]
        },
        format="json",
    )
    assert charged.status_code == 201, charged.content

    # Reads the bill in the app.
    bill = app.get(f"{APP}encounters/{stay['id']}/bill/")
    assert bill.status_code == 200 and bill.json()["total"] == "2000.00"

    # Settled on discharge: the self-pay on credit, and the patient told by SMS.
    with override_settings(INSURER_URL=shared_sim.url):
        settled = desk.post(f"/api/v1/encounters/{stay['id']}/settle/", {}, format="json")
    assert settled.status_code == 200, settled.content
    answer = settled.json()
    assert answer["funded_by"] == "credit" and answer["self_pay"] != "0.00"
    due = date.fromisoformat(answer["due_date"])
    assert texts(person)["SETTLED"] == (
        f"您的就医费用已结算，信用就医额度支付{answer['self_pay']}元，请于{due}前还款。"
    )

    # Told three days before it is due.
    notices_due_soon(today=due - timedelta(days=3))
    assert f"将于{due}到期" in texts(person)["DUE_SOON"]

    # The refund of the first visit, waiting to be collected.
    refunds = app.get(APP + "refunds/").json()["results"]
    assert [(row["id"], row["status"]) for row in refunds] == [(refund.pk, "owed")]
    assert "退款待领取" in texts(person)["REFUND_READY"]

    # Every notice is in the app's list of messages, and no login code.
    listed = {row["template"] for row in app.get(APP + "messages/").json()["results"]}
    assert listed == {"SETTLED", "DUE_SOON", "REFUND_READY"}
