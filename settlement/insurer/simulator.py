"""The insurer simulator: a real HTTP server for the protocol of API.md § Insurer protocol.

It applies a :class:`~settlement.insurer.policy.Policy`, keeps its settlements, the message log
that reversals (2601) look up and every person's personal-account balance in a JSON file
written atomically after each change, so a simulator stopped and started again still knows what
it settled. It never settles one ``mdtrt_id`` twice while a settlement stands: it is the
witness that the adapter does not double-settle.

Besides ``POST /fsi/api/{infno}`` it answers:

``POST /sim/control`` ``{"mode": "ok"|"fail"|"hang"|"drop", "hang_seconds": 30, "release": false}``
    ``fail`` answers HTTP 503 to every ``/fsi`` call; ``hang`` holds a call ``hang_seconds``
    before handling it (as a stuck insurer would, so the call takes effect late); ``drop``
    handles settle calls (2207/2304) fully, keeps the settlement and closes the connection
    without an answer, other calls are answered normally. ``release`` lets every call held now
    go on at once (the stuck insurer catching up), whatever the mode; calls that arrive later
    in mode ``hang`` are held again.
``GET /sim/state``
    the mode, the number of calls held now (``hanging``), settlements, balances and message
    log, amounts in fen (a test aid, not the wire).

No Django is needed: ``python -m settlement.insurer.simulator --port 8765`` runs it, and so
does ``manage.py run_insurer_simulator``. One line per call goes to the log (stdout): infno,
msgid and the result; the protocol carries no ID numbers and the log shows no ``psn_no``.
"""

import argparse
import copy
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from core.money import WIRE, fen_to_yuan, yuan_to_fen
from core.simserver import DEFAULT_HANG_SECONDS, HangingServer, Log, serve
from settlement.insurer import (
    CANCEL,
    CHANGES_STATE,
    DAILY_DETAIL,
    DAILY_TOTALS,
    PRE_SETTLE,
    QUERY,
    REVERSE,
    SETTLE,
)
from settlement.insurer.policy import Policy, compute_split

MODES = ("ok", "fail", "hang", "drop")
DEFAULT_STATE = "var/insurer-sim.json"
MAX_BODY = 1 << 20
# The insurer's business day is China Standard Time, which has no daylight saving.
CST = timezone(timedelta(hours=8), "CST")
_KIND = {
    **{infno: kind for kind, infno in PRE_SETTLE.items()},
    **{infno: kind for kind, infno in SETTLE.items()},
    **{infno: kind for kind, infno in CANCEL.items()},
}
_FSI_PATH = re.compile(r"/fsi/api/(\d{4})")

Json = dict[str, Any]


class Refused(Exception):
    """Answered as ``{"infcode": -1, "err_msg": message}``; nothing changes."""


class Insurer:
    """The protocol's behaviour and the state behind it, safe to call from many threads."""

    def __init__(self, state_path: Path | str, policy: Policy | None = None) -> None:
        self.state_path = Path(state_path)
        self.policy = policy or Policy()
        self._lock = threading.Lock()
        self._data = self._load()

    # --- state --------------------------------------------------------------------------------

    def _load(self) -> Json:
        empty: Json = {"version": 1, "next_seq": 1, "settlements": {}, "balances": {}}
        empty["messages"] = {}
        if not self.state_path.exists():
            return empty
        # A state file that cannot be read stops the simulator: starting empty would forget
        # settlements and let the adapter settle them again unnoticed.
        with self.state_path.open(encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError(f"{self.state_path} is not an insurer simulator state file")
        return {**empty, **data}

    def _save(self, data: Json) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".insurer-sim-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def snapshot(self) -> Json:
        with self._lock:
            return copy.deepcopy(self._data)

    # --- the protocol -------------------------------------------------------------------------

    def handle(self, infno: str, body: object) -> Json:
        """Answer one ``/fsi/api/{infno}`` request body with the protocol's response object."""
        try:
            if not isinstance(body, dict):
                raise Refused("the request must be a JSON object")
            msgid = body.get("msgid")
            if not isinstance(msgid, str) or not 0 < len(msgid) <= 64:
                raise Refused("msgid is required (at most 64 characters)")
            if body.get("infno") != infno:
                raise Refused("infno does not match the path")
            data = body.get("input")
            if not isinstance(data, dict):
                raise Refused("input must be a JSON object")
            if infno not in _HANDLERS:
                raise Refused(f"unknown infno {infno}")
        except Refused as e:
            return {"infcode": -1, "err_msg": str(e)}
        with self._lock:
            if infno not in CHANGES_STATE:
                return self._answer(infno, msgid, data, self._data)
            logged = self._data["messages"].get(msgid)
            if logged is not None:
                return self._replay(infno, logged)
            # Work on a copy and keep it only once it is on disk, so memory and file agree.
            data_copy = copy.deepcopy(self._data)
            response = self._answer(infno, msgid, data, data_copy)
            data_copy["messages"][msgid] = {
                "infno": infno,
                "at": _now().isoformat(),
                "response": response,
                "setl_id": _setl_id(response),
                "reversed_by": "",
            }
            self._save(data_copy)
            self._data = data_copy
            return response

    def _answer(self, infno: str, msgid: str, data: Json, state: Json) -> Json:
        try:
            output = _HANDLERS[infno](self, state, infno, msgid, data)
        except Refused as e:
            return {"infcode": -1, "err_msg": str(e)}
        return {"infcode": 0, "output": output}

    @staticmethod
    def _replay(infno: str, logged: Json) -> Json:
        """A msgid seen before gets its first answer again: a resent call acts once."""
        if logged["infno"] != infno:
            return {"infcode": -1, "err_msg": "msgid already used for another call"}
        if logged["response"] is None:
            return {"infcode": -1, "err_msg": "message was reversed before it arrived"}
        response: Json = logged["response"]
        return response

    def _fee_input(self, data: Json) -> tuple[str, str, list[tuple[str, int]]]:
        mdtrt_id = _text(data, "mdtrt_id")
        psn_no = _text(data, "psn_no")
        total = _amount(data.get("medfee_sumamt"), "medfee_sumamt")
        lines = data.get("fee_lines")
        if not isinstance(lines, list):
            raise Refused("fee_lines must be a list")
        parsed = []
        for line in lines:
            if not isinstance(line, dict) or line.get("insurance_class") not in ("A", "B", "C"):
                raise Refused("each fee line needs an insurance_class of A, B or C")
            parsed.append((line["insurance_class"], _amount(line.get("amount"), "amount")))
        if sum(amount for _, amount in parsed) != total:
            raise Refused("medfee_sumamt does not equal the sum of fee_lines")
        return mdtrt_id, psn_no, parsed

    def _settle(self, state: Json, infno: str, msgid: str, data: Json) -> Json:
        mdtrt_id, psn_no, lines = self._fee_input(data)
        if _active(state, mdtrt_id) is not None:
            raise Refused("already settled")
        balance = state["balances"].get(psn_no, self.policy.personal_account)
        try:
            split = compute_split(
                self.policy, kind=_KIND[infno], lines=lines, account_balance=balance
            )
        except ValueError as e:
            raise Refused(str(e)) from e
        setlinfo = {
            "mdtrt_id": mdtrt_id,
            "medfee_sumamt": fen_to_yuan(split.medfee_sumamt),
            "fund_pay_sumamt": fen_to_yuan(split.fund_pay_sumamt),
            "acct_pay": fen_to_yuan(split.acct_pay),
            "psn_cash_pay": fen_to_yuan(split.psn_cash_pay),
        }
        if infno in PRE_SETTLE.values():
            return {"setlinfo": setlinfo}
        now = _now()
        setl_id = f"S{now:%Y%m%d}{state['next_seq']:06d}"
        state["next_seq"] += 1
        state["settlements"][setl_id] = {
            "setl_id": setl_id,
            "mdtrt_id": mdtrt_id,
            "psn_no": psn_no,
            "kind": _KIND[infno],
            "msgid": msgid,
            "fixmedins_code": _institution(data),
            "medfee_sumamt": split.medfee_sumamt,
            "fund_pay_sumamt": split.fund_pay_sumamt,
            "acct_pay": split.acct_pay,
            "psn_cash_pay": split.psn_cash_pay,
            "setl_time": now.isoformat(),
            "setl_date": now.date().isoformat(),
            "cancelled_at": None,
            "cancelled_by": "",
        }
        state["balances"][psn_no] = balance - split.acct_pay
        return {"setlinfo": {"setl_id": setl_id, **setlinfo}}

    def _cancel(self, state: Json, infno: str, msgid: str, data: Json) -> Json:
        setl_id = _text(data, "setl_id")
        settlement = state["settlements"].get(setl_id)
        if settlement is None:
            raise Refused("not found")
        if settlement["mdtrt_id"] != _text(data, "mdtrt_id") or settlement["psn_no"] != _text(
            data, "psn_no"
        ):
            raise Refused("setl_id does not belong to this mdtrt_id and psn_no")
        if settlement["kind"] != _KIND[infno]:
            raise Refused(f"setl_id is an {settlement['kind']} settlement")
        if settlement["cancelled_at"] is not None:
            raise Refused("already cancelled")
        _cancel_settlement(state, settlement, msgid)
        return {"setl_id": setl_id, "mdtrt_id": settlement["mdtrt_id"], "cancelled": True}

    def _reverse(self, state: Json, infno: str, msgid: str, data: Json) -> Json:
        omsgid = _text(data, "omsgid")
        oinfno = _text(data, "oinfno")
        if omsgid == msgid:
            raise Refused("a reversal cannot reverse itself")
        if oinfno not in {*SETTLE.values(), *CANCEL.values()}:
            raise Refused("only a settlement (2207/2304) or a cancel (2208/2305) is reversed")
        answer = {"omsgid": omsgid, "oinfno": oinfno, "reversed": False}
        original = state["messages"].get(omsgid)
        if original is None:
            # Never arrived, or not yet: remember it, so that if it arrives late it is refused.
            state["messages"][omsgid] = {
                "infno": oinfno,
                "at": _now().isoformat(),
                "response": None,
                "setl_id": "",
                "reversed_by": msgid,
            }
            return answer
        if original["infno"] != oinfno:
            raise Refused("oinfno does not match the original call")
        if original["reversed_by"] or not original["setl_id"]:
            return answer  # reversed already, or it was refused and changed nothing
        settlement = state["settlements"][original["setl_id"]]
        if oinfno in SETTLE.values():
            if settlement["cancelled_at"] is not None:
                return answer  # cancelled since by a 2208/2305
            _cancel_settlement(state, settlement, msgid)
        else:
            if settlement["cancelled_at"] is None:
                return answer
            if _active(state, settlement["mdtrt_id"]) is not None:
                raise Refused("already settled")
            balance = state["balances"].get(settlement["psn_no"], self.policy.personal_account)
            if balance < settlement["acct_pay"]:
                raise Refused("personal account balance too low to restore the settlement")
            state["balances"][settlement["psn_no"]] = balance - settlement["acct_pay"]
            settlement["cancelled_at"] = None
            settlement["cancelled_by"] = ""
        original["reversed_by"] = msgid
        return {**answer, "reversed": True}

    def _query(self, state: Json, infno: str, msgid: str, data: Json) -> Json:
        setl_id = data.get("setl_id") or ""
        mdtrt_id = data.get("mdtrt_id") or ""
        if not isinstance(setl_id, str) or not isinstance(mdtrt_id, str):
            raise Refused("setl_id and mdtrt_id must be strings")
        if setl_id:
            settlement = state["settlements"].get(setl_id)
            if settlement is not None and settlement["cancelled_at"] is not None:
                settlement = None
            if settlement is not None and mdtrt_id and settlement["mdtrt_id"] != mdtrt_id:
                settlement = None
        elif mdtrt_id:
            settlement = _active(state, mdtrt_id)
        else:
            raise Refused("setl_id or mdtrt_id is required")
        if settlement is None:
            raise Refused("not found")
        return {"setlinfo": _wire(settlement)}

    def _reconcile(self, state: Json, infno: str, msgid: str, data: Json) -> Json:
        begin, end = _day(data, "begndate"), _day(data, "enddate")
        if begin > end:
            raise Refused("begndate is after enddate")
        institution = _institution(data)  # one institution's day, or (if none) every one's
        rows = sorted(
            (
                s
                for s in state["settlements"].values()
                if s["cancelled_at"] is None
                and begin <= date.fromisoformat(s["setl_date"]) <= end
                and institution in ("", s.get("fixmedins_code", ""))
            ),
            key=lambda s: (s["setl_time"], s["setl_id"]),
        )
        if infno == DAILY_DETAIL:
            fields = ("setl_id", "mdtrt_id", "setl_time", "medfee_sumamt", "fund_pay_sumamt")
            return {
                "begndate": begin.isoformat(),
                "enddate": end.isoformat(),
                "rows": [
                    {**{k: _wire(s)[k] for k in fields}, "acct_pay": fen_to_yuan(s["acct_pay"])}
                    for s in rows
                ],
            }
        sums = {
            key: fen_to_yuan(sum(s[key] for s in rows))
            for key in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
        }
        return {
            "begndate": begin.isoformat(),
            "enddate": end.isoformat(),
            "setl_cnt": len(rows),
            **sums,
        }


_HANDLERS: dict[str, Callable[[Insurer, Json, str, str, Json], Json]] = {
    **dict.fromkeys(PRE_SETTLE.values(), Insurer._settle),
    **dict.fromkeys(SETTLE.values(), Insurer._settle),
    **dict.fromkeys(CANCEL.values(), Insurer._cancel),
    REVERSE: Insurer._reverse,
    QUERY: Insurer._query,
    DAILY_TOTALS: Insurer._reconcile,
    DAILY_DETAIL: Insurer._reconcile,
}


def _now() -> datetime:
    return datetime.now(tz=CST)


def _text(data: Json, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > 64:
        raise Refused(f"{key} is required (a string of at most 64 characters)")
    return value


def _institution(data: Json) -> str:
    """The institution a call is for (``fixmedins_code``), optional: empty when not given."""
    value = data.get("fixmedins_code", "")
    if not isinstance(value, str) or len(value) > 32:
        raise Refused("fixmedins_code must be a string of at most 32 characters")
    return value


def _amount(value: object, key: str) -> int:
    try:
        return yuan_to_fen(value, WIRE)
    except ValueError as e:
        raise Refused(f"{key}: {e}") from e


def _day(data: Json, key: str) -> date:
    value = data.get(key)
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError as e:
        raise Refused(f"{key} must be a date YYYY-MM-DD") from e


def _active(state: Json, mdtrt_id: str) -> Json | None:
    for settlement in state["settlements"].values():
        if settlement["mdtrt_id"] == mdtrt_id and settlement["cancelled_at"] is None:
            found: Json = settlement
            return found
    return None


def _cancel_settlement(state: Json, settlement: Json, msgid: str) -> None:
    settlement["cancelled_at"] = _now().isoformat()
    settlement["cancelled_by"] = msgid
    balances = state["balances"]
    balances[settlement["psn_no"]] = balances.get(settlement["psn_no"], 0) + settlement["acct_pay"]


def _wire(settlement: Json) -> Json:
    """A stored settlement as the protocol shows it: yuan strings, no bookkeeping fields."""
    shown = ("setl_id", "mdtrt_id", "psn_no", "setl_time")
    amounts = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
    return {
        **{k: settlement[k] for k in shown},
        **{k: fen_to_yuan(settlement[k]) for k in amounts},
    }


# --- HTTP ---------------------------------------------------------------------------------------


class SimulatorServer(HangingServer):
    """The shared simulator server (``core.simserver``) around an :class:`Insurer`, with the
    failure mode it plays."""

    def __init__(
        self,
        address: tuple[str, int],
        insurer: Insurer,
        *,
        mode: str = "ok",
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        log: Log = print,
    ) -> None:
        self.insurer = insurer
        self.mode = _mode(mode)
        super().__init__(address, _Handler, hang_seconds=hang_seconds, log=log)


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorServer
    server_version = "InsurerSimulator/1"

    def log_message(self, format: str, *args: Any) -> None:
        """The access log is replaced by one line per protocol call."""

    def do_GET(self) -> None:
        if self.path != "/sim/state":
            self._send(404, {"error": "not found"})
            return
        state = self.server.insurer.snapshot()
        state["settlements"] = sorted(state["settlements"].values(), key=lambda s: s["setl_id"])
        self._send(
            200,
            {
                "mode": self.server.mode,
                "hang_seconds": self.server.hang_seconds,
                "hanging": self.server.hanging,
                **state,
            },
        )

    def do_POST(self) -> None:
        match = _FSI_PATH.fullmatch(self.path)
        if self.path == "/sim/control":
            self._control()
        elif match:
            self._fsi(match.group(1))
        else:
            self._send(404, {"error": "not found"})

    def _body(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise ValueError("a JSON body with Content-Length is required")
        return json.loads(self.rfile.read(length))

    def _control(self) -> None:
        try:
            body = self._body()
            if not isinstance(body, dict):
                raise ValueError("a JSON object is required")
            mode = _mode(body.get("mode"))
            hang = float(body.get("hang_seconds", DEFAULT_HANG_SECONDS))
            if not 0 <= hang <= 3600:
                raise ValueError("hang_seconds must be between 0 and 3600")
            release = body.get("release", False)
            if not isinstance(release, bool):
                raise ValueError("release must be true or false")
        except ValueError as e:
            self._send(400, {"error": str(e)})
            return
        self.server.mode, self.server.hang_seconds = mode, hang
        if release:
            self.server.release()
        self.server.log(f"control mode={mode} hang_seconds={hang:g}{' release' if release else ''}")
        self._send(200, {"mode": mode, "hang_seconds": hang, "release": release})

    def _fsi(self, infno: str) -> None:
        mode, hang = self.server.mode, self.server.hang_seconds
        try:
            body = self._body()
        except ValueError:
            self.server.log(f"{infno} msgid=? HTTP 400 (not JSON)")
            self._send(400, {"infcode": -1, "err_msg": "the body must be JSON"})
            return
        msgid = body.get("msgid") if isinstance(body, dict) else None
        if mode == "fail":
            self.server.log(f"{infno} msgid={msgid} HTTP 503 (mode fail)")
            self._send(503, {"error": "insurer unavailable (simulated)"})
            return
        if mode == "hang":
            self.server.log(f"{infno} msgid={msgid} hanging {hang:g} s (mode hang)")
            self.server.hang(hang)
        try:
            response = self.server.insurer.handle(infno, body)
        except Exception as e:  # a state file that cannot be written, say
            self.server.log(f"{infno} msgid={msgid} HTTP 500 ({type(e).__name__}: {e})")
            self._send(500, {"error": "internal error"})
            return
        result = _result(response)
        if mode == "drop" and infno in SETTLE.values():
            self.server.log(f"{infno} msgid={msgid} {result} (answer dropped)")
            self.close_connection = True
            return
        delivered = self._send(200, response)
        self.server.log(f"{infno} msgid={msgid} {result}{'' if delivered else ' (not delivered)'}")

    def _send(self, status: int, payload: Json) -> bool:
        body = json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the caller gave up waiting (hang mode)
            self.close_connection = True
            return False
        return True


def _setl_id(response: Json) -> str:
    """The settlement a successful settle or cancel acted on, else ``""``."""
    output = response.get("output") or {}
    return str(output.get("setl_id") or (output.get("setlinfo") or {}).get("setl_id") or "")


def _mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    return str(mode)


def _result(response: Json) -> str:
    if response.get("infcode") == 0:
        setl_id = _setl_id(response)
        reversed_ = response["output"].get("reversed")
        return (
            "infcode=0"
            + (f" setl_id={setl_id}" if setl_id else "")
            + ("" if reversed_ is None else f" reversed={str(reversed_).lower()}")
        )
    return f"infcode=-1 err_msg={json.dumps(response.get('err_msg'), ensure_ascii=False)}"


# --- command line -------------------------------------------------------------------------------


def _yuan_arg(value: str) -> int:
    try:
        fen = yuan_to_fen(value, WIRE)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    if fen < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return fen


def _rate_arg(value: str) -> Decimal:
    try:
        rate = Decimal(value)
    except InvalidOperation as e:
        raise argparse.ArgumentTypeError(f"not a decimal fraction: {value!r}") from e
    if not rate.is_finite() or not 0 <= rate <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (0.85 for 85 %)")
    return rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options; ``manage.py run_insurer_simulator`` takes the same."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (8765; 0 picks a free one)")
    parser.add_argument("--state", default=DEFAULT_STATE, help=f"state file ({DEFAULT_STATE})")
    parser.add_argument("--mode", choices=MODES, default="ok", help="failure mode to start in")
    parser.add_argument(
        "--hang-seconds", type=float, default=DEFAULT_HANG_SECONDS, help="wait in mode hang"
    )
    policy = parser.add_argument_group("policy (amounts in yuan, rates as fractions)")
    for name, default in (("deductible-inpatient", "800.00"), ("deductible-outpatient", "200.00")):
        policy.add_argument(f"--{name}", type=_yuan_arg, default=default, metavar="YUAN")
    for name, default in (("fund-rate-inpatient", "0.85"), ("fund-rate-outpatient", "0.60")):
        policy.add_argument(f"--{name}", type=_rate_arg, default=default, metavar="RATE")
    policy.add_argument("--class-b-self-share", type=_rate_arg, default="0.10", metavar="RATE")
    policy.add_argument("--personal-account", type=_yuan_arg, default="500.00", metavar="YUAN")


def policy_from_options(options: dict[str, Any]) -> Policy:
    return Policy(
        deductible_inpatient=options["deductible_inpatient"],
        deductible_outpatient=options["deductible_outpatient"],
        fund_rate_inpatient=options["fund_rate_inpatient"],
        fund_rate_outpatient=options["fund_rate_outpatient"],
        class_b_self_share=options["class_b_self_share"],
        personal_account=options["personal_account"],
    )


def server_from_options(options: dict[str, Any], log: Log = print) -> SimulatorServer:
    insurer = Insurer(options["state"], policy_from_options(options))
    return SimulatorServer(
        (options["host"], options["port"]),
        insurer,
        mode=options["mode"],
        hang_seconds=options["hang_seconds"],
        log=log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m settlement.insurer.simulator")
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    server = server_from_options(options, log=lambda line: print(line, flush=True))
    print(f"insurer simulator at {server.url} (state {options['state']})", flush=True)
    serve(server)


if __name__ == "__main__":
    main()
