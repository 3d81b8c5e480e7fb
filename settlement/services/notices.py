"""The text messages a patient (or the family member paying) gets about their money.

Each is queued through the SMS outbox (``accounts.services.notices.sms_queue``) inside the
transaction of the event it tells of, under a key naming that event: it is sent exactly when
the event commits, and an event run again (a settle finished by recovery, a task run twice) is
still one message. A person without a phone gets none. A notice never stops its event: one the
gateway could not take (``SmsTemplateError``, checked before anything is written) is logged and
left out.

Each function costs the event one lookup and one insert; the people it names come loaded with
the rows the services already hold.
"""

import logging
from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone

from accounts import crypto
from accounts.models import Person
from accounts.services.notices import sms_queue
from accounts.sms import SmsTemplateError
from core.money import fen_to_yuan

from ..models import Encounter, Receivable, Refund

logger = logging.getLogger(__name__)

# DUE_SOON goes out this many days before a receivable falls due.
DUE_SOON_DAYS = 3
# The longest name a FAMILY_DRAW template takes.
NAME_MOST = 20


def _tell(person: Person, *, key: str, template: str, params: dict[str, str]) -> bool:
    """Queue ``template`` to ``person``'s phone under ``key``; whether a message exists."""
    if not person.phone_encrypted:
        return False
    try:
        sms_queue(
            key=key,
            phone=crypto.decrypt(person.phone_encrypted),
            template=template,
            params=params,
            person=person,
        )
    except SmsTemplateError as error:
        logger.warning("notice %s for %s not queued: %s", template, key, error)
        return False
    return True


def settled_notice(encounter: Encounter, *, amount: int, due_date: date) -> bool:
    """SETTLED to the patient: the settle drew ``amount`` on credit, owed by ``due_date``."""
    return _tell(
        encounter.person,
        key=f"settled:{encounter.pk}",
        template="SETTLED",
        params={"amount": fen_to_yuan(amount), "due_date": due_date.isoformat()},
    )


def family_draw_notice(encounter: Encounter, *, payer: Person, amount: int) -> bool:
    """FAMILY_DRAW to the family member whose line the stay drew ``amount`` on."""
    return _tell(
        payer,
        key=f"family-draw:{encounter.pk}",
        template="FAMILY_DRAW",
        params={"name": encounter.person.name[:NAME_MOST], "amount": fen_to_yuan(amount)},
    )


def due_soon_notice(receivable: Receivable) -> bool:
    """DUE_SOON to the line's holder: what is still owed on the receivable, and when."""
    return _tell(
        receivable.credit_line.person,
        key=f"due-soon:{receivable.pk}:{receivable.due_date.isoformat()}",
        template="DUE_SOON",
        params={
            "amount": fen_to_yuan(receivable.outstanding),
            "due_date": receivable.due_date.isoformat(),
        },
    )


def overdue_notice(receivable: Receivable) -> bool:
    """OVERDUE to the line's holder, when the receivable is marked overdue (the line frozen)."""
    return _tell(
        receivable.credit_line.person,
        key=f"overdue:{receivable.pk}",
        template="OVERDUE",
        params={"amount": fen_to_yuan(receivable.outstanding)},
    )


def refund_ready_notice(refund: Refund, *, person: Person) -> bool:
    """REFUND_READY to the patient when a refund becomes owed: it waits at the hospital's
    cashier, and nobody would know to ask for it otherwise. A refund paid at once (a deposit
    left over, handed back at the window) needs no message."""
    return _tell(
        person,
        key=f"refund-ready:{refund.pk}",
        template="REFUND_READY",
        params={"amount": fen_to_yuan(refund.amount)},
    )


def notices_due_soon(*, today: date | None = None) -> int:
    """Queue DUE_SOON for every receivable still owed that falls due within ``DUE_SOON_DAYS``
    days (normally exactly then; a day the task did not run is made up for); how many
    messages were queued or already there. The key holds the due date, so each is told once."""
    today = today or timezone.localdate()
    due = (
        Receivable.objects.filter(
            status=Receivable.Status.OPEN,
            outstanding__gt=0,
            due_date__gte=today,
            due_date__lte=today + timedelta(days=DUE_SOON_DAYS),
        )
        .select_related("credit_line__person")
        .order_by("due_date", "pk")
    )
    told = 0
    for receivable in list(due):
        with transaction.atomic():
            told += due_soon_notice(receivable)
    return told
