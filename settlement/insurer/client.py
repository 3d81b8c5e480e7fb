"""The adapter to the insurer (API.md § Insurer protocol).

Each call gets a fresh ``msgid`` and is stored as an :class:`~settlement.models.InsurerCall`
with the answer and its outcome. A call that may change the insurer's state (settle, cancel,
reversal) is stored before it is sent and completed after, so a crash mid-call leaves its
msgid to resolve; one that changes nothing is stored once, when it ends. The body is encoded
once, and the text sent is the text stored; a pre-settle is stored without its fee lines
(their count is kept): they are the encounter's standing charge lines, which the settle that
follows sends again and stores. The outcomes:

``ok``
    ``infcode 0``; the typed helpers return what it says, in fen.
``rejected``
    ``infcode -1`` (or an HTTP 4xx): :class:`InsurerRejected`; nothing changed at the insurer.
``unavailable``
    refused connection, DNS failure, HTTP 5xx, a timeout while connecting, or any failure of a
    call that changes nothing (pre-settle, query, reconciliation): :class:`InsurerUnavailable`.
``unknown``
    a settle, cancel or reversal was sent and no usable answer came back (a timeout while
    waiting, a dropped connection, a 502/504 from a gateway, an answer that does not parse):
    :class:`InsurerOutcomeUnknown`. It may have taken effect: query it, or reverse the msgid,
    before sending anything else for that encounter; never settle again blindly.

Bodies are written with orjson: the same JSON as the standard library's, without its spaces,
and ten times faster on a 3,000-line settle. HTTP is the standard library's, and proxies from
the environment are ignored: the insurer is reached over its own network, not the hospital's
way out to the internet.
"""

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import date
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlsplit
from uuid import uuid4

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from core.db import again_if_disconnected
from core.http import NoAnswer, NotSent, opener, post_json
from core.jsontext import EncodedJson
from core.money import WIRE, fen_to_yuan, yuan_to_fen
from settlement.insurer import (
    CANCEL,
    CHANGES_STATE,
    DAILY_DETAIL,
    DAILY_TOTALS,
    PRE_SETTLE,
    QUERY,
    REVERSE,
    SETTLE,
    InsurerError,
    InsurerOutcomeUnknown,
    InsurerRejected,
    InsurerUnavailable,
)
from settlement.models import InsurerCall

__all__ = [
    "DailyTotals",
    "DetailRow",
    "FeeLine",
    "FeeLines",
    "InsurerClient",
    "InsurerError",
    "InsurerOutcomeUnknown",
    "InsurerRejected",
    "InsurerUnavailable",
    "Split",
]

Json = dict[str, Any]
T = TypeVar("T")
NOT_FOUND = "not found"


@dataclass(frozen=True)
class FeeLine:
    """One charge line as the insurer sees it; ``amount`` in fen, negative for a reversal."""

    insurance_class: str
    amount: int
    code: str = ""
    service_date: date | None = None

    def to_wire(self) -> Json:
        return {
            "insurance_class": self.insurance_class,
            "amount": fen_to_yuan(self.amount),
            "code": self.code,
            "service_date": self.service_date.isoformat() if self.service_date else None,
        }


class FeeLines:
    """Fee lines with their total and wire form worked out once, however often they are sent
    (a pre-settle and then a settle send the same lines)."""

    def __init__(self, lines: Iterable[FeeLine]) -> None:
        self.lines = tuple(lines)

    def __iter__(self) -> Iterator[FeeLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    @cached_property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @cached_property
    def wire(self) -> list[Json]:
        """Each line as ``FeeLine.to_wire`` writes it; an amount or a day repeated along a stay
        is written out once."""
        amounts: dict[int, str] = {}
        days: dict[date | None, str | None] = {}
        return [
            {
                "insurance_class": line.insurance_class,
                "amount": amounts.get(line.amount)
                or amounts.setdefault(line.amount, fen_to_yuan(line.amount)),
                "code": line.code,
                "service_date": days[line.service_date]
                if line.service_date in days
                else days.setdefault(
                    line.service_date,
                    line.service_date.isoformat() if line.service_date else None,
                ),
            }
            for line in self.lines
        ]


def _fee_lines(lines: Iterable[FeeLine]) -> FeeLines:
    return lines if isinstance(lines, FeeLines) else FeeLines(lines)


@dataclass(frozen=True)
class Split:
    """The insurer's split of a bill, in fen: ``medfee_sumamt`` is the sum of the other three.

    ``setl_id`` is set once settled; ``msgid`` names the call that produced it.
    """

    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int
    setl_id: str | None = None
    msgid: str = ""


@dataclass(frozen=True)
class DailyTotals:
    """3201: the standing settlements made from ``begin`` to ``end``, counted and summed."""

    begin: date
    end: date
    count: int
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int


@dataclass(frozen=True)
class DetailRow:
    """3202: one standing settlement."""

    setl_id: str
    mdtrt_id: str
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int


class InsurerClient:
    """Calls to the insurer at ``base_url`` (``settings.INSURER_URL``).

    ``timeout`` (``settings.INSURER_TIMEOUT_SECONDS``, 5 s) bounds connecting and each wait
    for data. ``last_msgid`` is the msgid of the latest call, whatever its outcome.
    """

    def __init__(self, base_url: str | None = None, timeout: float | None = None) -> None:
        url = base_url if base_url is not None else settings.INSURER_URL
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ImproperlyConfigured(f"INSURER_URL must be an http(s) URL, not {url!r}")
        self.base_url = url.rstrip("/")
        self.timeout = float(
            timeout if timeout is not None else getattr(settings, "INSURER_TIMEOUT_SECONDS", 5.0)
        )
        self.last_msgid = ""
        self._opener = opener()

    @staticmethod
    def new_msgid(infno: str) -> str:
        """A msgid no other call has: ``"2207-<32 hex digits>"``."""
        return f"{infno}-{uuid4().hex}"

    # --- typed calls --------------------------------------------------------------------------

    def pre_settle(
        self,
        kind: str,
        mdtrt_id: str,
        psn_no: str,
        fee_lines: Iterable[FeeLine],
        *,
        fixmedins_code: str = "",
    ) -> Split:
        """2206/2303: what the insurer would pay; changes nothing. Stored without its fee
        lines, whose count is kept (see the module's docstring)."""
        lines = _fee_lines(fee_lines)
        data = _settle_input(mdtrt_id, psn_no, lines, fixmedins_code)
        split = self._exchange(
            PRE_SETTLE[_kind(kind)],
            data,
            lambda output: _split(output, lines.total, settled=False),
            mdtrt_id=mdtrt_id,
            stored={**data, "fee_lines": {"count": len(lines)}},
        )
        return replace(split, msgid=self.last_msgid)

    def settle(
        self,
        kind: str,
        mdtrt_id: str,
        psn_no: str,
        fee_lines: Iterable[FeeLine],
        *,
        msgid: str | None = None,
        fixmedins_code: str = "",
        sending: Callable[[], None] | None = None,
        settled: Callable[[Split], None] | None = None,
    ) -> Split:
        """2207/2304: settle the encounter at the institution ``fixmedins_code`` (which the
        insurer's daily lists are asked by); ``Split.setl_id`` and ``Split.msgid`` are set.

        ``msgid`` may be chosen beforehand (see :meth:`new_msgid`) so that the caller can
        record it before the call; on :class:`InsurerOutcomeUnknown` it is the one to reverse.
        The caller's own records go in the transactions that store the call: ``sending()`` in
        the one before it is sent, ``settled(split)`` in the one that stores the answer.
        """
        lines = _fee_lines(fee_lines)
        split = self._exchange(
            SETTLE[_kind(kind)],
            _settle_input(mdtrt_id, psn_no, lines, fixmedins_code),
            lambda output: replace(
                _split(output, lines.total, settled=True), msgid=self.last_msgid
            ),
            mdtrt_id=mdtrt_id,
            msgid=msgid,
            sending=sending,
            answered=settled,
        )
        return split

    def cancel(
        self, kind: str, setl_id: str, mdtrt_id: str, psn_no: str, *, msgid: str | None = None
    ) -> None:
        """2208/2305: cancel a settlement known to have succeeded."""
        self._exchange(
            CANCEL[_kind(kind)],
            {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no},
            lambda output: None,
            mdtrt_id=mdtrt_id,
            msgid=msgid,
        )

    def reverse(self, omsgid: str, oinfno: str) -> bool:
        """2601: undo the call ``omsgid`` (a settle or cancel) whose outcome is unknown.

        Returns whether the insurer undid something; ``False`` when the call never took effect,
        which the insurer also remembers, so that the call is refused if it arrives late.
        """
        original = InsurerCall.objects.filter(msgid=omsgid).values_list("mdtrt_id", flat=True)
        return self._exchange(
            REVERSE,
            {"omsgid": omsgid, "oinfno": oinfno},
            lambda output: _flag(output, "reversed"),
            mdtrt_id=original.first() or "",
        )

    def query(self, mdtrt_id: str = "", *, setl_id: str = "") -> Split | None:
        """5203: the standing (not cancelled) settlement of an encounter, or ``None``.

        The insurer's "not found" is stored as a ``rejected`` call, as it answers it.
        """
        if not mdtrt_id and not setl_id:
            raise ValueError("query needs mdtrt_id or setl_id")
        data = {"mdtrt_id": mdtrt_id, "setl_id": setl_id}
        try:
            split = self._exchange(
                QUERY, data, lambda output: _split(output, None, settled=True), mdtrt_id=mdtrt_id
            )
        except InsurerRejected as e:
            if e.message == NOT_FOUND:
                return None
            raise
        return replace(split, msgid=self.last_msgid)

    def daily_totals(
        self, day: date, end: date | None = None, *, fixmedins_code: str = ""
    ) -> DailyTotals:
        """3201: totals of the standing settlements made on ``day`` (through ``end``), at the
        institution ``fixmedins_code`` (at every one if empty)."""
        return self._exchange(DAILY_TOTALS, _range(day, end, fixmedins_code), _totals)

    def daily_detail(
        self, day: date, end: date | None = None, *, fixmedins_code: str = ""
    ) -> list[DetailRow]:
        """3202: the standing settlements made on ``day`` (through ``end``), one row each, at
        the institution ``fixmedins_code`` (at every one if empty)."""
        return self._exchange(DAILY_DETAIL, _range(day, end, fixmedins_code), _rows)

    # --- the exchange -------------------------------------------------------------------------

    def _exchange(
        self,
        infno: str,
        data: Json,
        parse: Callable[[Json], T],
        *,
        mdtrt_id: str = "",
        msgid: str | None = None,
        stored: Json | None = None,
        sending: Callable[[], None] | None = None,
        answered: Callable[[T], None] | None = None,
    ) -> T:
        """Send ``data`` as ``infno`` and parse the output; the call is stored (``stored`` in
        place of ``data`` if given) before it is sent if it may change the insurer's state,
        else once it ends. ``sending()`` runs in the transaction that stores a state-changing
        call before it is sent, ``answered(result)`` in the one that stores a clear answer."""
        msgid = msgid or self.new_msgid(infno)
        self.last_msgid = msgid
        body = {"infno": infno, "msgid": msgid, "input": data}
        sent = orjson.dumps(body).decode()  # UTF-8, as json.dumps(ensure_ascii=False)
        call = InsurerCall(
            msgid=msgid,
            infno=infno,
            mdtrt_id=mdtrt_id,
            request=EncodedJson(sent) if stored is None else {**body, "input": stored},
        )
        if infno in CHANGES_STATE:
            self._store_before_sending(call, sending)
        # Failing before the insurer could act is "unavailable"; after a state-changing call
        # was sent, anything short of a clear answer is "unknown".
        after_send = InsurerOutcomeUnknown if infno in CHANGES_STATE else InsurerUnavailable
        try:
            status, response = self._post(infno, sent.encode())
        except NotSent as e:
            raise self._finish(call, InsurerUnavailable, None, f"not sent: {e}") from e
        except NoAnswer as e:
            raise self._finish(call, after_send, None, f"no answer: {e}") from e
        if status >= 500:
            gateway = status in (502, 504)  # a gateway's: the insurer may have acted
            error = after_send if gateway else InsurerUnavailable
            raise self._finish(call, error, response, f"HTTP {status}")
        if status in (408, 429):
            raise self._finish(call, InsurerUnavailable, response, f"HTTP {status}")
        if 400 <= status < 500:
            err_msg = response.get("err_msg") if isinstance(response, dict) else None
            raise self._finish(call, InsurerRejected, response, str(err_msg or f"HTTP {status}"))
        if not 200 <= status < 300 or not isinstance(response, dict):
            raise self._finish(call, after_send, response, f"HTTP {status}, not a JSON object")
        if response.get("infcode") == -1:
            raise self._finish(call, InsurerRejected, response, str(response.get("err_msg")))
        output = response.get("output")
        if response.get("infcode") != 0 or not isinstance(output, dict):
            raise self._finish(call, after_send, response, "answer not in the protocol's shape")
        try:
            result = parse(output)
        except (ValueError, KeyError, TypeError) as e:
            raise self._finish(call, after_send, response, f"answer not understood: {e}") from e
        then = None if answered is None else lambda: answered(result)
        self._complete(call, InsurerCall.Outcome.OK, response, "", then=then)
        return result

    def _post(self, infno: str, body: bytes) -> tuple[int, Any]:
        # http(s) only: the scheme is checked in __init__.
        status, raw = post_json(
            self._opener, f"{self.base_url}/fsi/api/{infno}", body, timeout=self.timeout
        )
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"http_status": status, "body": raw[:2000].decode(errors="replace")}

    def _finish(
        self,
        call: InsurerCall,
        error: type[InsurerError],
        response: Any,
        message: str,
    ) -> InsurerError:
        outcome = {
            InsurerRejected: InsurerCall.Outcome.REJECTED,
            InsurerUnavailable: InsurerCall.Outcome.UNAVAILABLE,
            InsurerOutcomeUnknown: InsurerCall.Outcome.UNKNOWN,
        }[error]
        self._complete(call, outcome, response, message)
        return error(message, msgid=call.msgid, infno=call.infno)

    @staticmethod
    def _store_before_sending(call: InsurerCall, sending: Callable[[], None] | None) -> None:
        """Store a state-changing call (and ``sending()`` the caller's records, in one
        transaction), on a new connection if the one there died since it was last used."""
        tries = 0

        def store() -> None:
            nonlocal tries
            tries += 1
            with _one_transaction(sending):
                if tries > 1:  # the first try may have committed unseen
                    call.pk = _stored_pk(call)
                call.save(force_insert=call.pk is None)
                if sending is not None:
                    sending()

        again_if_disconnected(store)

    @staticmethod
    def _complete(
        call: InsurerCall,
        outcome: str,
        response: Any,
        error: str,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Store the call's outcome (and ``then`` the caller's records, in one transaction),
        on a new connection if the one there was died while the insurer was asked."""
        call.outcome = outcome
        call.response = response
        call.error = error
        call.finished_at = timezone.now()
        tries = 0

        def store() -> None:
            nonlocal tries
            tries += 1
            with _one_transaction(then):
                if call.pk is None and tries > 1:  # the first try may have committed unseen
                    call.pk = _stored_pk(call)
                if call.pk is None:  # a call that changes nothing: stored now, once
                    call.save(force_insert=True)
                else:
                    call.save(update_fields=["outcome", "response", "error", "finished_at"])
                if then is not None:
                    then()

        again_if_disconnected(store)


def _stored_pk(call: InsurerCall) -> int | None:
    """The id of the row of ``call``'s msgid, if a try whose answer was lost stored it."""
    return InsurerCall.objects.filter(msgid=call.msgid).values_list("pk", flat=True).first()


def _one_transaction(hook: object) -> AbstractContextManager[object]:
    """A transaction for a call's record and the caller's ``hook`` on it, when there is one."""
    return transaction.atomic(savepoint=False) if hook is not None else nullcontext()


def _kind(kind: str) -> str:
    if kind not in SETTLE:
        raise ValueError(f"kind must be one of {sorted(SETTLE)}, not {kind!r}")
    return kind


def _settle_input(mdtrt_id: str, psn_no: str, lines: FeeLines, fixmedins_code: str = "") -> Json:
    data: Json = {
        "mdtrt_id": mdtrt_id,
        "psn_no": psn_no,
        "medfee_sumamt": fen_to_yuan(lines.total),
        "fee_lines": lines.wire,
    }
    if fixmedins_code:  # the institution (定点医药机构编号) the encounter is at
        data["fixmedins_code"] = fixmedins_code
    return data


def _split(output: Json, expected_total: int | None, *, settled: bool) -> Split:
    info = output["setlinfo"]
    amounts = {
        key: yuan_to_fen(info[key], WIRE)
        for key in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
    }
    if any(value < 0 for value in amounts.values()):
        raise ValueError("a negative amount in setlinfo")
    parts = amounts["fund_pay_sumamt"] + amounts["acct_pay"] + amounts["psn_cash_pay"]
    if parts != amounts["medfee_sumamt"]:
        raise ValueError("setlinfo parts do not add up to medfee_sumamt")
    if expected_total is not None and amounts["medfee_sumamt"] != expected_total:
        raise ValueError("medfee_sumamt differs from the sum of the fee lines sent")
    setl_id = info.get("setl_id")
    if settled and (not isinstance(setl_id, str) or not setl_id):
        raise ValueError("setl_id missing")
    return Split(
        medfee_sumamt=amounts["medfee_sumamt"],
        fund_pay_sumamt=amounts["fund_pay_sumamt"],
        acct_pay=amounts["acct_pay"],
        psn_cash_pay=amounts["psn_cash_pay"],
        setl_id=setl_id if settled else None,
    )


def _flag(output: Json, key: str) -> bool:
    value = output[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} is not true or false")
    return value


def _range(day: date, end: date | None, fixmedins_code: str = "") -> Json:
    data: Json = {"begndate": day.isoformat(), "enddate": (end or day).isoformat()}
    if fixmedins_code:
        data["fixmedins_code"] = fixmedins_code
    return data


def _totals(output: Json) -> DailyTotals:
    count = output["setl_cnt"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError("setl_cnt is not a count")
    return DailyTotals(
        begin=date.fromisoformat(output["begndate"]),
        end=date.fromisoformat(output["enddate"]),
        count=count,
        medfee_sumamt=yuan_to_fen(output["medfee_sumamt"], WIRE),
        fund_pay_sumamt=yuan_to_fen(output["fund_pay_sumamt"], WIRE),
        acct_pay=yuan_to_fen(output["acct_pay"], WIRE),
        psn_cash_pay=yuan_to_fen(output["psn_cash_pay"], WIRE),
    )


def _rows(output: Json) -> list[DetailRow]:
    return [
        DetailRow(
            setl_id=str(row["setl_id"]),
            mdtrt_id=str(row["mdtrt_id"]),
            medfee_sumamt=yuan_to_fen(row["medfee_sumamt"], WIRE),
            fund_pay_sumamt=yuan_to_fen(row["fund_pay_sumamt"], WIRE),
            acct_pay=yuan_to_fen(row["acct_pay"], WIRE),
        )
        for row in output["rows"]
    ]
