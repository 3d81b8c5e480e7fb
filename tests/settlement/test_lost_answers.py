"""An answer lost after the service committed: the process died before the API remembered it.

The key's claim is then taken over once abandoned, and the request runs again. The services take
the caller's key, so the second run moves nothing twice and answers as the first did.
"""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from core import idempotency
from core.models import IdempotentRequest
from ledger.exceptions import IdempotencyConflict
from ledger.models import Hold, Transaction
from settlement.models import Charge, Deposit, Encounter
from settlement.services.encounters import encounter_admit
from tests.factories import charge_line

pytestmark = pytest.mark.django_db


@pytest.fixture
def cashier(staff_client):
    return staff_client("cashier")


def lose_the_answer(key: str) -> None:
    """As if the process died between the service's commit and remembering its answer, long
    enough ago for the claim to count as abandoned."""
    claim = IdempotentRequest.objects.get(key=key)
    claim.status_code, claim.body = None, None
    claim.created_at = timezone.now() - idempotency.ABANDONED_AFTER - timedelta(seconds=1)
    claim.save()


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Encounter, Deposit, Charge, Transaction, Hold, AuditEvent)
    }


def test_an_admission_sent_again_after_its_answer_was_lost_is_the_same_encounter(
    cashier, make_person, department
):
    person = make_person()
    body = {"person": person.pk, "department": department.pk, "kind": "inpatient"}
    first = cashier.post("/api/v1/encounters/", body, format="json", HTTP_IDEMPOTENCY_KEY="adm-1")
    assert first.status_code == 201, first.content
    before = counts()

    lose_the_answer("adm-1")
    again = cashier.post("/api/v1/encounters/", body, format="json", HTTP_IDEMPOTENCY_KEY="adm-1")

    assert again.status_code == 201, again.content
    assert again.json() == first.json()
    assert counts() == before


def test_a_deposit_and_a_charge_sent_again_after_their_answers_were_lost_move_nothing_twice(
    cashier, make_person, department
):
    person = make_person()
    admitted = cashier.post(
        "/api/v1/encounters/",
        {"person": person.pk, "department": department.pk, "kind": "inpatient"},
        format="json",
    )
    encounter = admitted.json()["id"]
    deposit = {"amount": "2000.00", "channel": "cash"}
    charge = {"items": [charge_line(quantity="2", unit_price="15.50")]}
    paid = cashier.post(
        f"/api/v1/encounters/{encounter}/deposits/",
        deposit,
        format="json",
        HTTP_IDEMPOTENCY_KEY="dep-1",
    )
    charged = cashier.post(
        f"/api/v1/encounters/{encounter}/charges/",
        charge,
        format="json",
        HTTP_IDEMPOTENCY_KEY="chg-1",
    )
    assert (paid.status_code, charged.status_code) == (201, 201), (paid.content, charged.content)
    before = counts()

    lose_the_answer("dep-1")
    lose_the_answer("chg-1")
    paid_again = cashier.post(
        f"/api/v1/encounters/{encounter}/deposits/",
        deposit,
        format="json",
        HTTP_IDEMPOTENCY_KEY="dep-1",
    )
    charged_again = cashier.post(
        f"/api/v1/encounters/{encounter}/charges/",
        charge,
        format="json",
        HTTP_IDEMPOTENCY_KEY="chg-1",
    )

    assert paid_again.status_code == 201 and paid_again.json() == paid.json()
    assert charged_again.status_code == 201 and charged_again.json() == charged.json()
    assert counts() == before
    bill = cashier.get(f"/api/v1/encounters/{encounter}/bill/").json()
    assert (bill["total"], bill["paid"]) == ("31.00", "2000.00")


def test_an_admission_key_reused_for_another_patient_is_refused_by_the_service(
    make_person, department
):
    first, second = make_person(), make_person(name="李四", birth=date(1990, 3, 1))
    admit = {"actor": "test", "department": department, "kind": "inpatient", "key": "k-1"}
    encounter = encounter_admit(person=first, **admit)
    assert encounter_admit(person=first, **admit) == encounter

    with pytest.raises(IdempotencyConflict):
        encounter_admit(person=second, **admit)
    assert Encounter.objects.count() == 1


def test_a_settle_sent_again_after_its_answer_was_lost_gets_the_settlement(
    cashier, make_person, department, insurer
):
    person = make_person()
    encounter = cashier.post(
        "/api/v1/encounters/",
        {"person": person.pk, "department": department.pk, "kind": "outpatient"},
        format="json",
    ).json()["id"]
    item = charge_line(category="drug", insurance_class="A", quantity="2", unit_price="15.50")
    cashier.post(f"/api/v1/encounters/{encounter}/charges/", {"items": [item]}, format="json")
    settle = f"/api/v1/encounters/{encounter}/settle/"
    first = cashier.post(settle, {"channel": "cash"}, format="json", HTTP_IDEMPOTENCY_KEY="stl-1")
    assert first.status_code == 200, first.content
    before = counts()

    lose_the_answer("stl-1")
    again = cashier.post(settle, {"channel": "cash"}, format="json", HTTP_IDEMPOTENCY_KEY="stl-1")
    other = cashier.post(settle, {"channel": "cash"}, format="json", HTTP_IDEMPOTENCY_KEY="stl-2")

    assert again.status_code == 200 and again.json() == first.json()
    assert other.status_code == 409  # another request to settle it: it is settled
    assert counts() == before
