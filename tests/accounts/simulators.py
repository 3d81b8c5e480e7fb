"""The shipped simulators (insurer, SMS gateway, credit-score platform) as real child
processes, for the tests."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Mode hang holds a request this long at most: tests release it when they choose, and the bound
# only ends a request nobody released.
HOLD = 120.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimulatorProcess:
    """``manage.py <command> --port N [args]`` in a child process, its output in ``log_path``;
    restartable (on the same port and arguments)."""

    def __init__(self, command: str, log: Path, args: tuple[str, ...] = ()) -> None:
        self.command = command
        self.args = args
        self.port = free_port()
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
        command = [sys.executable, "manage.py", self.command, "--port", str(self.port)]
        command += self.args
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.command} exited:\n{self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"{self.command} did not open its port")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def control(self, **body: Any) -> dict[str, Any]:
        answer = self.request("POST", "/sim/control", body)
        assert answer["mode"] == body["mode"]
        return answer

    def state(self) -> dict[str, Any]:
        return self.request("GET", "/sim/state")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A raw call, bypassing the adapter; an HTTP error's JSON body is returned too."""
        status, answer = self.exchange(method, path, body)
        return answer

    def exchange(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        try:
            with OPENER.open(request, timeout=5) as answer:
                return answer.status, _parse(answer.read(), answer.headers.get_content_type())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, _parse(e.read(), e.headers.get_content_type())


def _parse(raw: bytes, content_type: str) -> Any:
    return json.loads(raw) if content_type == "application/json" else raw.decode()


def started(command: str, log: Path) -> SimulatorProcess:
    simulator = SimulatorProcess(command, log)
    simulator.start()
    return simulator
