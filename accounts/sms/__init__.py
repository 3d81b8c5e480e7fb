"""The SMS gateway: its templates, the errors of a send, the adapter and a simulator.

The wire is the common cloud-SMS shape (API.md § Notices (SMS)): ``POST {SMS_URL}`` with
``{"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam"}``, ``TemplateParam`` being a JSON
string of the template's parameters, answered ``{"Code": "OK", "BizId"}`` or another ``Code``
with ``Message``. Only ``client`` (the adapter) and ``simulator`` know that shape.

A gateway sends only templates registered with it beforehand; :data:`TEMPLATES` is that
register: each template's parameters and its text, which the simulator renders as a phone
would show it. Amounts are yuan strings (``"12.30"``, ``core.money.fen_to_yuan``), dates
``YYYY-MM-DD``.

This module and ``simulator`` import nothing from Django, so the simulator runs as a plain
``python -m accounts.sms.simulator`` too; ``client`` is the Django side.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from core.money import WIRE, fen_to_yuan, yuan_to_fen


@dataclass(frozen=True)
class Template:
    """A registered message: the parameters it takes and its text (``{name}`` placeholders)."""

    params: tuple[str, ...]
    text: str


TEMPLATES: dict[str, Template] = {
    "LOGIN_CODE": Template(
        ("code",), "您的登录验证码为{code}，5分钟内有效。请勿将验证码告诉他人。"
    ),
    "SETTLED": Template(
        ("amount", "due_date"),
        "您的就医费用已结算，信用就医额度支付{amount}元，请于{due_date}前还款。",
    ),
    "DUE_SOON": Template(
        ("amount", "due_date"), "您的信用就医账单{amount}元将于{due_date}到期，请按时还款。"
    ),
    "OVERDUE": Template(("amount",), "您的信用就医账单{amount}元已逾期，额度已冻结，请尽快还款。"),
    "REFUND_READY": Template(
        ("amount",), "您有一笔{amount}元的退款待领取，请到医院收费窗口或线上办理。"
    ),
    "FAMILY_DRAW": Template(("name", "amount"), "{name}本次就医使用了您的亲情付额度{amount}元。"),
    # To the person whose costs a family member asks to carry: their consent, by the code.
    "CONSENT_CODE": Template(
        ("name", "code"),
        "{name}申请以其信用就医额度为您支付医疗费用（亲情付）。如您同意，"
        "请将验证码{code}告诉对方，5分钟内有效。",
    ),
}

PHONE = re.compile(r"1\d{10}")
CODE = re.compile(r"\d{6}")


class SmsError(Exception):
    """A message that was not accepted by the gateway."""


class SmsRejected(SmsError):
    """The gateway answered a ``Code`` other than ``OK``: sending the same again will not help.

    ``code`` is the gateway's (``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.BUSINESS_LIMIT_CONTROL``,
    ...), ``message`` its explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SmsUnavailable(SmsError):
    """The gateway could not be reached or gave no usable answer: try again later.

    ``maybe_sent`` is true when the request reached the gateway and the answer was lost (a
    timeout while waiting, a cut connection, an answer that does not parse): the message may
    have gone out, so a retry may deliver it twice.
    """

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class SmsTemplateError(ValueError):
    """A message that cannot be sent at all: an unknown template or wrong parameters."""


def check_message(phone: str, template: str, params: Mapping[str, object]) -> dict[str, str]:
    """The parameters of ``template`` for ``phone``, checked; :class:`SmsTemplateError` if not.

    The same rules the gateway applies, so that a bad message is refused before it is sent:
    a known template, exactly its parameters, each a string of the right form.
    """
    if not isinstance(phone, str) or not PHONE.fullmatch(phone):
        raise SmsTemplateError("a mainland mobile number has 11 digits starting with 1")
    known = TEMPLATES.get(template) if isinstance(template, str) else None
    if known is None:
        raise SmsTemplateError(f"unknown template {template!r}: one of {', '.join(TEMPLATES)}")
    if set(params) != set(known.params):
        missing = sorted(set(known.params) - set(params))
        extra = sorted(set(params) - set(known.params))
        raise SmsTemplateError(
            f"{template} takes {', '.join(known.params)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    checked: dict[str, str] = {}
    for name in known.params:
        value = params[name]
        if not isinstance(value, str) or not value.strip():
            raise SmsTemplateError(f"{template}: {name} must be a non-empty string")
        _check_param(template, name, value)
        checked[name] = value
    return checked


def _check_param(template: str, name: str, value: str) -> None:
    if name == "code" and not CODE.fullmatch(value):
        raise SmsTemplateError(f"{template}: code must be 6 digits")
    if name == "amount":
        try:
            fen = yuan_to_fen(value, WIRE)
        except ValueError as e:
            raise SmsTemplateError(f"{template}: amount must be yuan like 12.30 ({e})") from e
        if fen < 0:
            raise SmsTemplateError(f"{template}: amount must not be negative")
        if fen_to_yuan(fen) != value:  # as core.money writes it: "12.30", never "12.3"
            raise SmsTemplateError(f"{template}: amount must be yuan like 12.30")
    if name == "due_date":
        try:
            date.fromisoformat(value)
        except ValueError as e:
            raise SmsTemplateError(f"{template}: due_date must be YYYY-MM-DD") from e
        if len(value) != 10:
            raise SmsTemplateError(f"{template}: due_date must be YYYY-MM-DD")
    if name == "name" and len(value) > 20:
        raise SmsTemplateError(f"{template}: name must be at most 20 characters")


def render(template: str, params: Mapping[str, str]) -> str:
    """The text a phone shows for ``template`` with ``params`` (checked beforehand)."""
    return TEMPLATES[template].text.format_map(dict(params))
