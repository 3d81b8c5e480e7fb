"""The insurer simulator as a real child process, for the settlement tests."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from accounts.services.institutions import department_ensure, institution_ensure

ROOT = Path(__file__).resolve().parents[2]
# Mode hang holds a call this long at most: tests release it when they choose, and the bound
# only ends a call nobody released.
HOLD = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    """``manage.py run_insurer_simulator`` in a child process, restartable on its state file."""

    def __init__(self, state: Path, log: Path) -> None:
        self.port = free_port()
        self.state_path = state
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
        command = [sys.executable, "manage.py", "run_insurer_simulator"]
        command += ["--port", str(self.port), "--state", str(self.state_path)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the simulator exited:\n{self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("the simulator did not open its port")

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

    def control(self, mode: str, hang_seconds: float | None = None, release: bool = False) -> None:
        """Switch the failure mode; ``release`` lets the calls held in mode hang go on now."""
        body: dict[str, Any] = {"mode": mode, "release": release}
        if hang_seconds is not None:
            body["hang_seconds"] = hang_seconds
        assert self._request("/sim/control", body)["mode"] == mode

    def hanging(self) -> int:
        """How many calls the simulator holds now (mode hang, not yet released)."""
        count: int = self.state()["hanging"]
        return count

    def state(self) -> dict[str, Any]:
        return self._request("/sim/state")

    def post(self, infno: str, body: dict[str, Any]) -> dict[str, Any]:
        """A raw protocol call, bypassing the adapter."""
        return self._request(f"/fsi/api/{infno}", body)

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data)  # noqa: S310 - http only
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as answer:
            return json.loads(answer.read())


@pytest.fixture
def sim(tmp_path):
    simulator = Simulator(tmp_path / "insurer-sim.json", tmp_path / "insurer-sim.log")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory):
    """One simulator for the tests that leave its mode alone; each uses its own encounters."""
    folder = tmp_path_factory.mktemp("shared-insurer")
    simulator = Simulator(folder / "insurer-sim.json", folder / "insurer-sim.log")
    simulator.start()
    yield simulator
    simulator.stop()


# --- a general ward, and the insurer it settles with ------------------------------------------


@pytest.fixture
def department():
    """内科 of 厦门市第一医院, taking a ¥2,000 deposit."""
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    department = department_ensure(
        actor="test", institution=institution, code="GEN", name="内科", default_deposit=200_000
    )
    department.refresh_from_db()
    return department


@pytest.fixture
def hospital():
    """厦门市第二医院: a ward (内科) taking a ¥2,000 deposit and an outpatient clinic (门诊)."""
    institution = institution_ensure(actor="test", code="XMFB", name="厦门市第二医院")
    ward = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=200_000
    )
    ward.refresh_from_db()
    clinic = department_ensure(actor="test", institution=institution, code="OPD", name="门诊")
    return institution, ward, clinic


@pytest.fixture
def insurer(shared_sim):
    with override_settings(INSURER_URL=shared_sim.url, INSURER_TIMEOUT_SECONDS=3):
        yield shared_sim


@pytest.fixture
def cashier(staff_client):
    return staff_client("cashier")
