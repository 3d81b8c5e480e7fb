"""The SMS gateway simulator: a real HTTP server that keeps every message it accepts.

``POST /`` takes a message in the cloud-SMS shape (API.md § Notices (SMS)) and checks it as a
gateway does, answering ``{"Code": "OK", "BizId", "Message": "OK", "RequestId"}`` or a refusal
``Code`` (``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.SMS_TEMPLATE_ILLEGAL``,
``isv.SMS_SIGNATURE_ILLEGAL``, ``isv.INVALID_PARAMETERS``). A message may carry an ``OutId`` (the
sender's name for it): sent again with the same ``OutId``, it is answered as the first time and
not sent twice, as the real gateways dedupe. Accepted messages are kept in memory
(the latest :data:`KEPT`), rendered in Chinese as the phone shows them, and logged one line each
to stdout, so that a person running ``make run`` can read a login code. Besides it answers:

``GET /``
    a page listing the messages, newest first (``?phone=`` for one phone), refreshing itself.
``GET /sim/messages?phone=``
    the messages as JSON, oldest first: ``{"messages": [{biz_id, phone, sign_name, template,
    params, template_param (the string as received), text, received_at, out_id}]}`` (a test
    aid, not the wire).
``GET /sim/state``
    the mode, the number of requests held now (``hanging``), of requests received on ``POST /``
    whatever their fate (``received``) and of messages kept.
``POST /sim/control`` ``{"mode": "ok"|"reject"|"fail"|"hang", "code", "message", "hang_seconds",
"release"}``
    ``reject`` answers every message with ``code`` (``isv.BUSINESS_LIMIT_CONTROL`` unless
    given) and keeps none; ``fail`` answers HTTP 503; ``hang`` holds each message
    ``hang_seconds`` before handling it, so a message the caller gave up on is still sent late;
    ``release`` lets every held message go on now.

``python -m accounts.sms.simulator --port 8766`` runs it, and so does
``manage.py run_sms_simulator``.
"""

import argparse
import html
import json
import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

from accounts.sms import PHONE, TEMPLATES, SmsTemplateError, check_message, render
from core.simserver import (
    DEFAULT_HANG_SECONDS,
    HangingServer,
    JsonHandler,
    Log,
    control_hang,
    serve,
)

MODES = ("ok", "reject", "fail", "hang")
DEFAULT_REJECT_CODE = "isv.BUSINESS_LIMIT_CONTROL"
# Enough for any development session; the oldest go first beyond it.
KEPT = 10_000
CST = timezone(timedelta(hours=8), "CST")

Json = dict[str, Any]


class Gateway:
    """Checks and keeps messages; safe to call from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: deque[Json] = deque(maxlen=KEPT)
        # OutId -> the answer given: a message sent again with the same OutId (its sender
        # did not hear the first answer) is answered as before and not sent twice.
        self._out_ids: dict[str, Json] = {}

    def accept(self, body: object) -> tuple[Json, list[Json]]:
        """The answer to one ``POST /`` body and the messages it kept (one per phone)."""
        if not isinstance(body, dict):
            return _refusal("isv.INVALID_PARAMETERS", "the body must be a JSON object"), []
        phones = str(body.get("PhoneNumbers") or "").split(",")
        if not all(PHONE.fullmatch(phone) for phone in phones):
            return _refusal(
                "isv.MOBILE_NUMBER_ILLEGAL", "PhoneNumbers: 11-digit mobile numbers"
            ), []
        sign_name = body.get("SignName")
        if not isinstance(sign_name, str) or not 2 <= len(sign_name) <= 12:
            return _refusal("isv.SMS_SIGNATURE_ILLEGAL", "SignName: 2 to 12 characters"), []
        template = body.get("TemplateCode")
        if template not in TEMPLATES:
            return _refusal("isv.SMS_TEMPLATE_ILLEGAL", f"unknown TemplateCode {template!r}"), []
        try:
            params = json.loads(body.get("TemplateParam") or "")
            if not isinstance(params, dict):
                raise SmsTemplateError("TemplateParam must be a JSON object in a string")
            checked = check_message(phones[0], str(template), params)
        except (ValueError, TypeError) as e:
            return _refusal("isv.INVALID_PARAMETERS", f"TemplateParam: {e}"), []
        out_id = body.get("OutId")
        if out_id is not None and (not isinstance(out_id, str) or not 0 < len(out_id) <= 64):
            return _refusal("isv.INVALID_PARAMETERS", "OutId: 1 to 64 characters"), []
        with self._lock:
            if out_id and out_id in self._out_ids:
                return dict(self._out_ids[out_id], RequestId=_request_id()), []
        biz_id = f"{uuid4().int % 10**18:018d}^0"
        received_at = datetime.now(tz=CST).isoformat(timespec="seconds")
        kept = [
            {
                "biz_id": biz_id,
                "phone": phone,
                "sign_name": sign_name,
                "template": template,
                "params": checked,
                "template_param": body["TemplateParam"],
                "text": f"【{sign_name}】{render(str(template), checked)}",
                "received_at": received_at,
                "out_id": out_id or "",
            }
            for phone in phones
        ]
        answer = {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": _request_id()}
        with self._lock:
            if out_id and out_id in self._out_ids:  # the same sent concurrently, kept first
                return dict(self._out_ids[out_id], RequestId=_request_id()), []
            self._messages.extend(kept)
            if out_id:
                self._out_ids[out_id] = answer
        return answer, kept

    def messages(self, phone: str = "") -> list[Json]:
        """The messages kept, oldest first, for ``phone`` or for everyone."""
        with self._lock:
            return [dict(m) for m in self._messages if not phone or m["phone"] == phone]


def _refusal(code: str, message: str) -> Json:
    return {"Code": code, "Message": message, "RequestId": _request_id()}


def _request_id() -> str:
    return str(uuid4()).upper()


class SmsSimulatorServer(HangingServer):
    """The HTTP side of a :class:`Gateway`, with the failure mode it plays."""

    def __init__(
        self,
        address: tuple[str, int],
        gateway: Gateway | None = None,
        *,
        mode: str = "ok",
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        log: Log = print,
    ) -> None:
        self.gateway = gateway or Gateway()
        self.mode = _mode(mode)
        self.reject_code = DEFAULT_REJECT_CODE
        self.reject_message = "rejected (simulated)"
        self.received = 0
        self._received_lock = threading.Lock()
        super().__init__(address, _Handler, hang_seconds=hang_seconds, log=log)

    def count_received(self) -> None:
        with self._received_lock:
            self.received += 1


class _Handler(JsonHandler):
    server: SmsSimulatorServer
    server_version = "SmsSimulator/1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        phone = (parse_qs(url.query).get("phone") or [""])[0]
        if url.path == "/":
            page = _page(self.server.gateway.messages(phone), phone, self.server.mode)
            self.send_body(200, page.encode(), "text/html; charset=utf-8")
        elif url.path == "/sim/messages":
            self.send_json(200, {"messages": self.server.gateway.messages(phone)})
        elif url.path == "/sim/state":
            state = {
                "mode": self.server.mode,
                "hang_seconds": self.server.hang_seconds,
                "hanging": self.server.hanging,
                "received": self.server.received,
                "messages": len(self.server.gateway.messages()),
            }
            self.send_json(200, state)
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/sim/control":
            self._control()
        elif path == "/":
            self._send_message()
        else:
            self.send_json(404, {"error": "not found"})

    def _control(self) -> None:
        try:
            body = self.read_json()
            if not isinstance(body, dict):
                raise ValueError("a JSON object is required")
            mode = _mode(body.get("mode"))
            hang, release = control_hang(body)
            code = body.get("code", DEFAULT_REJECT_CODE)
            message = body.get("message", "rejected (simulated)")
            if not isinstance(code, str) or not code or code == "OK":
                raise ValueError("code must be a gateway Code other than OK")
            if not isinstance(message, str):
                raise ValueError("message must be a string")
        except ValueError as e:
            self.send_json(400, {"error": str(e)})
            return
        server = self.server
        server.mode, server.hang_seconds = mode, hang
        server.reject_code, server.reject_message = code, message
        if release:
            server.release()
        server.log(f"control mode={mode} code={code} hang_seconds={hang:g}{' release' * release}")
        self.send_json(200, {"mode": mode, "code": code, "hang_seconds": hang, "release": release})

    def _send_message(self) -> None:
        server = self.server
        mode, hang = server.mode, server.hang_seconds
        server.count_received()
        try:
            body = self.read_json()
        except ValueError:
            server.log("SMS ? HTTP 400 (not JSON)")
            self.send_json(400, _refusal("isv.INVALID_PARAMETERS", "the body must be JSON"))
            return
        who = body.get("PhoneNumbers") if isinstance(body, dict) else None
        what = body.get("TemplateCode") if isinstance(body, dict) else None
        if mode == "fail":
            server.log(f"SMS {who} {what} HTTP 503 (mode fail)")
            self.send_json(503, {"error": "SMS gateway unavailable (simulated)"})
            return
        if mode == "reject":
            server.log(f"SMS {who} {what} Code={server.reject_code} (mode reject)")
            self.send_json(200, _refusal(server.reject_code, server.reject_message))
            return
        if mode == "hang":
            server.log(f"SMS {who} {what} hanging {hang:g} s (mode hang)")
            server.hang(hang)
        answer, kept = server.gateway.accept(body)
        delivered = self.send_json(200, answer)
        late = "" if delivered else " (answer not delivered)"
        if not kept:
            server.log(f"SMS {who} {what} Code={answer['Code']} {answer['Message']}{late}")
        for message in kept:
            server.log(
                f"SMS {message['received_at']} to {message['phone']} {message['template']}: "
                f"{message['text']} BizId={message['biz_id']}{late}"
            )


def _mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    return str(mode)


def _page(messages: list[Json], phone: str, mode: str) -> str:
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(m["received_at"].replace("T", " ")[:19]),
            html.escape(m["phone"]),
            html.escape(m["template"]),
            html.escape(m["text"]),
        )
        for m in reversed(messages)
    )
    shown = f"发给 {html.escape(phone)} 的短信" if phone else "全部短信"
    empty = "" if messages else '<p class="empty">还没有短信。No messages yet.</p>'
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>短信模拟器 SMS simulator</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; vertical-align: top; }}
td:nth-child(4) {{ font-size: 1.1rem; }}
.note {{ color: #555; }}
</style></head>
<body>
<h1>短信模拟器 <small>SMS simulator</small></h1>
<p class="note">{shown}，最新的在前（每 5 秒刷新）。Messages received, newest first
(refreshes every 5 s). Mode: {html.escape(mode)}.</p>
{empty}
<table><thead><tr><th>时间 Time (CST)</th><th>手机 Phone</th><th>模板 Template</th>
<th>短信内容 Text</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options; ``manage.py run_sms_simulator`` takes the same."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8766, help="port (8766; 0 picks a free one)")
    parser.add_argument("--mode", choices=MODES, default="ok", help="failure mode to start in")
    parser.add_argument(
        "--hang-seconds", type=float, default=DEFAULT_HANG_SECONDS, help="wait in mode hang"
    )


def server_from_options(options: dict[str, Any], log: Log = print) -> SmsSimulatorServer:
    return SmsSimulatorServer(
        (options["host"], options["port"]),
        mode=options["mode"],
        hang_seconds=options["hang_seconds"],
        log=log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m accounts.sms.simulator")
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    server = server_from_options(options, log=lambda line: print(line, flush=True))
    print(f"SMS simulator at {server.url}/ (open it in a browser to read the messages)", flush=True)
    serve(server)


if __name__ == "__main__":
    main()
