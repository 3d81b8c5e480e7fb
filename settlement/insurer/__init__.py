"""The insurer: the wire format, the errors of a call, the policy, the adapter and a simulator.

The protocol is shaped like the national medical-insurance platform (国家医保信息平台):
``POST {INSURER_URL}/fsi/api/{infno}`` with ``{"infno", "msgid", "input"}``, answered
``{"infcode": 0, "output"}`` or ``{"infcode": -1, "err_msg"}``. Amounts travel as decimal yuan
strings with two places and are integer fen everywhere else, converted by ``core.money``
(``fen_to_yuan`` and ``yuan_to_fen`` with its ``WIRE`` shape).

This module and ``policy``/``simulator`` import nothing from Django (nor does ``core.money``),
so the simulator runs as a plain ``python -m settlement.insurer.simulator`` too; ``client`` is
the Django side.
"""

PRE_SETTLE = {"outpatient": "2206", "inpatient": "2303"}
SETTLE = {"outpatient": "2207", "inpatient": "2304"}
CANCEL = {"outpatient": "2208", "inpatient": "2305"}
REVERSE = "2601"
QUERY = "5203"
DAILY_TOTALS = "3201"
DAILY_DETAIL = "3202"
# Calls after which a lost answer leaves the insurer's state unknown.
CHANGES_STATE = frozenset({*SETTLE.values(), *CANCEL.values(), REVERSE})


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
