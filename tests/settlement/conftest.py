"""The insurer simulator as a real child process, for the settlement tests."""

from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from accounts.services.institutions import department_ensure, institution_ensure
from tests.accounts.simulators import HOLD, SimulatorProcess

__all__ = ["HOLD", "Simulator"]


class Simulator(SimulatorProcess):
    """``manage.py run_insurer_simulator`` in a child process, restartable on its state file."""

    def __init__(self, state: Path, log: Path) -> None:
        super().__init__("run_insurer_simulator", log, args=("--state", str(state)))
        self.state_path = state

    def control(  # type: ignore[override]  # the insurer's modes, by name
        self, mode: str, hang_seconds: float | None = None, release: bool = False
    ) -> dict[str, Any]:
        """Switch the failure mode; ``release`` lets the calls held in mode hang go on now."""
        body: dict[str, Any] = {"mode": mode, "release": release}
        if hang_seconds is not None:
            body["hang_seconds"] = hang_seconds
        return super().control(**body)

    def hanging(self) -> int:
        """How many calls the simulator holds now (mode hang, not yet released)."""
        count: int = self.state()["hanging"]
        return count

    def post(self, infno: str, body: dict[str, Any]) -> dict[str, Any]:
        """A raw protocol call, bypassing the adapter."""
        answer: dict[str, Any] = self.request("POST", f"/fsi/api/{infno}", body)
        return answer


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
