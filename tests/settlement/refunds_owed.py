"""A refund owed, made the way production makes one: the insurer is down at settlement, the
patient pays the whole bill at the window, and the deferred claim settles later, so the
insurer's share is owed back to the patient (``funding.share_return_post``)."""

from decimal import Decimal
from typing import Any
from uuid import uuid4

from django.utils import timezone

from accounts.models import Department, Person
from settlement.insurer.client import InsurerClient
from settlement.models import Refund
from settlement.services.claim_retries import claims_retry
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.settle import encounter_settle


def refund_owed(
    sim: Any, department: Department, person: Person, fen: int, channel: str = "cash"
) -> Refund:
    """An outpatient visit of one class-A drug line of ``fen``, paid by ``channel`` while the
    insurer was down; returns the refund owed once the insurer answers (the simulator's
    outpatient policy: fund (bill − ¥200) × 60 %, plus up to ¥500 of the personal account)."""
    insurer = InsurerClient(sim.url, timeout=3)
    visit = encounter_admit(actor="desk", person=person, department=department, kind="outpatient")
    line = ChargeItem("D1", "头孢", "drug", "A", Decimal(1), fen, timezone.localdate())
    charges_post(actor="desk", encounter_id=visit.pk, items=[line], key=uuid4().hex)
    sim.control("fail")
    try:
        encounter_settle(actor="desk", encounter_id=visit.pk, channel=channel, client=insurer)
    finally:
        sim.control("ok")
    assert claims_retry(client=insurer).get("reverted") == 1
    return Refund.objects.get(encounter=visit, status=Refund.Status.OWED)
