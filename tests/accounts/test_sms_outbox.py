"""The SMS outbox (``accounts.services.notices``) against the shipped gateway simulator, started
as a real HTTP server: queued in a transaction, sent once, refused or expired messages failed,
an unreachable gateway tried again later, and a message sent again after its sender died is
one message at the gateway (its ``OutId``)."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts import crypto
from accounts.models import SmsMessage
from accounts.services.notices import backoff, messages_of, sms_deliver, sms_queue
from accounts.sms import SmsTemplateError
from accounts.sms.client import SmsClient
from tests.accounts.simulators import SimulatorProcess, free_port, started

pytestmark = pytest.mark.django_db

AMOUNT = {"amount": "12.30"}


@pytest.fixture
def gateway(tmp_path):
    simulator = started("run_sms_simulator", tmp_path / "sms-sim.log")
    yield simulator
    simulator.stop()


def client_for(simulator: SimulatorProcess) -> SmsClient:
    return SmsClient(simulator.url + "/", sign_name="信用就医", timeout=5)


def kept(simulator: SimulatorProcess, phone: str = "") -> list[dict]:
    return simulator.request("GET", f"/sim/messages?phone={phone}")["messages"]


def queue(key: str, phone: str = "13800138000", template: str = "OVERDUE", **kwargs) -> SmsMessage:
    params = kwargs.pop("params", AMOUNT)
    with transaction.atomic():
        return sms_queue(key=key, phone=phone, template=template, params=params, **kwargs)


def test_a_message_queued_is_sent_once_as_the_phone_shows_it(gateway, make_person):
    person = make_person("王芳", phone="13800138000")
    message = queue("overdue:r1", person=person)
    assert (message.status, message.attempts, message.text) == (
        "pending",
        0,
        "您的信用就医账单12.30元已逾期，额度已冻结，请尽快还款。",
    )
    assert crypto.decrypt(message.phone_encrypted) == "13800138000"

    assert sms_deliver(client=client_for(gateway)) == 1
    assert sms_deliver(client=client_for(gateway)) == 0

    message.refresh_from_db()
    [received] = kept(gateway, "13800138000")
    assert received["text"] == f"【信用就医】{message.text}"
    assert received["out_id"] == str(message.pk)
    assert (message.status, message.attempts, message.biz_id) == ("sent", 1, received["biz_id"])
    assert message.sent_at is not None and message.last_error == ""
    assert [m.pk for m in messages_of(person)] == [message.pk]


def test_the_same_key_twice_is_one_message(gateway):
    first = queue(
        "settled:e1", template="SETTLED", params={"amount": "5.00", "due_date": "2026-12-20"}
    )
    again = queue(
        "settled:e1", template="SETTLED", params={"amount": "9.00", "due_date": "2026-12-21"}
    )

    assert again.pk == first.pk and SmsMessage.objects.count() == 1
    assert sms_deliver(client=client_for(gateway)) == 1
    assert [m["params"]["amount"] for m in kept(gateway)] == ["5.00"]


def test_a_message_the_gateway_cannot_take_fails_its_event_not_a_worker():
    with pytest.raises(SmsTemplateError):
        queue("overdue:bad", params={"amount": "12.3"})
    with pytest.raises(SmsTemplateError):
        queue("overdue:bad", phone="2380013800")
    assert not SmsMessage.objects.exists()


def test_a_login_codes_parameters_are_wiped_once_sent_and_it_is_not_listed(gateway, make_person):
    person = make_person("李四", phone="13800138001")
    message = queue(
        "sign-in:1",
        phone="13800138001",
        template="LOGIN_CODE",
        params={"code": "042917"},
        person=person,
        send_by=timezone.now() + timedelta(minutes=5),
    )
    assert message.text == "" and message.params_encrypted != ""

    assert sms_deliver(client=client_for(gateway)) == 1

    message.refresh_from_db()
    assert (message.status, message.params_encrypted) == ("sent", "")
    assert [m["params"] for m in kept(gateway, "13800138001")] == [{"code": "042917"}]
    assert messages_of(person) == []


def test_a_message_past_its_send_by_fails_unsent(gateway):
    message = queue(
        "sign-in:2",
        template="LOGIN_CODE",
        params={"code": "123456"},
        send_by=timezone.now() - timedelta(seconds=1),
    )

    assert sms_deliver(client=client_for(gateway)) == 0

    message.refresh_from_db()
    assert (message.status, message.last_error, message.params_encrypted) == (
        "failed",
        "not sent in time",
        "",
    )
    assert gateway.state()["received"] == 0 and kept(gateway) == []


def test_a_refusal_by_the_gateway_fails_the_message_for_good(gateway):
    message = queue("overdue:r2")
    gateway.control(mode="reject", code="isv.BUSINESS_LIMIT_CONTROL")

    assert sms_deliver(client=client_for(gateway)) == 0
    gateway.control(mode="ok")
    assert sms_deliver(client=client_for(gateway)) == 0  # not tried again

    message.refresh_from_db()
    assert message.status == "failed" and message.attempts == 1
    assert message.last_error.startswith("isv.BUSINESS_LIMIT_CONTROL")
    assert gateway.state()["received"] == 1 and kept(gateway) == []


def test_an_unreachable_gateway_is_tried_again_later_with_growing_delays(gateway):
    message = queue("overdue:r3")
    gateway.control(mode="fail")

    before = timezone.now()
    assert sms_deliver(client=client_for(gateway)) == 0
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 1)
    assert "503" in message.last_error
    assert message.next_attempt_at >= before + backoff(1)

    assert sms_deliver(client=client_for(gateway)) == 0  # not due yet: nothing is sent
    assert gateway.state()["received"] == 1

    # Its time comes (moved, rather than waited for); the gateway is still down; then up.
    SmsMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    before = timezone.now()
    assert sms_deliver(client=client_for(gateway)) == 0
    message.refresh_from_db()
    assert message.attempts == 2 and message.next_attempt_at >= before + backoff(2)
    assert backoff(2) > backoff(1)

    gateway.control(mode="ok")
    SmsMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert sms_deliver(client=client_for(gateway)) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("sent", 3, "")
    assert len(kept(gateway)) == 1


def test_nothing_listening_is_unreachable_too():
    message = queue("overdue:r4")
    client = SmsClient(f"http://127.0.0.1:{free_port()}/", sign_name="信用就医", timeout=2)

    assert sms_deliver(client=client) == 0

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 1)
    assert message.last_error.startswith("not sent")


class WorkerKilled(Exception):
    """What the transaction sees when its worker dies: it is rolled back."""


def test_a_message_sent_again_after_its_sender_died_is_one_message_at_the_gateway(gateway):
    message = queue("overdue:r5")

    # The gateway takes the message, and the worker dies before its row says so.
    with pytest.raises(WorkerKilled), transaction.atomic():
        assert sms_deliver(client=client_for(gateway)) == 1
        first_biz_id = kept(gateway)[0]["biz_id"]
        raise WorkerKilled
    message.refresh_from_db()
    assert (message.status, message.attempts, message.biz_id) == ("pending", 0, "")

    # The next worker sends it again: the gateway knows the OutId and sends nothing new.
    assert sms_deliver(client=client_for(gateway)) == 1

    message.refresh_from_db()
    assert message.status == "sent" and message.biz_id == first_biz_id
    assert [m["out_id"] for m in kept(gateway)] == [str(message.pk)]
    assert gateway.state()["received"] == 2


def test_a_login_code_the_gateway_refuses_keeps_no_copy_of_the_code(gateway):
    message = queue("sign-in:refused", template="LOGIN_CODE", params={"code": "123456"})
    gateway.control(mode="reject", code="isv.MOBILE_NUMBER_ILLEGAL")

    assert sms_deliver(client=client_for(gateway)) == 0

    message.refresh_from_db()
    assert message.status == "failed" and message.params_encrypted == ""


def test_a_sender_that_breaks_puts_its_message_back_and_the_next_goes_out(gateway):
    first, second = queue("overdue:broken"), queue("overdue:next", phone="13800138001")

    class Breaks(SmsClient):
        def send(self, phone, template, params, *, out_id=""):
            if out_id == str(first.pk):
                raise RuntimeError("a bug in the sender")
            return super().send(phone, template, params, out_id=out_id)

    assert sms_deliver(client=Breaks(gateway.url + "/", sign_name="信用就医", timeout=5)) == 1

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error == "RuntimeError: a bug in the sender"
    assert first.next_attempt_at > timezone.now()  # put back, behind the others
    assert second.status == "sent" and len(kept(gateway)) == 1
