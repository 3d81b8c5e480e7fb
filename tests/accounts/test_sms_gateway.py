"""The SMS gateway adapter against the shipped simulator, started as a real HTTP server."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from accounts.sms import TEMPLATES, SmsRejected, SmsTemplateError, SmsUnavailable
from accounts.sms.client import SmsClient
from tests.accounts.simulators import HOLD, SimulatorProcess, started
from tests.waiting import wait_until

PHONE = "13800138000"
EVERY_TEMPLATE = {
    "LOGIN_CODE": (
        {"code": "042917"},
        "您的登录验证码为042917，5分钟内有效。请勿将验证码告诉他人。",
    ),
    "SETTLED": (
        {"amount": "1234.50", "due_date": "2026-12-20"},
        "您的就医费用已结算，信用就医额度支付1234.50元，请于2026-12-20前还款。",
    ),
    "DUE_SOON": (
        {"amount": "88.00", "due_date": "2026-12-09"},
        "您的信用就医账单88.00元将于2026-12-09到期，请按时还款。",
    ),
    "OVERDUE": ({"amount": "88.00"}, "您的信用就医账单88.00元已逾期，额度已冻结，请尽快还款。"),
    "REFUND_READY": (
        {"amount": "0.07"},
        "您有一笔0.07元的退款待领取，请到医院收费窗口或线上办理。",
    ),
    "FAMILY_DRAW": (
        {"name": "李秀英", "amount": "3000.00"},
        "李秀英本次就医使用了您的亲情付额度3000.00元。",
    ),
    "CONSENT_CODE": (
        {"name": "林子豪", "code": "654321"},
        "林子豪申请以其信用就医额度为您支付医疗费用（亲情付）。如您同意，"
        "请将验证码654321告诉对方，5分钟内有效。",
    ),
}


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory):
    """One simulator for the tests that leave its mode alone; each uses its own phone."""
    simulator = started("run_sms_simulator", tmp_path_factory.mktemp("sms") / "sms-sim.log")
    yield simulator
    simulator.stop()


@pytest.fixture
def gateway(tmp_path):
    simulator = started("run_sms_simulator", tmp_path / "sms-sim.log")
    yield simulator
    simulator.stop()


def client_for(simulator: SimulatorProcess, timeout: float = 5) -> SmsClient:
    return SmsClient(simulator.url + "/", sign_name="信用就医", timeout=timeout)


def messages(simulator: SimulatorProcess, phone: str = "") -> list[dict]:
    return simulator.request("GET", f"/sim/messages?phone={phone}")["messages"]


def test_the_register_and_api_md_list_the_same_templates():
    """API.md's templates, and the one the family consent adds (README § family links)."""
    assert {name: t.params for name, t in TEMPLATES.items()} == {
        "CONSENT_CODE": ("name", "code"),
        "LOGIN_CODE": ("code",),
        "SETTLED": ("amount", "due_date"),
        "DUE_SOON": ("amount", "due_date"),
        "OVERDUE": ("amount",),
        "REFUND_READY": ("amount",),
        "FAMILY_DRAW": ("name", "amount"),
    }
    assert set(EVERY_TEMPLATE) == set(TEMPLATES)


def test_every_template_is_sent_and_kept_as_the_phone_shows_it(shared_gateway):
    client = client_for(shared_gateway)
    phone = "13900000001"
    biz_ids = [client.send(phone, name, params) for name, (params, _) in EVERY_TEMPLATE.items()]

    kept = messages(shared_gateway, phone)
    assert [m["biz_id"] for m in kept] == biz_ids and len(set(biz_ids)) == len(biz_ids)
    for message, (name, (params, text)) in zip(kept, EVERY_TEMPLATE.items(), strict=True):
        assert (message["phone"], message["template"], message["params"]) == (phone, name, params)
        assert message["sign_name"] == "信用就医"
        assert message["text"] == f"【信用就医】{text}"


def test_template_param_travels_as_a_json_string(shared_gateway):
    client = client_for(shared_gateway)
    phone = "13900000002"
    client.send(phone, "FAMILY_DRAW", {"name": "王建国", "amount": "12.30"})

    (message,) = messages(shared_gateway, phone)
    raw = message["template_param"]
    assert isinstance(raw, str)
    assert json.loads(raw) == {"amount": "12.30", "name": "王建国"}
    assert "王建国" in raw  # UTF-8, not \\u escapes


def test_a_message_sent_as_an_object_is_refused_by_the_gateway(shared_gateway):
    # TemplateParam must be a JSON string: the gateway refuses an object (as a real one does).
    answer = shared_gateway.request(
        "POST",
        "/",
        {
            "PhoneNumbers": "13900000003",
            "SignName": "信用就医",
            "TemplateCode": "OVERDUE",
            "TemplateParam": {"amount": "1.00"},
        },
    )
    assert answer["Code"] == "isv.INVALID_PARAMETERS"
    assert messages(shared_gateway, "13900000003") == []


@pytest.mark.parametrize(
    ("template", "params", "why"),
    [
        ("WELCOME", {}, "unknown template"),
        ("SETTLED", {"amount": "12.30"}, "missing due_date"),
        ("OVERDUE", {"amount": "12.30", "name": "x"}, "unknown name"),
        ("OVERDUE", {"amount": 1230}, "must be a non-empty string"),
        ("OVERDUE", {"amount": "12.3"}, "amount must be yuan"),
        ("OVERDUE", {"amount": "-1.00"}, "must not be negative"),
        ("DUE_SOON", {"amount": "1.00", "due_date": "20261220"}, "YYYY-MM-DD"),
        ("LOGIN_CODE", {"code": "12345"}, "6 digits"),
    ],
)
def test_a_bad_message_is_refused_before_any_call(shared_gateway, template, params, why):
    before = shared_gateway.state()["received"]
    with pytest.raises(SmsTemplateError, match=why):
        client_for(shared_gateway).send("13900000004", template, params)
    assert shared_gateway.state()["received"] == before


def test_a_bad_phone_is_refused_before_any_call(shared_gateway):
    before = shared_gateway.state()["received"]
    for phone in ("1380013800", "23800138000", "+8613800138000", "138 0013 8000"):
        with pytest.raises(SmsTemplateError, match="11 digits"):
            client_for(shared_gateway).send(phone, "LOGIN_CODE", {"code": "123456"})
    assert shared_gateway.state()["received"] == before


def test_a_refusal_of_the_gateway_itself_is_rejected(shared_gateway):
    client = SmsClient(
        shared_gateway.url, sign_name="一个远远超过十二个字的短信签名名称", timeout=5
    )
    with pytest.raises(SmsRejected) as refused:
        client.send("13900000005", "OVERDUE", {"amount": "1.00"})
    assert refused.value.code == "isv.SMS_SIGNATURE_ILLEGAL"
    assert messages(shared_gateway, "13900000005") == []


def test_settings_give_the_url_the_sign_name_and_the_timeout(shared_gateway):
    with override_settings(
        SMS_URL=shared_gateway.url + "/", SMS_SIGN_NAME="厦门医保", SMS_TIMEOUT_SECONDS=2
    ):
        client = SmsClient()
    assert (client.url, client.sign_name, client.timeout) == (
        shared_gateway.url + "/",
        "厦门医保",
        2.0,
    )
    client.send("13900000006", "REFUND_READY", {"amount": "5.00"})
    assert messages(shared_gateway, "13900000006")[0]["text"].startswith("【厦门医保】")
    with override_settings(SMS_URL="ftp://127.0.0.1/"), pytest.raises(ImproperlyConfigured):
        SmsClient()


def test_the_page_lists_messages_newest_first_escaped(shared_gateway):
    client = client_for(shared_gateway)
    phone = "13900000007"
    client.send(phone, "LOGIN_CODE", {"code": "111111"})
    client.send(phone, "FAMILY_DRAW", {"name": "<b>张三</b>", "amount": "9.99"})

    status, page = shared_gateway.exchange("GET", f"/?phone={phone}")
    assert status == 200 and "短信模拟器" in page
    newest, older = page.index("&lt;b&gt;张三&lt;/b&gt;本次就医"), page.index("111111")
    assert newest < older
    assert "<b>张三" not in page
    assert "13900000001" not in page  # ?phone= shows that phone only
    assert phone in shared_gateway.exchange("GET", "/")[1]


def test_each_message_is_one_line_on_the_simulators_output(shared_gateway):
    client_for(shared_gateway).send("13900000008", "LOGIN_CODE", {"code": "730521"})
    assert wait_until(
        lambda: (
            "to 13900000008 LOGIN_CODE: 【信用就医】您的登录验证码为730521"
            in shared_gateway.log_path.read_text()
        ),
        timeout=10,
    )


def test_a_non_ok_code_is_rejected_and_nothing_is_kept(gateway):
    gateway.control(mode="reject", code="isv.BUSINESS_LIMIT_CONTROL", message="触发天级流控")
    with pytest.raises(SmsRejected) as refused:
        client_for(gateway).send(PHONE, "LOGIN_CODE", {"code": "123456"})
    assert (refused.value.code, refused.value.message) == (
        "isv.BUSINESS_LIMIT_CONTROL",
        "触发天级流控",
    )
    assert messages(gateway) == []

    gateway.control(mode="ok")
    assert client_for(gateway).send(PHONE, "LOGIN_CODE", {"code": "123456"})
    assert len(messages(gateway)) == 1


def test_a_503_is_unavailable_and_not_sent(gateway):
    gateway.control(mode="fail")
    with pytest.raises(SmsUnavailable, match="HTTP 503") as failed:
        client_for(gateway).send(PHONE, "OVERDUE", {"amount": "10.00"})
    assert failed.value.maybe_sent is False
    assert messages(gateway) == []


def test_a_hang_times_out_as_unavailable_and_the_message_may_go_out_late(gateway):
    # The client's own timeout is what is tested: the gateway holds the message until released.
    gateway.control(mode="hang", hang_seconds=HOLD)
    with pytest.raises(SmsUnavailable, match="no answer") as lost:
        client_for(gateway, timeout=0.5).send(PHONE, "OVERDUE", {"amount": "10.00"})
    assert lost.value.maybe_sent is True
    assert wait_until(lambda: gateway.state()["hanging"] == 1)
    assert messages(gateway) == []

    gateway.control(mode="ok", release=True)
    assert wait_until(lambda: len(messages(gateway)) == 1)  # sent after all: maybe_sent meant it


def test_a_stopped_gateway_is_unavailable_and_nothing_was_sent(gateway):
    gateway.stop()
    with pytest.raises(SmsUnavailable, match="not sent") as refused:
        client_for(gateway).send(PHONE, "OVERDUE", {"amount": "10.00"})
    assert refused.value.maybe_sent is False


def test_the_control_endpoint_refuses_what_it_does_not_know(shared_gateway):
    status, answer = shared_gateway.exchange("POST", "/sim/control", {"mode": "explode"})
    assert status == 400 and "mode must be one of" in answer["error"]
    status, answer = shared_gateway.exchange(
        "POST", "/sim/control", {"mode": "reject", "code": "OK"}
    )
    assert status == 400
    assert shared_gateway.state()["mode"] == "ok"
