"""The insurer: the wire format, the errors of a call, the policy, the adapter and a simulator.

The protocol is shaped like the national medical-insurance platform (国家医保信息平台):
``POST {INSURER_URL}/fsi/api/{infno}`` with ``{"infno", "msgid", "input"}``, answered
``{"infcode": 0, "output"}`` or ``{"infcode": -1, "err_msg"}``. Amounts travel as decimal yuan
strings with two places and are integer fen everywhere else; :func:`fen_to_yuan` and
:func:`yuan_to_fen` are the only conversions.

This module and ``policy``/``simulator`` import nothing from Django, so the simulator runs as a
plain ``python -m settlement.insurer.simulator`` too; ``client`` is the Django side.
"""

import re
from decimal import Decimal

PRE_SETTLE = {"outpatient": "2206", "inpatient": "2303"}
SETTLE = {"outpatient": "2207", "inpatient": "2304"}
CANCEL = {"outpatient": "2208", "inpatient": "2305"}
REVERSE = "2601"
QUERY = "5203"
DAILY_TOTALS = "3201"
DAILY_DETAIL = "3202"
# Calls after which a lost answer leaves the insurer's state unknown.
CHANGES_STATE = frozenset({*SETTLE.values(), *CANCEL.values(), REVERSE})

_YUAN = re.compile(r"-?\d{1,13}(\.\d{1,2})?")


class InsurerError(Exception):
    """A call to the insurer that did not succeed; ``msgid`` names the stored ``InsurerCall``."""

    def __init__(self, message: str, *, msgid: str = "", infno: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.msgid = msgid
        self.infno = infno


class InsurerRejected(InsurerError):
    """The insurer answered ``infcode -1``: the call was refused and changed nothing."""


class InsurerUnavailable(InsurerError):
    """The insurer could not be reached, or failed before the call could change anything."""


class InsurerOutcomeUnknown(InsurerError):
    """A settle, cancel or reversal was sent and no answer came back.

    The insurer may or may not have acted on it: query it or reverse ``msgid`` (2601) before
    sending anything else for the same encounter.
    """


def fen_to_yuan(fen: int) -> str:
    """``123450`` → ``"1234.50"``; ``-5`` → ``"-0.05"``."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def yuan_to_fen(value: object) -> int:
    """``"1234.50"`` → ``123450``, exactly; anything but a decimal string with at most two places
    (a float, ``"1.234"``, ``"1e3"``, ``"NaN"``) raises ``ValueError``."""
    if not isinstance(value, str) or not _YUAN.fullmatch(value):
        raise ValueError(f"not an amount in yuan with at most two places: {value!r}")
    return int(Decimal(value) * 100)
