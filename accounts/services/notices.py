"""Text messages to patients, through the SMS outbox (``SmsMessage``).

A message is queued in the transaction of the event it tells of, under a key naming that event
(``settled:<encounter>``, ``sign-in:<code id>``): the event and its message commit together,
and an event queued twice is one message. A worker sends the messages due, each under a row
lock, giving the gateway the message's id as ``OutId``: when a worker dies after the gateway
took a message and before the row says so, the next worker sends it again and the gateway,
knowing the ``OutId``, does not send it twice. A refusal by the gateway is final; an
unreachable gateway is tried again with growing delays, until a message's ``send_by`` (a login
code's five minutes) has passed.
"""

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.utils import timezone

from accounts import crypto
from accounts.models import Person, SmsMessage
from accounts.sms import SmsRejected, SmsTemplateError, SmsUnavailable, check_message, render

logger = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=30)
# Not listed among a person's messages: its text is a secret, and it is no notice.
SECRET_TEMPLATES = frozenset({"LOGIN_CODE", "CONSENT_CODE"})


def sms_queue(
    *,
    key: str,
    phone: str,
    template: str,
    params: Mapping[str, str],
    person: Person | None = None,
    send_by: datetime | None = None,
) -> SmsMessage:
    """Queue a message for the event ``key``; call inside the event's transaction. The same
    key again returns the message queued first and queues nothing.

    ``SmsTemplateError`` if the message could not be sent (the gateway's own rules, checked
    now so that a bad message fails its event, not a worker later).
    """
    checked = check_message(phone, template, params)
    message, created = SmsMessage.objects.get_or_create(
        event_key=key,
        defaults={
            "person": person,
            "phone_encrypted": crypto.encrypt(phone),
            "template": template,
            "params_encrypted": crypto.encrypt(json.dumps(checked, ensure_ascii=False)),
            "text": "" if template in SECRET_TEMPLATES else render(template, checked),
            "send_by": send_by,
        },
    )
    if created:
        transaction.on_commit(_send_soon, robust=True)
    return message


def _send_soon() -> None:
    # By name: the task module imports the services, not the other way round.
    current_app.send_task("accounts.tasks.deliver_sms")


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=5 * 2 ** min(attempts, 20)), MAX_BACKOFF)


def sms_deliver(*, client: object = None, batch: int = 50) -> int:
    """Send the messages due; how many the gateway took. Safe to run concurrently: each
    message is sent under its row's lock, which a second worker skips."""
    from accounts.sms.client import SmsClient

    sender = client if client is not None else SmsClient()
    sent = 0
    for _ in range(batch):
        with transaction.atomic():
            message = (
                SmsMessage.objects.select_for_update(skip_locked=True)
                .filter(status=SmsMessage.Status.PENDING, next_attempt_at__lte=timezone.now())
                .order_by("next_attempt_at", "created_at")
                .first()
            )
            if message is None:
                return sent
            sent += _send(sender, message)
    return sent


def _send(sender: object, message: SmsMessage) -> int:
    now = timezone.now()
    message.attempts += 1
    fields = ["attempts", "status", "last_error"]
    if message.send_by is not None and now > message.send_by:
        message.status, message.last_error = SmsMessage.Status.FAILED, "not sent in time"
        message.params_encrypted = ""
        message.save(update_fields=[*fields, "params_encrypted"])
        return 0
    params = json.loads(crypto.decrypt(message.params_encrypted))
    try:
        biz_id = sender.send(  # type: ignore[attr-defined]
            crypto.decrypt(message.phone_encrypted),
            message.template,
            params,
            out_id=str(message.pk),
        )
    except (SmsRejected, SmsTemplateError) as error:
        message.status, message.last_error = SmsMessage.Status.FAILED, str(error)[:500]
        if message.template in SECRET_TEMPLATES:  # never to be sent: keep no copy of the code
            message.params_encrypted = ""
            fields.append("params_encrypted")
        message.save(update_fields=fields)
        return 0
    except Exception as error:  # noqa: BLE001 - unreachable or broken: the next run retries it
        # Whatever went wrong, the message is put back later, not left first in the queue
        # to fail every run and hold up the messages behind it.
        said = str(error)
        if not isinstance(error, SmsUnavailable):
            logger.exception("sending SMS %s failed", message.pk)
            said = f"{type(error).__name__}: {error}"
        message.last_error = said[:500]
        message.next_attempt_at = now + backoff(message.attempts)
        message.save(update_fields=[*fields, "next_attempt_at"])
        return 0
    message.status, message.last_error = SmsMessage.Status.SENT, ""
    message.biz_id, message.sent_at = biz_id[:64], timezone.now()
    fields += ["biz_id", "sent_at"]
    if message.template in SECRET_TEMPLATES:  # the code has done its work: keep no copy
        message.params_encrypted = ""
        fields.append("params_encrypted")
    message.save(update_fields=fields)
    return 1


def messages_of(person: Person) -> list[SmsMessage]:
    """The notices sent (or being sent) to ``person``, newest first; login codes left out."""
    return list(
        SmsMessage.objects.filter(person=person)
        .exclude(template__in=SECRET_TEMPLATES)
        .order_by("-created_at")
    )
