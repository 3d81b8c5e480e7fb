"""``make run`` (``python -m config.devrun``) on embedded defaults, as a newcomer uses it."""

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.test_deployment import free_port
from tests.waiting import wait_until

BASE_DIR = Path(__file__).resolve().parent.parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Token {token}"} if token else {}
    try:
        with OPENER.open(urllib.request.Request(url, headers=headers), timeout=10) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def patient_signs_in(web: str, sms_port: int, phone: str) -> str:
    """Sign in on the portal as the banner tells a patient to: 'send code', the code read from
    the SMS simulator (the worker delivers it), entered; the page landed on."""
    browser = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )

    def post(fields: dict[str, str]) -> str:
        with browser.open(f"{web}/portal/sign-in/", timeout=10) as page:  # noqa: S310
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
        assert token is not None
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token.group(1)}).encode()
        with browser.open(f"{web}/portal/sign-in/", body, timeout=10) as answer:  # noqa: S310
            return str(answer.url)

    def messages() -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{sms_port}/sim/messages?phone={phone}"
        with OPENER.open(url, timeout=10) as answer:  # noqa: S310
            return list(json.loads(answer.read())["messages"])

    before = len(messages())
    post({"phone": phone, "action": "send"})
    assert wait_until(lambda: len(messages()) > before, timeout=60), "no code reached the SMS page"
    code = messages()[-1]["params"]["code"]  # type: ignore[index]
    return post({"phone": phone, "code": str(code), "action": "sign_in"})


OWN_SETTINGS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "INSURER_URL",
    "SMS_URL",
    "CREDIT_SCORE_URL",
    "DJANGO_SETTINGS_MODULE",
)


class MakeRun:
    def __init__(
        self, var_dir: Path, web_port: int, sim_port: int, log: str, *, sms_port: int = 0
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}
        env.update(
            DJANGO_VAR_DIR=str(var_dir),
            WEB_PORT=str(web_port),
            INSURER_SIM_PORT=str(sim_port),
            SMS_SIM_PORT=str(sms_port or free_port()),
            CREDIT_SCORE_SIM_PORT=str(free_port()),
        )
        self.log = var_dir / log
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "config.devrun"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.output = self.wait_for("Ctrl-C stops everything", timeout=120)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.log.read_text(errors="replace")
            if text in output:
                return output
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        pytest.fail(f"make run did not print {text!r}:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def pid_of(output: str, name: str) -> int:
    return int(re.findall(rf"{name} .*\(pid (\d+)\)", output)[-1])


def alive(pid: int) -> bool:
    """Whether the process runs (an exited one not yet reaped by init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_make_run_serves_survives_an_insurer_outage_and_keeps_logins_on_restart(tmp_path):
    web_port, sim_port, sms_port = free_port(), free_port(), free_port()
    web = f"http://127.0.0.1:{web_port}"
    run = MakeRun(tmp_path, web_port, sim_port, "first.log", sms_port=sms_port)
    try:
        token = re.search(r"cashier +cashier +API token (\S+)", run.output).group(1)
        secret = re.search(r"secret=(\S+)", run.output).group(1)
        assert f"simulator at http://127.0.0.1:{sim_port}" in run.output
        assert "Demo stays" in run.output and "not made" not in run.output
        assert f"SMS messages: http://127.0.0.1:{sms_port}/" in run.output
        assert get(f"http://127.0.0.1:{sms_port}/") == 200
        assert "credit-score simulator at" in run.output
        assert get(f"{web}/healthz") == 200
        assert get(f"{web}/login/") == 200
        # The demo patient, as printed: the number, a code from the SMS simulator's page.
        phone = re.search(r"patient +mobile (\d{11}) at /portal/sign-in/", run.output).group(1)
        assert patient_signs_in(web, sms_port, phone) == f"{web}/portal/"
        assert get(f"{web}/api/v1/insurance/claims/?status=deferred", token) == 200

        os.kill(pid_of(run.output, "insurer"), signal.SIGTERM)  # an insurer outage
        run.wait_for("this is an insurer outage", timeout=30)
        assert get(f"http://127.0.0.1:{sim_port}/sim/state") == 0
        assert get(f"{web}/healthz") == 200
        assert run.process.poll() is None
    finally:
        run.stop()
    for name in ("web", "worker", "sms", "score"):
        assert not alive(pid_of(run.output, name)), f"{name} outlived make run"

    again = MakeRun(tmp_path, web_port, sim_port, "again.log")
    try:
        assert f"API token {token}" in again.output
        assert f"secret={secret}" in again.output
        assert get(f"{web}/api/v1/insurance/claims/?status=deferred", token) == 200
    finally:
        again.stop()
