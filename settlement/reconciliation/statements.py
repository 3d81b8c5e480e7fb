"""Streaming parsers for the bank statement files used in reconciliation (对账).

A statement file is read one line (or one camt.053 entry) at a time, so a file of millions of
lines is checked and matched in flat memory. Nothing here touches the database: the parsers turn
bytes into :class:`StatementLine` values and refuse anything they do not understand with a
:class:`StatementFormatError` that names the line or entry and what is wrong with it.

Money is integer fen. Yuan strings are converted by ``core.money`` (its ``STATEMENT`` and
``CAMT053`` shapes), exactly; an amount that is not a whole number of fen is refused, never
rounded, and so is an amount of zero (a transfer of nothing is neither a payment nor a refund).

Three formats are understood; :func:`detect_format` tells them apart from the first few KB.

``csv``
    UTF-8 (a byte order mark is accepted), header exactly
    ``bank_txn_id,value_date,amount,reference``; ``value_date`` is ``YYYY-MM-DD``; ``amount`` is
    yuan with at most two decimal places and an optional leading ``-`` (``1e3``, ``12.345``,
    ``+5`` and an empty amount are refused). Blank lines are skipped.

``camt053``
    An ISO 20022 ``BkToCstmrStmt`` document of any ``camt.053.001.xx`` version. Each ``Ntry``
    of each ``Stmt`` is one line: the amount is the entry's ``Amt`` (``Ccy="CNY"`` required),
    positive for ``CdtDbtInd`` ``CRDT`` and negative for ``DBIT`` (``Amt`` itself is unsigned
    and may carry up to five decimal places, as the schema allows, if they come to whole fen);
    the value date is ``ValDt/Dt`` (else ``BookgDt/Dt``; a ``DtTm`` counts by its date); the
    bank's id is ``AcctSvcrRef`` (else ``NtryRef``); the reference is the first non-empty
    ``NtryDtls/TxDtls/RmtInf/Ustrd``, else the first ``NtryDtls/TxDtls/Refs/EndToEndId`` other
    than the ``NOTPROVIDED`` placeholder. DTDs and entities are refused (defusedxml), and each
    entry is dropped from the tree once read.

``daily``
    The daily reconciliation file (日终对账文件) of the Chinese partner banks: text lines ended by
    LF or CRLF, fields separated by ``|`` (a field cannot contain ``|``; blanks around a field
    are ignored)::

        H|<bank code>|<statement date YYYYMMDD>|<file sequence, digits>
        D|<bank_txn_id>|<value date YYYYMMDD>|<amount in yuan, optional leading ->|<reference>
        ...
        T|<number of D lines>|<sum of the D amounts in yuan, optional leading ->

    Exactly one header, first; zero or more detail lines; exactly one trailer, last. Only blank
    lines may follow the trailer; a blank line before it is refused. Amounts follow the CSV
    rules, and the trailer's count and sum must equal the details'. The text is UTF-8 (a byte
    order mark is accepted) or GB18030: the encoding is decided once, by the first line that is
    not plain ASCII (normally the header, when the bank code is in Chinese), which is decoded as
    UTF-8 if it can be and as GB18030 otherwise; every later line must decode the same way.

    The trailer comes last, so a count or sum that disagrees, a missing trailer (a truncated
    file) or a line after it is only found once every detail line has been yielded. **Whoever
    consumes** :func:`parse_statement` **must treat the whole file as failed when the iterator
    raises at any point**, and so must not act on any line until the iterator is exhausted (for
    instance: parse the file once to the end to check it, then again to match it).

``StatementLine.line_no`` counts the detail lines (or camt.053 entries) from 1, whatever the
format; it is the line's position in a batch and matches :func:`count_lines`. Error messages for
the text formats name the line of the file as an editor shows it (the header is line 1), and
``StatementFormatError.line_no`` holds that number (the entry number for camt.053).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _

from core.errors import in_english
from core.money import CAMT053, STATEMENT, FractionOfFen, NotYuan, fen_to_yuan, yuan_to_fen

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from _typeshed import WriteableBuffer
    from django_stubs_ext import StrOrPromise

__all__ = [
    "FORMATS",
    "StatementFormatError",
    "PLAIN_CSV_HEADER",
    "PlainCsv",
    "StatementLine",
    "at_line",
    "count_lines",
    "detect_format",
    "parse_statement",
    "scan_plain_csv",
]

Format = Literal["csv", "camt053", "daily"]
FORMATS: tuple[Format, ...] = ("csv", "camt053", "daily")

CSV_HEADER = ["bank_txn_id", "value_date", "amount", "reference"]
HEAD_SIZE = 8192  # bytes read by parse_statement() to detect the format
MAX_DAILY_LINE = 64 * 1024  # a longer "line" means the file is not a daily file

_BOM = b"\xef\xbb\xbf"
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_COMPACT_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_CAMT053_NS = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.[0-9]{2}")


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One transfer the bank reports.

    ``line_no`` is the 1-based position of the detail line (camt.053: entry) among the file's
    detail lines; ``amount`` is in fen, positive when the bank paid the hospital and negative
    when money went back to the bank; ``reference`` is an item's or a daily statement's
    reference.
    """

    line_no: int
    bank_txn_id: str
    value_date: date
    amount: int
    reference: str


def _interpolated(message: StrOrPromise, params: Mapping[str, Any]) -> str:
    text = str(message)
    return text % params if params else text


# Filled in each time it is shown, so in the language active then (a nested message too).
_interpolated_lazy = lazy(_interpolated, str)


class StatementFormatError(ValueError):
    """A statement file that cannot be read; the message names the line or entry at fault.

    Like a domain error's (``core.errors``), the message is a ``gettext_lazy`` msgid in English
    with ``%(name)s`` placeholders filled from ``params``: ``message`` says it in the active
    language (a page's), ``str(error)`` in English (the API's and the logs'). ``line_no`` is
    the line of the file (camt.053: the entry) at fault, when there is one.
    """

    def __init__(
        self,
        message: StrOrPromise,
        *,
        params: Mapping[str, Any] | None = None,
        line_no: int | None = None,
    ) -> None:
        self.msgid = message
        self.params = dict(params or {})
        self.line_no = line_no
        super().__init__(in_english(self.message))

    @property
    def message(self) -> StrOrPromise:
        """The message, in the language active when it is turned into text."""
        return _interpolated_lazy(self.msgid, self.params)

    def __str__(self) -> str:
        return in_english(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def at_line(
    line: int, problem: StrOrPromise, params: Mapping[str, Any] | None = None
) -> StatementFormatError:
    """A refusal of the file's ``line``: ``problem`` (a msgid, filled from ``params``) there."""
    return StatementFormatError(
        _("line %(line)s: %(problem)s"),
        params={"line": line, "problem": _interpolated_lazy(problem, dict(params or {}))},
        line_no=line,
    )


# Detection and dispatch


def detect_format(head: bytes) -> Format:
    """Return the format of a statement file from its first bytes (a few KB are plenty).

    Raise :class:`StatementFormatError` when the bytes are none of the known formats.
    """
    if not head.strip():
        raise StatementFormatError(_("the file is empty"))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise StatementFormatError(_("the file is UTF-16; statement files must be UTF-8"))
    text = head.removeprefix(_BOM)
    if text.lstrip().startswith(b"<"):
        if b"BkToCstmrStmt" in text or b"camt.053" in text:
            return "camt053"
        raise StatementFormatError(
            _("the file is XML but not an ISO 20022 camt.053 statement (no BkToCstmrStmt)")
        )
    first_line = text.split(b"\n", 1)[0].rstrip(b"\r")
    if first_line.lstrip(b'"').startswith(b"bank_txn_id"):
        return "csv"
    if first_line.startswith(b"H|"):
        return "daily"
    raise StatementFormatError(
        _(
            "not a bank statement: expected a CSV file with the header '%(header)s', a "
            "camt.053 XML document or a daily file starting 'H|'"
        ),
        params={"header": ",".join(CSV_HEADER)},
    )


def parse_statement(stream: BinaryIO, fmt: str | None = None) -> Iterator[StatementLine]:
    """Return an iterator over the lines of a statement file, read as it goes.

    ``stream`` is a binary file positioned at the start of the statement; it is not closed.
    Without ``fmt`` the format is detected here, at once, from the first bytes. Errors in the
    body are raised while iterating, some (a daily file's trailer) only at the end: treat the
    file as failed if iterating raises at any point.
    """
    if fmt is None:
        head = _read_head(stream)
        fmt = detect_format(head)
        stream = _rewound(head, stream)
    if fmt == "csv":
        return _parse_csv(stream)
    if fmt == "camt053":
        return _parse_camt053(stream)
    if fmt == "daily":
        return _parse_daily(stream)
    raise ValueError(f"Unknown statement format {fmt!r}; expected one of {', '.join(FORMATS)}.")


def count_lines(stream: BinaryIO, fmt: str | None = None) -> int:
    """Return the number of detail lines (camt.053: entries), reading the stream once.

    Meant for a progress bar: the count is quick and does not check the lines themselves, but a
    file whose structure cannot be followed still raises :class:`StatementFormatError`.
    """
    if fmt is None:
        head = _read_head(stream)
        fmt = detect_format(head)
        stream = _rewound(head, stream)
    if fmt == "csv":
        return sum(1 for _ in _csv_rows(stream))
    if fmt == "camt053":
        return sum(1 for _ in _camt053_entries(stream))
    if fmt == "daily":
        count = 0
        while raw := stream.readline(MAX_DAILY_LINE + 1):
            if raw.startswith(b"D|"):
                count += 1
        return count
    raise ValueError(f"Unknown statement format {fmt!r}; expected one of {', '.join(FORMATS)}.")


def _read_head(stream: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < HEAD_SIZE:
        chunk = stream.read(HEAD_SIZE - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Prefixed(io.RawIOBase):
    """Bytes already read from a stream, followed by the rest of that stream.

    Closing it leaves the underlying stream open: that stream belongs to the caller.
    """

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(target), len(self._head))
            target[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


def _rewound(head: bytes, rest: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_Prefixed(head, rest))


# Dates and messages


def _date(text: str, pattern: re.Pattern[str]) -> date | None:
    match = pattern.fullmatch(text)
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _shown(text: str, limit: int = 40) -> str:
    """Quote a piece of the file for an error message, cut short if long."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _statement_line(
    line_no: int,
    fields: tuple[str, str, str, str],
    *,
    line: int,
    date_pattern: re.Pattern[str],
    date_shape: str,
) -> StatementLine:
    """Check the four fields shared by the CSV and daily formats, found at ``line``."""
    bank_txn_id, value_date, amount, reference = fields
    if not bank_txn_id:
        raise at_line(line, _("bank_txn_id is empty"))
    parsed_date = _date(value_date, date_pattern)
    if parsed_date is None:
        raise at_line(
            line,
            _("value date %(value)s is not a date in the form %(shape)s"),
            {"value": _shown(value_date), "shape": date_shape},
        )
    try:
        fen = yuan_to_fen(amount, STATEMENT)
    except NotYuan:
        raise at_line(
            line,
            _("amount %(value)s is not an amount in yuan with at most two decimal places"),
            {"value": _shown(amount)},
        ) from None
    if fen == 0:
        raise at_line(line, _("amount is zero"))
    if not reference:
        raise at_line(line, _("reference is empty"))
    return StatementLine(line_no, bank_txn_id, parsed_date, fen, reference)


# CSV


def _csv_rows(stream: BinaryIO) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(file line, row)`` for each non-blank row after a correct header."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    read_up_to = 0
    try:
        header = next(reader, None)
        if header is None:
            raise StatementFormatError(_("the CSV file is empty"), line_no=1)
        if header != CSV_HEADER:
            raise at_line(
                1,
                _("the header must be exactly '%(header)s', not %(found)s"),
                {"header": ",".join(CSV_HEADER), "found": _shown(",".join(header), 80)},
            )
        read_up_to = reader.line_num
        for row in reader:
            line = read_up_to + 1  # where the row starts; a quoted field may span lines
            read_up_to = reader.line_num
            if row and (len(row) > 1 or row[0].strip()):
                yield line, row
    except UnicodeDecodeError:
        # The wrapper decodes ahead of the reader, so the line is only a lower bound.
        raise StatementFormatError(
            _("the CSV file is not valid UTF-8 (at or after line %(line)s); save it as UTF-8"),
            params={"line": read_up_to + 1},
            line_no=read_up_to + 1,
        ) from None
    except csv.Error as error:
        raise at_line(
            reader.line_num, _("not valid CSV (%(error)s)"), {"error": str(error)}
        ) from None
    finally:
        # Detached, the wrapper no longer closes the caller's stream when collected.
        with suppress(ValueError):
            text.detach()


def _parse_csv(stream: BinaryIO) -> Iterator[StatementLine]:
    line_no = 0
    for line, row in _csv_rows(stream):
        if len(row) != 4:
            raise at_line(line, _("expected 4 fields, found %(count)s"), {"count": len(row)})
        line_no += 1
        bank_txn_id, value_date, amount, reference = row
        yield _statement_line(
            line_no,
            (bank_txn_id.strip(), value_date.strip(), amount.strip(), reference.strip()),
            line=line,
            date_pattern=_ISO_DATE,
            date_shape="YYYY-MM-DD",
        )


# Plain CSV: the common shape, checked at C speed

# A field of the plain shape: printable ASCII without a comma or a double quote, no blank at
# either end (the parser strips those), 1 to 64 characters (the limit the batches keep).
_PLAIN_FIELD = rb"[!#-+\--~](?:[ !#-+\--~]{0,62}+(?<! ))?"
_PLAIN_LINES = re.compile(
    rb"(?:"
    + _PLAIN_FIELD
    + rb",[0-9]{4}-[0-9]{2}-[0-9]{2},-?[0-9]{1,15}+(?:\.[0-9]{1,2})?+,"
    + _PLAIN_FIELD
    + rb"\n)*+"
)
_PLAIN_DATE = re.compile(rb",([0-9]{4}-[0-9]{2}-[0-9]{2}),")
_PLAIN_ZERO = re.compile(rb",-?0++(?:\.0{1,2})?+,")
PLAIN_CSV_HEADER = b"bank_txn_id,value_date,amount,reference\n"
PLAIN_BLOCK = 1 << 20
MAX_PLAIN_LINE = 200  # bytes: four fields at their longest, three commas and the line end


@dataclass(frozen=True, slots=True)
class PlainCsv:
    """What :func:`scan_plain_csv` found in a plain CSV statement: every detail line is valid."""

    lines: int
    first_date: date
    last_date: date


def scan_plain_csv(stream: BinaryIO) -> PlainCsv | None:
    """Check a CSV statement of the plain shape in whole blocks of lines, or return ``None``.

    The plain shape is what banks almost always send: the exact header, LF line ends, no quoting,
    no blank lines, fields without a comma, a quote, a blank at either end or any character
    outside printable ASCII, and no zero amount. Every such file is a valid statement whose
    lines :func:`parse_statement` reads exactly as PostgreSQL's ``COPY … (FORMAT csv)`` does, so
    it may be loaded either way. ``None`` says nothing about validity: such a file (a byte order
    mark, CRLF, quoting, Chinese text, or an error) must go through :func:`parse_statement`,
    which reads every valid statement and names the line of any fault.
    """
    if stream.read(len(PLAIN_CSV_HEADER)) != PLAIN_CSV_HEADER:
        return None
    lines, rest = 0, b""
    dates: set[bytes] = set()
    while block := stream.read(PLAIN_BLOCK):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        block, rest = block[:cut], block[cut:]
        if _PLAIN_LINES.fullmatch(block) is None or _PLAIN_ZERO.search(block):
            return None
        block_lines = block.count(b"\n")
        lines += block_lines
        _note_dates(block, block_lines, dates)
        if len(rest) > MAX_PLAIN_LINE:  # no line end in sight: not a plain statement
            return None
    if rest:  # a last line without its line end
        rest += b"\n"
        if _PLAIN_LINES.fullmatch(rest) is None or _PLAIN_ZERO.search(rest):
            return None
        lines += 1
        _note_dates(rest, 1, dates)
    try:
        days = sorted(date.fromisoformat(day.decode()) for day in dates)
    except ValueError:  # a day that does not exist, such as 2026-02-30
        return None
    if not lines:
        return None
    return PlainCsv(lines, days[0], days[-1])


def _note_dates(block: bytes, lines: int, dates: set[bytes]) -> None:
    """Add the value dates of a block of plain lines to ``dates``.

    A value date is the only field between two commas that looks like one, so when the days
    already known account for every line, counting them is enough; a block with a new day is
    searched line by line. Counting costs a pass over the block per day, so it is tried only
    while the statement has a few days (a daily statement has one or two); past that,
    searching is the cheaper."""
    if len(dates) <= 4 and sum(block.count(b"," + day + b",") for day in dates) == lines:
        return
    dates.update(_PLAIN_DATE.findall(block))


# ISO 20022 camt.053


class _Names:
    """The qualified tags of one document's namespace, for quick lookups in its entries."""

    def __init__(self, namespace: str) -> None:
        prefix = f"{{{namespace}}}" if namespace else ""
        self.stmt = f"{prefix}Stmt"
        self.ntry = f"{prefix}Ntry"
        self.amt = f"{prefix}Amt"
        self.indicator = f"{prefix}CdtDbtInd"
        self.servicer_ref = f"{prefix}AcctSvcrRef"
        self.entry_ref = f"{prefix}NtryRef"
        self.value_date = (f"{prefix}ValDt/{prefix}Dt", f"{prefix}ValDt/{prefix}DtTm")
        self.booking_date = (f"{prefix}BookgDt/{prefix}Dt", f"{prefix}BookgDt/{prefix}DtTm")
        details = f"{prefix}NtryDtls/{prefix}TxDtls"
        self.unstructured = f"{details}/{prefix}RmtInf/{prefix}Ustrd"
        self.end_to_end = f"{details}/{prefix}Refs/{prefix}EndToEndId"


def _text(element: Element | None) -> str:
    return "" if element is None or element.text is None else element.text.strip()


def _camt053_entries(stream: BinaryIO) -> Iterator[tuple[int, Element, _Names]]:
    """Yield ``(entry number, Ntry element, names)``, dropping each entry once it is read."""
    stack: list[Element] = []
    names = _Names("")
    entries = 0
    in_entry = False
    seen_statement = False
    try:
        for event, element in iterparse(stream, events=("start", "end"), forbid_dtd=True):
            depth = len(stack)
            if event == "start":
                if depth == 0:
                    namespace, name = element.tag.rpartition("}")[::2]
                    namespace = namespace.removeprefix("{")
                    if name != "Document" or (namespace and not _CAMT053_NS.fullmatch(namespace)):
                        raise StatementFormatError(
                            _(
                                "not a camt.053 statement: the root element is %(tag)s, not a "
                                "camt.053.001 Document"
                            ),
                            params={"tag": _shown(element.tag, 80)},
                        )
                    names = _Names(namespace)
                elif depth == 1:
                    if element.tag.rpartition("}")[2] != "BkToCstmrStmt":
                        raise StatementFormatError(
                            _("not a camt.053 statement: %(tag)s instead of BkToCstmrStmt"),
                            params={"tag": _shown(element.tag, 80)},
                        )
                    seen_statement = True
                elif depth == 3 and element.tag == names.ntry and stack[2].tag == names.stmt:
                    entries += 1
                    in_entry = True
                stack.append(element)
                continue
            stack.pop()
            if depth <= 4:
                if depth == 4 and in_entry:
                    in_entry = False
                    yield entries, element, names
                if depth >= 2:
                    # Read: drop it, so the tree never holds more than the current entry.
                    stack[-1].remove(element)
    except ParseError as error:
        if in_entry:
            message = _("not a well-formed XML document (%(error)s; in entry %(entry)s)")
        elif entries:
            message = _("not a well-formed XML document (%(error)s; after entry %(entry)s)")
        else:
            message = _("not a well-formed XML document (%(error)s; before the first entry)")
        raise StatementFormatError(
            message,
            params={"error": str(error), "entry": entries},
            line_no=entries if in_entry else None,
        ) from None
    except DefusedXmlException as error:
        raise StatementFormatError(
            _("the XML document is refused: %(error)s (DTDs and entities are not allowed)"),
            params={"error": str(error)},
        ) from None
    if not seen_statement:
        raise StatementFormatError(_("not a camt.053 statement: no BkToCstmrStmt"))


def _parse_camt053(stream: BinaryIO) -> Iterator[StatementLine]:
    for line_no, entry, names in _camt053_entries(stream):
        yield _camt053_line(line_no, entry, names)


def _camt053_line(line_no: int, entry: Element, names: _Names) -> StatementLine:
    bank_txn_id = _text(entry.find(names.servicer_ref)) or _text(entry.find(names.entry_ref))

    def fail(
        problem: StrOrPromise, params: Mapping[str, Any] | None = None
    ) -> StatementFormatError:
        said = _interpolated_lazy(problem, dict(params or {}))
        if bank_txn_id:
            return StatementFormatError(
                _("entry %(entry)s (%(bank_txn_id)s): %(problem)s"),
                params={"entry": line_no, "bank_txn_id": bank_txn_id, "problem": said},
                line_no=line_no,
            )
        return StatementFormatError(
            _("entry %(entry)s: %(problem)s"),
            params={"entry": line_no, "problem": said},
            line_no=line_no,
        )

    if not bank_txn_id:
        raise fail(_("no AcctSvcrRef or NtryRef to identify the transfer"))

    amount_element = entry.find(names.amt)
    if amount_element is None:
        raise fail(_("no Amt"))
    currency = amount_element.get("Ccy")
    if currency is None:
        raise fail(_("Amt is in no currency; only CNY is accepted"))
    if currency != "CNY":
        raise fail(
            _("Amt is in currency %(currency)s; only CNY is accepted"), {"currency": currency}
        )
    amount_text = _text(amount_element)
    try:
        fen = yuan_to_fen(amount_text, CAMT053)
    except FractionOfFen:
        raise fail(
            _("Amt %(value)s is not a whole number of fen"), {"value": _shown(amount_text)}
        ) from None
    except NotYuan:
        raise fail(
            _("Amt %(value)s is not a decimal amount"), {"value": _shown(amount_text)}
        ) from None
    if fen == 0:
        raise fail(_("Amt is zero"))

    indicator = _text(entry.find(names.indicator))
    if indicator == "DBIT":
        fen = -fen
    elif not indicator:
        raise fail(_("no CdtDbtInd (CRDT or DBIT)"))
    elif indicator != "CRDT":
        raise fail(_("CdtDbtInd %(value)s is neither CRDT nor DBIT"), {"value": _shown(indicator)})

    value_date = _camt053_date(entry, names.value_date) or _camt053_date(entry, names.booking_date)
    if value_date is None:
        raise fail(_("no valid ValDt/Dt or BookgDt/Dt (YYYY-MM-DD)"))

    reference = _first_text(entry.iterfind(names.unstructured)) or _first_text(
        entry.iterfind(names.end_to_end), placeholder="NOTPROVIDED"
    )
    if not reference:
        raise fail(_("no reference: neither RmtInf/Ustrd nor Refs/EndToEndId in NtryDtls/TxDtls"))
    return StatementLine(line_no, bank_txn_id, value_date, fen, reference)


def _first_text(elements: Iterable[Element], placeholder: str = "") -> str:
    """The first non-empty text, skipping the schema's placeholder for "no value"."""
    for element in elements:
        text = _text(element)
        if text and text != placeholder:
            return text
    return ""


def _camt053_date(entry: Element, paths: tuple[str, str]) -> date | None:
    day = _text(entry.find(paths[0]))
    if not day:
        # ISODateTime: the date as the bank wrote it, before any time or offset.
        day = _text(entry.find(paths[1]))[:10]
    return _date(day, _ISO_DATE) if day else None


# The banks' daily file


def _parse_daily(stream: BinaryIO) -> Iterator[StatementLine]:
    decoder = _DailyDecoder()
    line = 0
    header_seen = False
    trailer_line: int | None = None
    details = 0
    total = 0
    while raw := stream.readline(MAX_DAILY_LINE + 1):
        line += 1
        if len(raw) > MAX_DAILY_LINE:
            raise at_line(
                line,
                _("longer than %(limit)s bytes; this is not a daily file"),
                {"limit": MAX_DAILY_LINE},
            )
        if line == 1:
            raw = raw.removeprefix(_BOM)
        text = decoder.decode(raw, line).rstrip("\r\n")
        blank = not text or text.isspace()
        if trailer_line is not None:
            if not blank:
                raise at_line(
                    line,
                    _("nothing may follow the trailer (line %(trailer)s)"),
                    {"trailer": trailer_line},
                )
            continue
        if blank:
            raise at_line(line, _("blank line before the trailer"))
        fields = text.split("|")
        if " " in text or "\t" in text:
            fields = [field.strip() for field in fields]
        kind = fields[0]
        if not header_seen:
            if kind != "H":
                raise at_line(
                    line,
                    _(
                        "the file must start with the header 'H|bank code|YYYYMMDD|sequence', "
                        "not %(found)s"
                    ),
                    {"found": _shown(text)},
                )
            _check_daily_header(fields, line)
            header_seen = True
        elif kind == "D":
            if len(fields) != 5:
                raise at_line(
                    line,
                    _(
                        "a detail line has 5 fields (D|bank_txn_id|YYYYMMDD|amount|reference), "
                        "found %(count)s"
                    ),
                    {"count": len(fields)},
                )
            details += 1
            bank_txn_id, value_date, amount, reference = fields[1:]
            statement_line = _statement_line(
                details,
                (bank_txn_id, value_date, amount, reference),
                line=line,
                date_pattern=_COMPACT_DATE,
                date_shape="YYYYMMDD",
            )
            total += statement_line.amount
            yield statement_line
        elif kind == "T":
            _check_daily_trailer(fields, details, total, line)
            trailer_line = line
        elif kind == "H":
            raise at_line(line, _("a second header line"))
        else:
            raise at_line(
                line, _("unknown line type %(kind)s; expected H, D or T"), {"kind": _shown(kind)}
            )
    if not header_seen:
        raise StatementFormatError(_("the daily file is empty"), line_no=1)
    if trailer_line is None:
        raise StatementFormatError(
            _(
                "the daily file ends at line %(line)s without a trailer 'T|count|sum'; it may "
                "be truncated"
            ),
            params={"line": line},
            line_no=line,
        )


def _check_daily_header(fields: list[str], line: int) -> None:
    if len(fields) != 4:
        raise at_line(
            line,
            _("the header has 4 fields (H|bank code|YYYYMMDD|sequence), found %(count)s"),
            {"count": len(fields)},
        )
    bank_code, statement_date, sequence = fields[1:]
    if not bank_code:
        raise at_line(line, _("the header's bank code is empty"))
    if _date(statement_date, _COMPACT_DATE) is None:
        raise at_line(
            line,
            _("the header's statement date %(value)s is not YYYYMMDD"),
            {"value": _shown(statement_date)},
        )
    if not (sequence.isascii() and sequence.isdigit()):
        raise at_line(
            line,
            _("the header's file sequence %(value)s is not a number"),
            {"value": _shown(sequence)},
        )


def _check_daily_trailer(fields: list[str], details: int, total: int, line: int) -> None:
    if len(fields) != 3:
        raise at_line(
            line,
            _("the trailer has 3 fields (T|count|sum), found %(count)s"),
            {"count": len(fields)},
        )
    count_text, sum_text = fields[1:]
    if not (count_text.isascii() and count_text.isdigit()):
        raise at_line(
            line,
            _("the trailer's count %(value)s is not a number"),
            {"value": _shown(count_text)},
        )
    try:
        expected_total = yuan_to_fen(sum_text, STATEMENT)
    except NotYuan:
        raise at_line(
            line,
            _("the trailer's sum %(value)s is not an amount in yuan"),
            {"value": _shown(sum_text)},
        ) from None
    if int(count_text) != details or expected_total != total:
        raise at_line(
            line,
            _("trailer says %(count)s lines / %(sum)s, the file has %(details)s / %(total)s"),
            {
                "count": int(count_text),
                "sum": fen_to_yuan(expected_total, symbol="¥"),
                "details": details,
                "total": fen_to_yuan(total, symbol="¥"),
            },
        )


class _DailyDecoder:
    """Decode lines as UTF-8 or GB18030, decided by the first line that is not plain ASCII."""

    def __init__(self) -> None:
        self.encoding: str | None = None
        self.decided_at = 0

    def decode(self, raw: bytes, line: int) -> str:
        if self.encoding is None:
            if raw.isascii():
                return raw.decode("ascii")
            for encoding in ("utf-8", "gb18030"):
                with suppress(UnicodeDecodeError):
                    text = raw.decode(encoding)
                    self.encoding, self.decided_at = encoding, line
                    return text
            raise at_line(line, _("neither UTF-8 nor GB18030 text"))
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            raise at_line(
                line,
                _("not valid %(encoding)s, the encoding of line %(first)s"),
                {"encoding": self.encoding.upper(), "first": self.decided_at},
            ) from None
