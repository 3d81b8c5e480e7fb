"""The adapter to the SMS gateway (API.md § Notices (SMS)): one message per call.

:meth:`SmsClient.send` checks the message against the template register before anything is
sent (:class:`~accounts.sms.SmsTemplateError`), then returns the gateway's ``BizId``, or raises

:class:`~accounts.sms.SmsRejected`
    the gateway answered another ``Code`` (or an HTTP 4xx): permanent, do not resend as is;
:class:`~accounts.sms.SmsUnavailable`
    refused connection, DNS failure, HTTP 5xx, 408 or 429, a timeout, an answer that does not
    parse: try again later. ``maybe_sent`` says whether the message may have gone out anyway.

Only the standard library is used, and proxies from the environment are ignored, as for the
insurer. The login code in ``LOGIN_CODE`` is a secret: nothing here logs the parameters.
"""

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.sms import SmsRejected, SmsTemplateError, SmsUnavailable, check_message
from core.http import NoAnswer, NotSent, opener, post_json

__all__ = ["SmsClient", "SmsRejected", "SmsTemplateError", "SmsUnavailable"]

logger = logging.getLogger(__name__)


class SmsClient:
    """Sends messages through the gateway at ``url`` (``settings.SMS_URL``).

    ``sign_name`` (``settings.SMS_SIGN_NAME``) is the registered signature the phone shows in
    brackets; ``timeout`` (``settings.SMS_TIMEOUT_SECONDS``, 5 s) bounds connecting and each
    wait for data.
    """

    def __init__(
        self, url: str | None = None, sign_name: str | None = None, timeout: float | None = None
    ) -> None:
        url = url if url is not None else settings.SMS_URL
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ImproperlyConfigured(f"SMS_URL must be an http(s) URL, not {url!r}")
        self.url = url
        self.sign_name = sign_name if sign_name is not None else settings.SMS_SIGN_NAME
        if not self.sign_name:
            raise ImproperlyConfigured("SMS_SIGN_NAME must not be empty")
        self.timeout = float(timeout if timeout is not None else settings.SMS_TIMEOUT_SECONDS)
        self._opener = opener()

    def send(
        self, phone: str, template: str, params: Mapping[str, object], *, out_id: str = ""
    ) -> str:
        """Send ``template`` with ``params`` to ``phone``; the gateway's ``BizId``.

        ``out_id`` (the cloud-SMS ``OutId``, up to 64 characters) names the message on the
        sender's side: the gateway answers a second send with the same ``OutId`` as the first
        and does not send it again, so a send repeated after a lost answer is one message.
        """
        checked = check_message(phone, template, params)
        body = {
            "PhoneNumbers": phone,
            "SignName": self.sign_name,
            "TemplateCode": template,
            "TemplateParam": json.dumps(checked, ensure_ascii=False, sort_keys=True),
        }
        if out_id:
            body["OutId"] = out_id
        try:
            biz_id = self._exchange(body)
        except (SmsRejected, SmsUnavailable) as e:
            logger.warning("SMS %s to %s not sent: %s", template, _masked(phone), e)
            raise
        logger.info("SMS %s to %s accepted, BizId %s", template, _masked(phone), biz_id)
        return biz_id

    def _exchange(self, body: dict[str, str]) -> str:
        status, answer = self._post(body)
        code = answer.get("Code") if isinstance(answer, dict) else None
        message = answer.get("Message") if isinstance(answer, dict) else None
        if status >= 500 or status in (408, 429):
            raise SmsUnavailable(f"HTTP {status}", maybe_sent=status in (502, 504))
        if 400 <= status < 500:
            raise SmsRejected(str(code or f"HTTP {status}"), str(message or ""))
        if not 200 <= status < 300 or not isinstance(code, str):
            raise SmsUnavailable(f"HTTP {status}, not the gateway's answer", maybe_sent=True)
        if code != "OK":
            raise SmsRejected(code, str(message or ""))
        biz_id = answer.get("BizId")
        if not isinstance(biz_id, str) or not biz_id:
            raise SmsUnavailable("Code OK without a BizId", maybe_sent=True)
        return biz_id

    def _post(self, body: dict[str, str]) -> tuple[int, Any]:
        try:
            status, raw = post_json(self._opener, self.url, body, timeout=self.timeout)
        except NotSent as e:  # the gateway never had the whole message
            raise SmsUnavailable(f"not sent: {e}", maybe_sent=False) from e
        except NoAnswer as e:
            raise SmsUnavailable(f"no answer: {e}", maybe_sent=True) from e
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None


def _masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"
