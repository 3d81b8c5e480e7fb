"""The credit-score platform simulator: a real HTTP server giving each citizen a stable score.

``POST /score`` (API.md § Credit-score provider) answers ``{"score", "level", "as_of"}`` or
HTTP 404 ``{"error": "no score"}``; a request not in the protocol's shape (``purpose`` other
than ``credit_medical``, a field missing) gets HTTP 400 ``{"error"}``.

The score is derived from ``id_number_hash`` alone (:func:`derived_score`), so a citizen gets
the same one at every ask and every start: ``n`` is the first 8 bytes of
SHA-256(``id_number_hash``) read as a big-endian number; when ``n % 10 == 0`` the citizen has no
score (one in ten), else the score is ``300 + (n // 10) % 551``, spread evenly over 300-850,
across every tier of a bank's table (Xiamen's: ≤500, 501-600, ≥601) and below a lowest tier
that starts above 300. ``level`` names the band: ``D`` under 400, ``C`` 400-499, ``B`` 500-599,
``A`` 600-699, ``AA`` 700 and over. ``as_of`` is the first day of the current month (China
Standard Time): the platform recomputes monthly.

Besides it answers:

``POST /sim/pin`` ``{"id_number_hash", "score": 420}``
    this citizen gets ``score`` from now on (``null``: no score, 404); ``{"id_number_hash",
    "unpin": true}`` returns them to the derived score. Pins live in memory only.
``POST /sim/control`` ``{"mode": "ok"|"fail"|"hang", "hang_seconds": 30, "release": false}``
    ``fail`` answers HTTP 503 to every ``/score``; ``hang`` holds each one ``hang_seconds``
    before answering; ``release`` lets every held request go on now.
``GET /sim/state``
    the mode, ``hanging`` (requests held now), the pins and the latest requests received.

``python -m accounts.credit_score.simulator --port 8767`` runs it, and so does
``manage.py run_credit_score_simulator``. One line per request goes to stdout, without the
name.
"""

import argparse
import hashlib
import threading
from collections import deque
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from accounts.credit_score import MAX_SCORE, PURPOSE
from core.simserver import (
    DEFAULT_HANG_SECONDS,
    HangingServer,
    JsonHandler,
    Log,
    control_hang,
    serve,
)

MODES = ("ok", "fail", "hang")
LOWEST, SPREAD = 300, 551
LEVELS = ((700, "AA"), (600, "A"), (500, "B"), (400, "C"), (0, "D"))
CST = timezone(timedelta(hours=8), "CST")
REQUESTS_KEPT = 1000

Json = dict[str, Any]
NO_SCORE = None


def derived_score(id_number_hash: str) -> int | None:
    """The score the simulator gives ``id_number_hash`` unless pinned; ``None``: no score."""
    n = int.from_bytes(hashlib.sha256(id_number_hash.encode()).digest()[:8], "big")
    if n % 10 == 0:
        return None
    return LOWEST + (n // 10) % SPREAD


def level_of(score: int) -> str:
    return next(name for floor, name in LEVELS if score >= floor)


def as_of(today: date | None = None) -> date:
    return (today or datetime.now(tz=CST).date()).replace(day=1)


class Platform:
    """The scores, the pins and the requests seen; safe to call from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pins: dict[str, int | None] = {}
        self._requests: deque[Json] = deque(maxlen=REQUESTS_KEPT)

    def score(self, body: object) -> tuple[int, Json]:
        """The HTTP status and answer for one ``POST /score`` body."""
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        for field, longest in (("id_number_hash", 128), ("name", 64), ("consent_id", 64)):
            value = body.get(field)
            if not isinstance(value, str) or not 0 < len(value) <= longest:
                return 400, {"error": f"{field} is required (at most {longest} characters)"}
        if body.get("purpose") != PURPOSE:
            return 400, {"error": f"purpose must be {PURPOSE!r}"}
        id_number_hash = body["id_number_hash"]
        with self._lock:
            self._requests.append(
                {
                    "id_number_hash": id_number_hash,
                    "consent_id": body["consent_id"],
                    "purpose": body["purpose"],
                    "at": datetime.now(tz=CST).isoformat(timespec="seconds"),
                }
            )
            pinned = id_number_hash in self._pins
            score = self._pins[id_number_hash] if pinned else derived_score(id_number_hash)
        if score is NO_SCORE:
            return 404, {"error": "no score"}
        return 200, {"score": score, "level": level_of(score), "as_of": as_of().isoformat()}

    def pin(self, body: object) -> Json:
        """Pin (or unpin) one citizen's score; ``ValueError`` when the body is not one."""
        if not isinstance(body, dict):
            raise ValueError("a JSON object is required")
        id_number_hash = body.get("id_number_hash")
        if not isinstance(id_number_hash, str) or not 0 < len(id_number_hash) <= 128:
            raise ValueError("id_number_hash is required")
        with self._lock:
            if body.get("unpin") is True:
                self._pins.pop(id_number_hash, None)
                return {"id_number_hash": id_number_hash, "unpinned": True}
            if "score" not in body:
                raise ValueError("score is required (a number, or null for no score)")
            score = body["score"]
            if score is not None and (
                not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= MAX_SCORE
            ):
                raise ValueError(f"score must be a whole number from 0 to {MAX_SCORE}, or null")
            self._pins[id_number_hash] = score
        return {"id_number_hash": id_number_hash, "score": score}

    def snapshot(self) -> Json:
        with self._lock:
            return {"pins": dict(self._pins), "requests": list(self._requests)}


class CreditScoreSimulatorServer(HangingServer):
    """The HTTP side of a :class:`Platform`, with the failure mode it plays."""

    def __init__(
        self,
        address: tuple[str, int],
        platform: Platform | None = None,
        *,
        mode: str = "ok",
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        log: Log = print,
    ) -> None:
        self.platform = platform or Platform()
        self.mode = _mode(mode)
        super().__init__(address, _Handler, hang_seconds=hang_seconds, log=log)


class _Handler(JsonHandler):
    server: CreditScoreSimulatorServer
    server_version = "CreditScoreSimulator/1"

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/sim/state":
            self.send_json(404, {"error": "not found"})
            return
        state = {
            "mode": self.server.mode,
            "hang_seconds": self.server.hang_seconds,
            "hanging": self.server.hanging,
            **self.server.platform.snapshot(),
        }
        self.send_json(200, state)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        handlers = {"/score": self._score, "/sim/pin": self._pin, "/sim/control": self._control}
        handler = handlers.get(path)
        if handler is None:
            self.send_json(404, {"error": "not found"})
            return
        handler()

    def _score(self) -> None:
        server = self.server
        mode, hang = server.mode, server.hang_seconds
        try:
            body = self.read_json()
        except ValueError:
            server.log("score ? HTTP 400 (not JSON)")
            self.send_json(400, {"error": "the body must be JSON"})
            return
        raw_hash = body.get("id_number_hash") if isinstance(body, dict) else None
        who = f"{raw_hash[:12]}…" if isinstance(raw_hash, str) else "?"
        if mode == "fail":
            server.log(f"score {who} HTTP 503 (mode fail)")
            self.send_json(503, {"error": "credit-score platform unavailable (simulated)"})
            return
        if mode == "hang":
            server.log(f"score {who} hanging {hang:g} s (mode hang)")
            server.hang(hang)
        status, answer = server.platform.score(body)
        delivered = self.send_json(status, answer)
        result = (
            f"score={answer['score']} level={answer['level']}" if status == 200 else answer["error"]
        )
        late = "" if delivered else " (not delivered)"
        server.log(f"score {who} HTTP {status} {result}{late}")

    def _pin(self) -> None:
        try:
            answer = self.server.platform.pin(self.read_json())
        except ValueError as e:
            self.send_json(400, {"error": str(e)})
            return
        self.server.log(f"pin {answer}")
        self.send_json(200, answer)

    def _control(self) -> None:
        try:
            body = self.read_json()
            if not isinstance(body, dict):
                raise ValueError("a JSON object is required")
            mode = _mode(body.get("mode"))
            hang, release = control_hang(body)
        except ValueError as e:
            self.send_json(400, {"error": str(e)})
            return
        self.server.mode, self.server.hang_seconds = mode, hang
        if release:
            self.server.release()
        self.server.log(f"control mode={mode} hang_seconds={hang:g}{' release' * release}")
        self.send_json(200, {"mode": mode, "hang_seconds": hang, "release": release})


def _mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    return str(mode)


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options; ``manage.py run_credit_score_simulator`` takes the same."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8767, help="port (8767; 0 picks a free one)")
    parser.add_argument("--mode", choices=MODES, default="ok", help="failure mode to start in")
    parser.add_argument(
        "--hang-seconds", type=float, default=DEFAULT_HANG_SECONDS, help="wait in mode hang"
    )


def server_from_options(options: dict[str, Any], log: Log = print) -> CreditScoreSimulatorServer:
    return CreditScoreSimulatorServer(
        (options["host"], options["port"]),
        mode=options["mode"],
        hang_seconds=options["hang_seconds"],
        log=log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m accounts.credit_score.simulator")
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    server = server_from_options(options, log=lambda line: print(line, flush=True))
    print(f"credit-score simulator at {server.url}", flush=True)
    serve(server)


if __name__ == "__main__":
    main()
