"""Notices to patients by SMS: each queued in its event's transaction, once, with its exact
text, to the right person's phone; none to a person without one. And every notice reaches the
gateway once when a real Celery worker is killed mid-send and another takes over.

Settlements here are made while the insurer is down (nothing listens at ``INSURER_DOWN``): the
whole bill is self-pay, drawn on credit, so the amounts are the bill's.
"""

import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import crypto
from accounts.models import Person, SmsMessage
from accounts.services.notices import sms_deliver
from accounts.sms.client import SmsClient
from config.celery import app
from settlement.models import Encounter, Receivable
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.notices import due_soon_notice, notices_due_soon
from settlement.services.repayments import receivables_mark_overdue
from settlement.services.settle import encounter_settle
from tests.accounts.simulators import HOLD, SimulatorProcess, started
from tests.factories import INSURER_DOWN, charge_item, grant_line, link_family
from tests.settlement.refunds_owed import refund_owed
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    simulator = started("run_sms_simulator", tmp_path_factory.mktemp("sms") / "sms-sim.log")
    yield simulator
    simulator.stop()


@pytest.fixture
def bank(make_partner):
    partner, _ = make_partner("厦门银行")
    return partner


def settled_on_credit(department: Any, person: Person, fen: int) -> Encounter:
    """An outpatient visit of one ``fen`` line, settled with the insurer down: all on credit."""
    visit = encounter_admit(actor="desk", person=person, department=department, kind="outpatient")
    charges_post(actor="desk", encounter_id=visit.pk, items=[charge_item(fen)], key=uuid4().hex)
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        encounter_settle(actor="desk", encounter_id=visit.pk)
    return visit


def notices(person: Person) -> list[tuple[str, str, str]]:
    """(template, event key, text) of every message to ``person``, oldest first."""
    return list(
        SmsMessage.objects.filter(person=person)
        .order_by("created_at")
        .values_list("template", "event_key", "text")
    )


def phone_of(message: SmsMessage) -> str:
    return crypto.decrypt(message.phone_encrypted)


def due(days: int) -> date:
    return timezone.localdate() + timedelta(days=days)


def at_gateway(gateway: SimulatorProcess, phone: str) -> list[str]:
    return [m["text"] for m in gateway.request("GET", f"/sim/messages?phone={phone}")["messages"]]


# --- each notice, once, with its text -----------------------------------------------------------


@pytest.mark.django_db
def test_a_settle_on_the_own_line_tells_the_patient_once(department, bank, make_person, gateway):
    patient = make_person("王芳", birth=date(1985, 3, 1), phone="13900001001")
    grant_line(bank, patient)
    visit = settled_on_credit(department, patient, 12_345)
    due_date = due(bank.grace_days).isoformat()

    text = f"您的就医费用已结算，信用就医额度支付123.45元，请于{due_date}前还款。"
    assert notices(patient) == [("SETTLED", f"settled:{visit.pk}", text)]
    message = SmsMessage.objects.get(person=patient)
    assert phone_of(message) == "13900001001" and message.status == "pending"
    assert not SmsMessage.objects.filter(template="FAMILY_DRAW").exists()

    client = SmsClient(gateway.url + "/", sign_name="信用就医")
    assert sms_deliver(client=client) == 1
    assert sms_deliver(client=client) == 0
    assert at_gateway(gateway, "13900001001") == [f"【信用就医】{text}"]


@pytest.mark.django_db
def test_a_settle_on_a_family_payers_line_tells_both_in_one_insert_each(
    department, bank, make_person
):
    parent = make_person("陈建国", birth=date(1980, 1, 1), phone="13900002001")
    child = make_person("陈小雨", birth=date(2015, 6, 1), phone="13900002002")
    grant_line(bank, parent)
    link_family(parent, child)

    with CaptureQueriesContext(connection) as queries:
        visit = settled_on_credit(department, child, 20_000)
    inserts = [
        q["sql"] for q in queries if q["sql"].startswith('INSERT INTO "accounts_smsmessage"')
    ]
    assert len(inserts) == 2

    due_date = due(bank.grace_days).isoformat()
    assert notices(child) == [
        (
            "SETTLED",
            f"settled:{visit.pk}",
            f"您的就医费用已结算，信用就医额度支付200.00元，请于{due_date}前还款。",
        )
    ]
    assert notices(parent) == [
        ("FAMILY_DRAW", f"family-draw:{visit.pk}", "陈小雨本次就医使用了您的亲情付额度200.00元。")
    ]
    assert phone_of(SmsMessage.objects.get(person=parent)) == "13900002001"


@pytest.mark.django_db
def test_due_soon_goes_to_the_lines_holder_three_days_before_and_once(
    department, bank, make_person
):
    parent = make_person("黄伟", birth=date(1979, 2, 2), phone="13900003001")
    child = make_person("黄小明", birth=date(2016, 2, 2), phone="13900003002")
    grant_line(bank, parent)
    link_family(parent, child)
    visit = settled_on_credit(department, child, 8_800)
    receivable = Receivable.objects.get(encounter=visit)
    due_date = receivable.due_date

    assert notices_due_soon(today=due_date - timedelta(days=4)) == 0
    assert notices_due_soon(today=due_date - timedelta(days=3)) == 1
    # The next days (a day the task ran twice, a day after) add nothing: told once.
    assert notices_due_soon(today=due_date - timedelta(days=3)) == 1
    assert notices_due_soon(today=due_date - timedelta(days=1)) == 1

    text = f"您的信用就医账单88.00元将于{due_date.isoformat()}到期，请按时还款。"
    key = f"due-soon:{receivable.pk}:{due_date.isoformat()}"
    assert [n for n in notices(parent) if n[0] == "DUE_SOON"] == [("DUE_SOON", key, text)]
    assert [n[0] for n in notices(child)] == ["SETTLED"]  # the holder pays, the holder is told


@pytest.mark.django_db
def test_due_soon_missed_on_the_day_is_sent_within_the_three_days(department, bank, make_person):
    patient = make_person("周敏", birth=date(1990, 9, 9), phone="13900004001")
    grant_line(bank, patient)
    receivable = Receivable.objects.get(encounter=settled_on_credit(department, patient, 5_000))

    assert notices_due_soon(today=receivable.due_date - timedelta(days=1)) == 1
    assert [n[0] for n in notices(patient)] == ["SETTLED", "DUE_SOON"]
    assert notices_due_soon(today=receivable.due_date + timedelta(days=1)) == 0  # overdue now


@pytest.mark.django_db
def test_overdue_tells_the_holder_once_when_marked(department, bank, make_person):
    patient = make_person("刘洋", birth=date(1975, 5, 5), phone="13900005001")
    grant_line(bank, patient)
    receivable = Receivable.objects.get(encounter=settled_on_credit(department, patient, 30_000))
    after = receivable.due_date + timedelta(days=1)

    assert receivables_mark_overdue(today=after) == 1
    assert receivables_mark_overdue(today=after) == 0
    overdue = [n for n in notices(patient) if n[0] == "OVERDUE"]
    text = "您的信用就医账单300.00元已逾期，额度已冻结，请尽快还款。"
    assert overdue == [("OVERDUE", f"overdue:{receivable.pk}", text)]


@pytest.mark.django_db
def test_a_refund_owed_tells_the_patient_it_is_ready(shared_sim, department, make_person):
    patient = make_person("林江", birth=date(1966, 6, 6), phone="13900006001")
    refund = refund_owed(shared_sim, department, patient, 100_000)

    assert notices(patient) == [
        (
            "REFUND_READY",
            f"refund-ready:{refund.pk}",
            "您有一笔980.00元的退款待领取，请到医院收费窗口或线上办理。",
        )
    ]


@pytest.mark.django_db
def test_a_notice_told_again_is_still_one_message(department, bank, make_person):
    patient = make_person("郑华", birth=date(1988, 8, 8), phone="13900007001")
    grant_line(bank, patient)
    receivable = Receivable.objects.get(encounter=settled_on_credit(department, patient, 1_000))

    assert due_soon_notice(receivable) and due_soon_notice(receivable)
    assert SmsMessage.objects.filter(person=patient, template="DUE_SOON").count() == 1


@pytest.mark.django_db
def test_nobody_without_a_phone_is_sent_anything(shared_sim, department, bank, make_person):
    parent = make_person("无手机", birth=date(1970, 7, 7))
    child = make_person("无手机小", birth=date(2014, 7, 7))
    own = make_person("也无手机", birth=date(1972, 7, 7))
    # First: the insurer's retry settles every claim deferred by then.
    refund_owed(shared_sim, department, make_person("退款无手机", birth=date(1960, 1, 1)), 50_000)
    grant_line(bank, parent)
    grant_line(bank, own)
    link_family(parent, child)
    settled_on_credit(department, child, 10_000)
    receivable = Receivable.objects.get(encounter=settled_on_credit(department, own, 10_000))
    notices_due_soon(today=receivable.due_date - timedelta(days=3))
    receivables_mark_overdue(today=receivable.due_date + timedelta(days=1))

    assert Receivable.objects.filter(status="overdue").count() == 2
    assert not SmsMessage.objects.exists()


# --- a worker killed mid-send --------------------------------------------------------------------


def worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["--loglevel", "INFO", "--hostname", f"notices-{uuid4().hex[:8]}@%h"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.mark.django_db(transaction=True)
def test_every_notice_is_sent_once_after_a_worker_is_killed_mid_send(
    department, bank, make_person, tmp_path
):
    """The gateway holds the first message the worker sends; the worker is killed while it
    waits (the gateway has the message, the row does not say so); the held message goes
    through; a new worker sends every message, and the gateway keeps each once."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs a broker a worker process shares: set CELERY_BROKER_URL=redis://...")
    gateway = started("run_sms_simulator", tmp_path / "sms-sim.log")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        app.control.purge()  # tasks other tests queued are no concern of this one
        gateway.control(mode="hang", hang_seconds=HOLD)

        parent = make_person("陈建国", birth=date(1980, 1, 1), phone="13900009001")
        child = make_person("陈小雨", birth=date(2015, 6, 1), phone="13900009002")
        grant_line(bank, parent)
        link_family(parent, child)
        for index in range(3):
            patient = make_person(
                f"病人{index}", birth=date(1970 + index, 1, 1), phone=f"1390000901{index + 3}"
            )
            grant_line(bank, patient)
            settled_on_credit(department, patient, 10_000 + index)
        settled_on_credit(department, child, 20_000)
        expected = dict(SmsMessage.objects.values_list("event_key", "text"))
        assert len(expected) == 5

        db = connection.settings_dict
        database = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"{database}/{db['NAME']}",
            "SMS_URL": gateway.url + "/",
            # The worker waits on the held message as long as the test needs it to.
            "SMS_TIMEOUT_SECONDS": str(HOLD),
        }
        first = worker_process(env, tmp_path / "worker-1.log")
        workers.append(first)
        app.send_task("accounts.tasks.deliver_sms")  # as beat does every 15 s
        assert wait_until(lambda: gateway.state()["hanging"] == 1, 90), (
            tmp_path / "worker-1.log"
        ).read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert SmsMessage.objects.filter(status="sent").count() == 0

        gateway.control(mode="ok", release=True)  # the held message reaches the phone late
        assert wait_until(lambda: gateway.state()["messages"] == 1, 30)
        assert SmsMessage.objects.filter(status="pending", attempts=0).count() == 5

        second = worker_process(env, tmp_path / "worker-2.log")
        workers.append(second)
        app.send_task("accounts.tasks.deliver_sms")
        assert wait_until(lambda: not SmsMessage.objects.exclude(status="sent").exists(), 90), (
            tmp_path / "worker-2.log"
        ).read_text()
    finally:
        for worker in workers:
            stop(worker)
        kept = gateway.request("GET", "/sim/messages")["messages"]
        gateway.stop()

    # Each event's message once at the gateway: five messages, each text once.
    assert sorted(m["text"] for m in kept) == sorted(f"【信用就医】{t}" for t in expected.values())
    assert sorted(m["out_id"] for m in kept) == sorted(
        str(pk) for pk in SmsMessage.objects.values_list("pk", flat=True)
    )
    by_out_id = {m["out_id"]: m for m in kept}
    for message in SmsMessage.objects.all():
        arrived = by_out_id[str(message.pk)]
        assert arrived["text"] == f"【信用就医】{expected[message.event_key]}"
        assert arrived["phone"] == phone_of(message)
        assert arrived["biz_id"] == message.biz_id
