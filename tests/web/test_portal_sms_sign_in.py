"""The portal's sign-in by SMS code: a mobile number, a code sent to it, a session for the
person's own login (made on the first sign-in, with no usable password); registering a number
that is on nobody; django-axes' lock on wrong codes; and, in a phone-sized browser, the code
read from the real SMS simulator.
"""

import json
from datetime import date, timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client

from accounts import crypto
from accounts.models import Person, SmsCode, SmsMessage
from accounts.selectors import person_id_number
from accounts.services.notices import sms_deliver
from accounts.services.sms_codes import RESEND_SECONDS
from accounts.services.staff import PATIENT_ROLE, staff_create
from accounts.sms.client import SmsClient
from tests.accounts.simulators import started
from tests.factories import home_institution, make_id_number

SIGN_IN = "/portal/sign-in/"
ADDRESS = "10.0.0.7"


def send_code(client: Client, phone: str, address: str = ADDRESS):
    return client.post(SIGN_IN, {"phone": phone, "action": "send"}, REMOTE_ADDR=address)


def outbox_code(phone: str) -> str:
    """The code the newest sign-in message to ``phone`` carries, as the phone gets it."""
    for message in SmsMessage.objects.filter(template="LOGIN_CODE").order_by("-created_at"):
        if crypto.decrypt(message.phone_encrypted) == phone:
            return json.loads(crypto.decrypt(message.params_encrypted))["code"]
    raise AssertionError(f"no code sent to {phone}")


def enter_code(client: Client, phone: str, code: str, address: str = ADDRESS, **more: str):
    body = {"phone": phone, "code": code, "action": "sign_in", **more}
    return client.post(SIGN_IN, body, REMOTE_ADDR=address)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def next_minute(phone: str) -> None:
    """The phone's codes a minute older: another may be asked for (no waiting)."""
    for row in SmsCode.objects.filter(phone_hash=crypto.lookup_hash(phone)):
        row.created_at -= timedelta(seconds=RESEND_SECONDS + 1)
        row.save(update_fields=["created_at"])


@pytest.mark.django_db
def test_a_patient_signs_in_with_the_code_and_gets_a_login_without_a_password(make_person):
    person = make_person("陈静", phone="13900000201")
    assert person.user is None
    client = Client()
    page = client.get(SIGN_IN)
    assert page.status_code == 200 and "获取验证码" in page.content.decode()
    sent = send_code(client, "139 0000 0201")
    assert sent.status_code == 200 and "验证码已通过短信发送" in sent.content.decode()
    answer = enter_code(client, "13900000201", outbox_code("13900000201"))
    assert (answer.status_code, answer["Location"]) == (302, "/portal/")
    person.refresh_from_db()
    user = person.user
    assert user is not None and not user.has_usable_password()
    assert user.groups.filter(name=PATIENT_ROLE).exists()
    assert client.get("/portal/").status_code == 200
    # Signing out goes back to this page; the next sign-in finds the same login.
    assert client.post("/logout/")["Location"] == SIGN_IN
    assert client.get("/portal/").status_code == 302
    next_minute("13900000201")
    send_code(client, "13900000201")
    enter_code(client, "13900000201", outbox_code("13900000201"))
    person.refresh_from_db()
    assert person.user_id == user.pk


@pytest.mark.django_db
def test_a_portal_page_sends_the_signed_out_to_the_sms_sign_in_and_back(make_person):
    make_person("陈静", phone="13900000202")
    client = Client()
    answer = client.get("/portal/owed/")
    assert answer["Location"] == "/portal/sign-in/?next=/portal/owed/"
    send_code(client, "13900000202")
    signed_in = client.post(
        "/portal/sign-in/?next=/portal/owed/",
        {"phone": "13900000202", "code": outbox_code("13900000202"), "action": "sign_in"},
    )
    assert signed_in["Location"] == "/portal/owed/"
    # Elsewhere is not followed.
    client.logout()
    next_minute("13900000202")
    send_code(client, "13900000202")
    away = client.post(
        "/portal/sign-in/?next=https://elsewhere.example/",
        {"phone": "13900000202", "code": outbox_code("13900000202"), "action": "sign_in"},
    )
    assert away["Location"] == "/portal/"


@pytest.mark.django_db
def test_a_second_code_within_a_minute_is_refused_on_the_page():
    client = Client()
    send_code(client, "13900000203")
    again = send_code(client, "13900000203")
    assert again.status_code == 200
    assert "每个号码每分钟只能发送一个验证码" in again.context["form"].errors["phone"][0]
    assert SmsCode.objects.count() == 1


@pytest.mark.django_db
def test_a_new_number_registers_with_name_and_id_number_on_the_page():
    client = Client()
    send_code(client, "13900000204")
    code = outbox_code("13900000204")
    bare = enter_code(client, "13900000204", code)
    assert bare.status_code == 200 and bare.context["register_open"]
    assert "尚未登记" in bare.context["form"].errors["id_number"][0]
    number = make_id_number(date(1990, 4, 5))
    answer = enter_code(client, "13900000204", code, name="林三", id_number=number)
    assert answer.status_code == 302
    person = Person.objects.get()
    assert person_id_number(person) == number and person.user is not None
    assert client.get("/portal/").status_code == 200


@pytest.mark.django_db
def test_a_person_with_another_number_is_told_to_see_a_cashier(make_person):
    holder = make_person("赵六", phone="13900000205")
    client = Client()
    send_code(client, "13900000206")
    answer = enter_code(
        client,
        "13900000206",
        outbox_code("13900000206"),
        name="赵六",
        id_number=person_id_number(holder),
    )
    assert answer.status_code == 200
    assert "收费处" in answer.context["form"].errors["phone"][0]


@pytest.mark.django_db
def test_five_wrong_codes_lock_the_number_at_that_address_as_passwords_do(make_person):
    person = make_person("陈静", phone="13900000207")
    client = Client()
    send_code(client, "13900000207")
    code = outbox_code("13900000207")
    for typed in ("13900000207", "139 0000 0207", "139-0000-0207", "13900000207"):
        answer = enter_code(client, typed, wrong(code))
        assert answer.status_code == 200
        assert "验证码错误" in answer.context["form"].errors["code"][0]
    locked = enter_code(client, "13900000207", wrong(code))
    assert locked.status_code == 429
    assert "15 分钟后再试" in locked.content.decode()
    # Locked there even with a new, right code (the wrong ones also voided the old code).
    next_minute("13900000207")
    send_code(client, "13900000207")
    fresh = outbox_code("13900000207")
    assert enter_code(client, "13900000207", fresh).status_code == 429
    assert SmsCode.objects.filter(used_at__isnull=False).count() == 0  # not even checked
    # Another address is not locked out, and the code works there.
    assert enter_code(Client(), "13900000207", fresh, address="10.0.0.8").status_code == 302
    person.refresh_from_db()
    assert person.user is not None
    # No code or personal data kept by the lock's records.
    stored = repr(list(AccessAttempt.objects.values()))
    assert code not in stored and fresh not in stored and person_id_number(person) not in stored


@pytest.mark.django_db
def test_a_success_clears_the_count(make_person):
    make_person("陈静", phone="13900000208")
    client = Client()
    send_code(client, "13900000208")
    code = outbox_code("13900000208")
    for _ in range(4):
        enter_code(client, "13900000208", wrong(code))
    # Four wrong tries left the code one more; the right one signs in and clears the count.
    assert enter_code(client, "13900000208", code).status_code == 302
    assert not AccessAttempt.objects.filter(failures_since_start__gt=0).exists()


@pytest.mark.django_db
def test_patients_no_longer_sign_in_with_a_password_but_staff_do(make_person):
    staff, _token = staff_create(
        actor="test", institution=home_institution(), username="cashier9", role="cashier"
    )
    staff.set_password("right-pass-2026")
    staff.save()
    desk = Client()
    signed_in = desk.post("/login/", {"username": "cashier9", "password": "right-pass-2026"})
    assert signed_in["Location"] == "/cashier/"
    assert desk.post("/logout/")["Location"] == "/login/"
    make_person("陈静", phone="13900000209")
    refused = Client().post("/login/", {"username": "13900000209", "password": "anything-1"})
    assert refused.status_code == 200
    login_page = Client().get("/login/").content.decode()
    assert 'href="/portal/sign-in/"' in login_page


# --- in a phone-sized browser, the code from the real SMS simulator ----------------------------


@pytest.fixture
def gateway(tmp_path):
    simulator = started("run_sms_simulator", tmp_path / "sms-sim.log")
    yield simulator
    simulator.stop()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_patient_signs_in_on_a_phone_with_the_code_from_the_sms_simulator(
    browser, live_server, gateway, make_person
):
    person = make_person("陈静", birth=date(1988, 3, 14), phone="13900000210")
    phone = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    try:
        page = phone.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{live_server.url}/portal/")
        page.wait_for_url(f"{live_server.url}/portal/sign-in/?next=/portal/")
        assert page.locator("h1").inner_text() == "患者登录"
        page.fill("input[name=phone]", "139 0000 0210")
        page.click("button[value=send]")
        assert "验证码已通过短信发送" in page.locator(".sent").inner_text()

        # A worker's delivery, run here against the simulator; the code is read back from it.
        sender = SmsClient(gateway.url + "/", sign_name="信用就医", timeout=5)
        assert sms_deliver(client=sender) == 1
        (message,) = gateway.request("GET", "/sim/messages?phone=13900000210")["messages"]
        code = message["params"]["code"]
        assert f"您的登录验证码为{code}" in message["text"]

        fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits
        page.screenshot(path=str(_artifact("portal_sms_sign_in_form.png")), full_page=True)
        assert page.locator("input[name=phone]").input_value() == "139 0000 0210"
        page.fill("input[name=code]", wrong(code))
        page.click("button.wide[value=sign_in]")
        assert "验证码错误" in page.locator(".errorlist").inner_text()
        page.fill("input[name=code]", code)
        page.press("input[name=code]", "Enter")  # Enter signs in, it sends no other code
        page.wait_for_url(f"{live_server.url}/portal/")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        person.refresh_from_db()
        assert person.user is not None
        page.screenshot(path=str(_artifact("portal_sms_sign_in_phone.png")), full_page=True)
        assert not errors, errors
    finally:
        phone.close()


def _artifact(name: str):
    from tests.web.conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
