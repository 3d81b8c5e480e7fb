"""The credit-score adapter against the shipped simulator, started as a real HTTP server."""

import hashlib
from collections import Counter
from datetime import date

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from accounts.credit_score import CreditScoreRejected, CreditScoreUnavailable, Score
from accounts.credit_score.client import CreditScoreClient
from accounts.credit_score.simulator import as_of, derived_score, level_of
from tests.accounts.simulators import HOLD, SimulatorProcess, started
from tests.waiting import wait_until

# The first of the test hashes the simulator knows no score for.
NO_SCORE_HASH = "hash-18"


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory):
    """One simulator for the tests that leave its mode alone; each uses its own hashes."""
    log = tmp_path_factory.mktemp("score") / "score-sim.log"
    simulator = started("run_credit_score_simulator", log)
    yield simulator
    simulator.stop()


@pytest.fixture
def platform(tmp_path):
    simulator = started("run_credit_score_simulator", tmp_path / "score-sim.log")
    yield simulator
    simulator.stop()


def client_for(simulator: SimulatorProcess, timeout: float = 5) -> CreditScoreClient:
    return CreditScoreClient(simulator.url, timeout=timeout)


def ask(client: CreditScoreClient, id_number_hash: str) -> Score | None:
    return client.score(id_number_hash=id_number_hash, name="陈美玲", consent_id="consent-1")


def hash_with(wanted) -> str:
    """The first test hash whose derived score satisfies ``wanted``."""
    return next(h for h in (f"hash-{i}" for i in range(10_000)) if wanted(derived_score(h)))


def test_the_formula_is_the_documented_one():
    # n = the first 8 bytes of SHA-256 of the hash, big-endian: n % 10 == 0 means no score,
    # else 300 + (n // 10) % 551. Fixed here, so that a citizen's score never drifts.
    n = int.from_bytes(hashlib.sha256(b"hash-1").digest()[:8], "big")
    assert (n % 10, 300 + (n // 10) % 551) == (2, 503)
    assert [derived_score(f"hash-{i}") for i in range(6)] == [305, 503, 365, 499, 622, 826]
    assert derived_score(NO_SCORE_HASH) is None
    assert [level_of(s) for s in (300, 399, 400, 499, 500, 599, 600, 699, 700, 850)] == [
        "D", "D", "C", "C", "B", "B", "A", "A", "AA", "AA",
    ]  # fmt: skip
    assert as_of(date(2026, 12, 31)) == date(2026, 12, 1)


def test_scores_spread_across_every_tier_and_some_citizens_have_none():
    scores = [derived_score(f"citizen-{i}") for i in range(2_000)]
    missing = scores.count(None)
    assert 120 <= missing <= 280  # one in ten, give or take
    known = [s for s in scores if s is not None]
    assert min(known) >= 300 and max(known) <= 850
    # Xiamen's tiers (≤500, 501-600, ≥601) each get a fair share, and so do scores under 350.
    bands = Counter(
        "low" if s < 350 else "≤500" if s <= 500 else "≤600" if s <= 600 else "601+" for s in known
    )
    assert all(bands[band] >= 100 for band in ("low", "≤500", "≤600", "601+")), bands


def test_a_score_is_found_and_stays_the_same(shared_platform):
    client = client_for(shared_platform)
    citizen = hash_with(lambda s: s is not None)

    first, again = ask(client, citizen), ask(client, citizen)

    expected = derived_score(citizen)
    assert expected is not None
    assert first == again == Score(expected, level_of(expected), as_of())
    seen = [r for r in shared_platform.state()["requests"] if r["id_number_hash"] == citizen]
    assert len(seen) == 2
    assert {(r["consent_id"], r["purpose"]) for r in seen} == {("consent-1", "credit_medical")}


def test_a_citizen_without_a_score_is_none(shared_platform):
    assert ask(client_for(shared_platform), hash_with(lambda s: s is None)) is None


def test_a_pinned_score_is_given_until_unpinned(shared_platform):
    client = client_for(shared_platform)
    citizen = hash_with(lambda s: s is not None and s >= 600)

    shared_platform.request("POST", "/sim/pin", {"id_number_hash": citizen, "score": 420})
    assert ask(client, citizen) == Score(420, "C", as_of())

    shared_platform.request("POST", "/sim/pin", {"id_number_hash": citizen, "score": None})
    assert ask(client, citizen) is None

    shared_platform.request("POST", "/sim/pin", {"id_number_hash": citizen, "unpin": True})
    found = ask(client, citizen)
    assert found is not None and found.score == derived_score(citizen)


def test_a_pin_that_is_not_a_score_is_refused(shared_platform):
    for bad in (
        {"id_number_hash": "x", "score": "600"},
        {"id_number_hash": "x", "score": -1},
        {"score": 1},
    ):
        status, answer = shared_platform.exchange("POST", "/sim/pin", bad)
        assert status == 400, answer


def test_a_request_the_platform_refuses_is_rejected(shared_platform):
    client = client_for(shared_platform)
    with pytest.raises(CreditScoreRejected) as refused:
        client.score(id_number_hash="h", name="名" * 65, consent_id="consent-1")
    assert refused.value.status == 400 and "name" in refused.value.message


def test_missing_fields_are_refused_before_any_call(platform):
    client = client_for(platform)
    for fields in (
        {"id_number_hash": "", "name": "陈美玲", "consent_id": "c"},
        {"id_number_hash": "h", "name": "陈美玲", "consent_id": ""},
    ):
        with pytest.raises(ValueError, match="required"):
            client.score(**fields)
    assert platform.state()["requests"] == []


def test_settings_give_the_url_and_the_timeout(shared_platform):
    with override_settings(
        CREDIT_SCORE_URL=shared_platform.url + "/", CREDIT_SCORE_TIMEOUT_SECONDS=2
    ):
        client = CreditScoreClient()
    assert (client.base_url, client.timeout) == (shared_platform.url, 2.0)
    assert ask(client, hash_with(lambda s: s is None)) is None
    with (
        override_settings(CREDIT_SCORE_URL="file:///etc/passwd"),
        pytest.raises(ImproperlyConfigured),
    ):
        CreditScoreClient()


def test_a_failing_platform_is_unavailable(platform):
    platform.control(mode="fail")
    with pytest.raises(CreditScoreUnavailable, match="HTTP 503"):
        ask(client_for(platform), "hash-1")
    platform.control(mode="ok")
    assert ask(client_for(platform), "hash-1") == ask(client_for(platform), "hash-1")


def test_a_hanging_platform_times_out_as_unavailable(platform):
    # The client's own timeout is what is tested: the platform holds the request until released.
    platform.control(mode="hang", hang_seconds=HOLD)
    with pytest.raises(CreditScoreUnavailable, match="no answer"):
        ask(client_for(platform, timeout=0.5), "hash-2")
    assert wait_until(lambda: platform.state()["hanging"] == 1)
    platform.control(mode="ok", release=True)
    assert wait_until(lambda: platform.state()["hanging"] == 0)


def test_a_stopped_platform_is_unavailable(platform):
    platform.stop()
    with pytest.raises(CreditScoreUnavailable, match="not reached"):
        ask(client_for(platform), "hash-3")
