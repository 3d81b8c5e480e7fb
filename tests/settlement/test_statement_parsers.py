"""The bank statement parsers: exact lines, detection, refusals, and flat memory on big files."""

import io
import re
import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from core.money import STATEMENT, NotYuan, yuan_to_fen
from settlement.reconciliation.statements import (
    PlainCsv,
    StatementFormatError,
    StatementLine,
    count_lines,
    detect_format,
    parse_statement,
    scan_plain_csv,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "statements"
CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
MAX_PEAK = 5 * 1024 * 1024
CJK = re.compile(r"[\u4e00-\u9fff]")


def parse_file(name: str, fmt: str | None = None) -> list[StatementLine]:
    with (DATA / name).open("rb") as handle:
        return list(parse_statement(handle, fmt))


def parse_bytes(data: bytes, fmt: str | None = None) -> list[StatementLine]:
    return list(parse_statement(io.BytesIO(data), fmt))


def refusal(data: bytes, fmt: str | None = None) -> StatementFormatError:
    with pytest.raises(StatementFormatError) as caught:
        parse_bytes(data, fmt)
    return caught.value


def camt(*entries: str, namespace: str = CAMT_NS) -> bytes:
    body = "".join(f"<Ntry>{entry}</Ntry>" for entry in entries)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{namespace}"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>M1</MsgId><CreDtTm>2025-03-04T06:00:00+08:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>S1</Id>{body}</Stmt></BkToCstmrStmt></Document>"
    ).encode()


def camt_entry(
    *,
    amount: str = '<Amt Ccy="CNY">10.00</Amt>',
    indicator: str = "<CdtDbtInd>CRDT</CdtDbtInd>",
    dates: str = "<ValDt><Dt>2025-03-03</Dt></ValDt>",
    ids: str = "<AcctSvcrRef>B1</AcctSvcrRef>",
    details: str = "<NtryDtls><TxDtls><RmtInf><Ustrd>DR1</Ustrd></RmtInf></TxDtls></NtryDtls>",
) -> str:
    return f"{amount}{indicator}<Sts><Cd>BOOK</Cd></Sts>{dates}{ids}{details}"


def daily(*lines: str) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


# The sample files, line by line


def test_csv_sample_parses_to_its_lines() -> None:
    assert parse_file("csv_basic.csv") == [
        StatementLine(1, "ICBC20250303000101", date(2025, 3, 3), 1_258_000, "DR3F2A9C1B7E40"),
        StatementLine(2, "ICBC20250303000102", date(2025, 3, 3), 35_050, "DR0B7C4D2E9F11"),
        StatementLine(3, "ICBC20250303000103", date(2025, 3, 3), -120_000, "DR8C1D2E3F4A5B"),
        StatementLine(4, "ICBC20250304000007", date(2025, 3, 4), 8_643_217, "ST000120250303"),
        StatementLine(5, "ICBC20250304000008", date(2025, 3, 4), 1, "DR5E6F708192A3"),
        StatementLine(
            6, "ICBC20250304000009", date(2025, 3, 4), -7_500, "DR9A8B7C6D5E4F, reversal"
        ),
    ]


def test_camt053_sample_parses_to_its_entries() -> None:
    assert parse_file("camt053_several.xml") == [
        # RmtInf/Ustrd: the first one wins over the second and over EndToEndId.
        StatementLine(1, "ICBC20250303000101", date(2025, 3, 3), 1_258_000, "DR3F2A9C1B7E40"),
        StatementLine(2, "ICBC20250303000104", date(2025, 3, 3), 8_643_217, "ST000120250303"),
        # DBIT with only an EndToEndId.
        StatementLine(3, "ICBC20250303000103", date(2025, 3, 3), -120_000, "DR8C1D2E3F4A5B"),
        # No ValDt: the booking date; no AcctSvcrRef: the NtryRef.
        StatementLine(4, "ICBC-NTRY-0004", date(2025, 3, 2), 35_050, "DR0B7C4D2E9F11"),
        StatementLine(5, "ICBC20250303000117", date(2025, 3, 3), -140_490, "DR9A8B7C6D5E4F"),
    ]


def test_daily_sample_parses_to_its_lines() -> None:
    assert parse_file("daily_ok.txt") == [
        StatementLine(1, "ICBC20250303000101", date(2025, 3, 3), 1_258_000, "DR3F2A9C1B7E40"),
        StatementLine(2, "ICBC20250303000103", date(2025, 3, 3), -120_000, "DR8C1D2E3F4A5B"),
        StatementLine(3, "ICBC20250303000104", date(2025, 3, 3), 8_643_217, "ST000120250303"),
        StatementLine(4, "ICBC20250303000105", date(2025, 3, 2), 50, "DR0B7C4D2E9F11"),
    ]


def test_daily_gb18030_sample_is_decoded_as_gb18030() -> None:
    raw = (DATA / "daily_gb18030.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert parse_file("daily_gb18030.txt") == [
        StatementLine(1, "ICBC20250303000201", date(2025, 3, 3), 428_000, "医疗信用DR3F2A9C1B7E40"),
        StatementLine(2, "ICBC20250303000202", date(2025, 3, 3), -26_040, "冲正DR8C1D2E3F4A5B"),
    ]


def test_daily_in_utf8_with_chinese_reads_the_same() -> None:
    data = daily(
        "\ufeffH|中国工商银行|20250303|1",
        "D|B1|20250303|12.30|住院DR1",
        "T|1|12.30",
    )
    assert parse_bytes(data) == [StatementLine(1, "B1", date(2025, 3, 3), 1230, "住院DR1")]


def test_daily_line_decoding_differently_from_the_first_is_refused() -> None:
    data = (
        "H|工行|20250303|1\nD|B1|20250303|1.00|医疗DR1\n".encode()
        + "D|B2|20250303|1.00|医疗DR2\n".encode("gb18030")
    )
    error = refusal(data)
    assert str(error) == "line 3: not valid UTF-8, the encoding of line 1"
    assert error.line_no == 3


# Detection


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("csv_basic.csv", "csv"),
        ("camt053_several.xml", "camt053"),
        ("camt053_malformed.xml", "camt053"),
        ("daily_ok.txt", "daily"),
        ("daily_bad_trailer.txt", "daily"),
        ("daily_gb18030.txt", "daily"),
    ],
)
def test_detect_format_knows_each_sample(name: str, fmt: str) -> None:
    assert detect_format((DATA / name).read_bytes()[:4096]) == fmt


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ((DATA / "not_a_statement.bin").read_bytes(), "not a bank statement"),
        (b"", "the file is empty"),
        (b"  \n", "the file is empty"),
        (b"<html><body>hello</body></html>", "XML but not an ISO 20022 camt.053"),
        ("bank_txn_id,value_date".encode("utf-16"), "UTF-16"),
        (b"id;date;amount\n", "not a bank statement"),
    ],
)
def test_detect_format_refuses_other_files(head: bytes, message: str) -> None:
    with pytest.raises(StatementFormatError, match=message):
        detect_format(head)


def test_camt054_is_not_taken_for_a_statement() -> None:
    document = camt(namespace="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08").replace(
        b"BkToCstmrStmt", b"BkToCstmrDbtCdtNtfctn"
    )
    with pytest.raises(StatementFormatError, match="not an ISO 20022 camt.053"):
        detect_format(document)


def test_parse_detects_without_losing_the_head_and_leaves_the_stream_open() -> None:
    # More than the detection head, so the rewound bytes and the rest are both read.
    rows = [f"B{n},2025-03-03,{n}.01,DR{n}" for n in range(1, 2001)]
    stream = io.BytesIO(("bank_txn_id,value_date,amount,reference\n" + "\n".join(rows)).encode())
    lines = list(parse_statement(stream))
    assert [line.line_no for line in lines] == list(range(1, 2001))
    assert lines[-1] == StatementLine(2000, "B2000", date(2025, 3, 3), 200_001, "DR2000")
    assert not stream.closed


def test_parse_with_a_format_leaves_the_stream_open() -> None:
    with (DATA / "csv_basic.csv").open("rb") as handle:
        assert len(list(parse_statement(handle, "csv"))) == 6
        assert not handle.closed


def test_detection_errors_are_raised_when_parse_is_called() -> None:
    with pytest.raises(StatementFormatError, match="not a bank statement"):
        parse_statement(io.BytesIO(b"hello"))


def test_unknown_format_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Unknown statement format 'mt940'"):
        parse_statement(io.BytesIO(b""), "mt940")


@pytest.mark.parametrize(
    ("name", "count"),
    [("csv_basic.csv", 6), ("camt053_several.xml", 5), ("daily_ok.txt", 4)],
)
def test_count_lines_counts_the_details(name: str, count: int) -> None:
    with (DATA / name).open("rb") as handle:
        assert count_lines(handle) == count
    with (DATA / name).open("rb") as handle:
        assert count_lines(handle, detect_format((DATA / name).read_bytes())) == count


# CSV refusals


def test_csv_with_another_header_is_refused() -> None:
    error = refusal(b"txn,date,amount,reference\nB1,2025-03-03,1.00,DR1\n", "csv")
    assert str(error) == (
        "line 1: the header must be exactly 'bank_txn_id,value_date,amount,reference', "
        "not 'txn,date,amount,reference'"
    )
    assert error.line_no == 1


def test_csv_header_with_an_extra_column_is_refused() -> None:
    error = refusal(b"bank_txn_id,value_date,amount,reference,memo\n")
    assert str(error).startswith("line 1: the header must be exactly")


@pytest.mark.parametrize(
    ("amount", "shown"),
    [("12.345", "'12.345'"), ("1e3", "'1e3'"), ("", "''"), ("+5", "'+5'"), ("1,000", None)],
)
def test_csv_amount_that_is_not_yuan_with_two_places_is_refused(
    amount: str, shown: str | None
) -> None:
    field = f'"{amount}"' if "," in amount else amount
    data = "bank_txn_id,value_date,amount,reference\nB1,2025-03-03,1.00,DR1\n"
    error = refusal(f"{data}B2,2025-03-03,{field},DR2\n".encode())
    shown = shown or repr(amount)
    assert str(error) == (
        f"line 3: amount {shown} is not an amount in yuan with at most two decimal places"
    )
    assert error.line_no == 3


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("B1,2025-02-30,1.00,DR1", "line 2: value date '2025-02-30' is not a date in the form "),
        ("B1,20250303,1.00,DR1", "line 2: value date '20250303' is not a date"),
        (",2025-03-03,1.00,DR1", "line 2: bank_txn_id is empty"),
        ("B1,2025-03-03,1.00,", "line 2: reference is empty"),
        ("B1,2025-03-03,0.00,DR1", "line 2: amount is zero"),
        ("B1,2025-03-03,1.00", "line 2: expected 4 fields, found 3"),
        ('B1,2025-03-03,1.00,"DR1', "line 2: not valid CSV"),
    ],
)
def test_csv_bad_rows_are_refused_naming_the_line(row: str, message: str) -> None:
    error = refusal(f"bank_txn_id,value_date,amount,reference\n{row}\n".encode())
    assert str(error).startswith(message)


def test_csv_not_in_utf8_is_refused() -> None:
    data = "bank_txn_id,value_date,amount,reference\nB1,2025-03-03,1.00,医疗DR1\n".encode("gb18030")
    error = refusal(data)
    assert str(error).startswith("the CSV file is not valid UTF-8 (at or after line ")
    assert str(error).endswith("); save it as UTF-8")


def test_csv_blank_lines_are_skipped_and_crlf_is_fine() -> None:
    data = b"bank_txn_id,value_date,amount,reference\r\n\r\nB1,2025-03-03,-0.10,DR1\r\n\r\n"
    assert parse_bytes(data) == [StatementLine(1, "B1", date(2025, 3, 3), -10, "DR1")]


def test_empty_csv_after_detection_is_refused() -> None:
    assert refusal(b"", "csv").args[0] == "the CSV file is empty"


def test_csv_header_only_has_no_lines() -> None:
    assert parse_bytes(b"bank_txn_id,value_date,amount,reference\n") == []


# camt.053 refusals


def test_camt053_sample_without_cdtdbtind_is_refused_naming_the_entry() -> None:
    with pytest.raises(StatementFormatError) as caught:
        parse_file("camt053_malformed.xml")
    assert str(caught.value) == "entry 3 (ICBC20250303000103): no CdtDbtInd (CRDT or DBIT)"
    assert caught.value.line_no == 3


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            camt_entry(amount='<Amt Ccy="USD">10.00</Amt>'),
            "entry 2 (B1): Amt is in currency USD; only CNY is accepted",
        ),
        (
            camt_entry(amount="<Amt>10.00</Amt>"),
            "entry 2 (B1): Amt is in no currency; only CNY is accepted",
        ),
        (camt_entry(amount=""), "entry 2 (B1): no Amt"),
        (
            camt_entry(amount='<Amt Ccy="CNY">10.005</Amt>'),
            "entry 2 (B1): Amt '10.005' is not a whole number of fen",
        ),
        (
            camt_entry(amount='<Amt Ccy="CNY">-10.00</Amt>'),
            "entry 2 (B1): Amt '-10.00' is not a decimal amount",
        ),
        (
            camt_entry(indicator="<CdtDbtInd>CRED</CdtDbtInd>"),
            "entry 2 (B1): CdtDbtInd 'CRED' is neither CRDT nor DBIT",
        ),
        (
            camt_entry(dates="<ValDt><Dt>2025-13-01</Dt></ValDt>"),
            "entry 2 (B1): no valid ValDt/Dt or BookgDt/Dt (YYYY-MM-DD)",
        ),
        (camt_entry(dates=""), "entry 2 (B1): no valid ValDt/Dt or BookgDt/Dt (YYYY-MM-DD)"),
        (camt_entry(ids=""), "entry 2: no AcctSvcrRef or NtryRef to identify the transfer"),
        (
            camt_entry(
                details="<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>"
                "</TxDtls></NtryDtls>"
            ),
            "entry 2 (B1): no reference: neither RmtInf/Ustrd nor Refs/EndToEndId",
        ),
    ],
)
def test_camt053_bad_entries_are_refused_naming_the_entry(entry: str, message: str) -> None:
    error = refusal(camt(camt_entry(), entry))
    assert str(error).startswith(message)
    assert error.line_no == 2


def test_camt053_dates_and_ids_fall_back_as_documented() -> None:
    entry = camt_entry(
        dates="<BookgDt><DtTm>2025-03-02T23:10:00+08:00</DtTm></BookgDt>",
        ids="<NtryRef>N7</NtryRef>",
        amount='<Amt Ccy="CNY">10.50000</Amt>',
        indicator="<CdtDbtInd>DBIT</CdtDbtInd>",
    )
    assert parse_bytes(camt(entry)) == [StatementLine(1, "N7", date(2025, 3, 2), -1050, "DR1")]


def test_camt053_without_a_namespace_still_reads() -> None:
    document = camt(camt_entry()).replace(b'xmlns="', b'xmlns:c="')
    assert parse_bytes(document, "camt053") == [
        StatementLine(1, "B1", date(2025, 3, 3), 1000, "DR1")
    ]


def test_camt053_entries_of_several_statements_are_numbered_through() -> None:
    document = camt(camt_entry()).replace(
        b"</Stmt>", b"</Stmt><Stmt><Id>S2</Id><Ntry>" + camt_entry().encode() + b"</Ntry></Stmt>"
    )
    assert [line.line_no for line in parse_bytes(document)] == [1, 2]


def test_camt053_truncated_document_is_refused_naming_the_entry() -> None:
    document = camt(camt_entry(), camt_entry())
    error = refusal(document[: document.rindex(b"<RmtInf>")])
    assert str(error).startswith("not a well-formed XML document (")
    assert str(error).endswith("; in entry 2)")


def test_camt053_that_is_not_xml_is_refused() -> None:
    error = refusal((DATA / "csv_basic.csv").read_bytes(), "camt053")
    assert str(error).startswith("not a well-formed XML document (")
    assert str(error).endswith("before the first entry)")


def test_camt053_of_another_message_is_refused() -> None:
    document = camt(namespace="urn:iso:std:iso:20022:tech:xsd:camt.052.001.08")
    error = refusal(document, "camt053")
    assert "not a camt.053 statement: the root element is" in str(error)


def test_camt053_with_an_entity_bomb_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<Document xmlns="' + CAMT_NS.encode() + b'"><BkToCstmrStmt>&b;</BkToCstmrStmt></Document>'
    )
    assert detect_format(bomb) == "camt053"
    error = refusal(bomb)
    assert str(error).startswith("the XML document is refused:")


def test_camt053_with_no_statement_is_refused() -> None:
    document = f'<Document xmlns="{CAMT_NS}"></Document>'.encode()
    assert str(refusal(document, "camt053")) == "not a camt.053 statement: no BkToCstmrStmt"


# Daily file refusals


def test_daily_sample_with_a_wrong_sum_is_refused_at_the_trailer() -> None:
    with pytest.raises(StatementFormatError) as caught:
        parse_file("daily_bad_trailer.txt")
    assert str(caught.value) == (
        "line 4: trailer says 2 lines / ¥11390.00, the file has 2 / ¥11380.00"
    )
    assert caught.value.line_no == 4


def test_daily_with_a_wrong_count_is_refused_after_yielding_the_lines() -> None:
    data = daily("H|ICBC|20250303|1", "D|B1|20250303|-5.00|DR1", "T|2|-5.00")
    lines = parse_statement(io.BytesIO(data))
    assert next(lines) == StatementLine(1, "B1", date(2025, 3, 3), -500, "DR1")
    with pytest.raises(StatementFormatError) as caught:
        next(lines)
    assert str(caught.value) == "line 3: trailer says 2 lines / -¥5.00, the file has 1 / -¥5.00"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ("H|ICBC|20250303|1", "D|B1|20250303|1.00|DR1"),
            "the daily file ends at line 2 without a trailer 'T|count|sum'; it may be truncated",
        ),
        (
            ("H|ICBC|20250303|1", "D|B1|20250303|1.00|DR1", "T|1|1.00", "D|B2|20250303|1|DR2"),
            "line 4: nothing may follow the trailer (line 3)",
        ),
        (
            ("H|ICBC|20250303|1", "T|0|0.00", "", "T|0|0.00"),
            "line 4: nothing may follow the trailer (line 2)",
        ),
        (
            ("D|B1|20250303|1.00|DR1", "T|1|1.00"),
            "line 1: the file must start with the header 'H|bank code|YYYYMMDD|sequence', "
            "not 'D|B1|20250303|1.00|DR1'",
        ),
        (("H|ICBC|20250303|1", "X|B1", "T|0|0"), "line 2: unknown line type 'X'; expected H, D"),
        (("H|ICBC|20250303|1", "H|ICBC|20250303|2", "T|0|0"), "line 2: a second header line"),
        (("H|ICBC|20250303|1", "", "T|0|0"), "line 2: blank line before the trailer"),
        (("H|ICBC|2025-03-03|1", "T|0|0"), "line 1: the header's statement date '2025-03-03'"),
        (("H||20250303|1", "T|0|0"), "line 1: the header's bank code is empty"),
        (("H|ICBC|20250303", "T|0|0"), "line 1: the header has 4 fields"),
        (("H|ICBC|20250303|A", "T|0|0"), "line 1: the header's file sequence 'A' is not"),
        (
            ("H|ICBC|20250303|1", "D|B1|20250303|1.001|DR1", "T|1|1.00"),
            "line 2: amount '1.001' is not an amount in yuan with at most two decimal places",
        ),
        (
            ("H|ICBC|20250303|1", "D|B1|2025030|1.00|DR1", "T|1|1.00"),
            "line 2: value date '2025030' is not a date in the form YYYYMMDD",
        ),
        (
            ("H|ICBC|20250303|1", "D|B1|20250303|1.00|DR|1", "T|1|1.00"),
            "line 2: a detail line has 5 fields",
        ),
        (("H|ICBC|20250303|1", "T|x|0"), "line 2: the trailer's count 'x' is not a number"),
        (("H|ICBC|20250303|1", "T|0|1e3"), "line 2: the trailer's sum '1e3' is not"),
        (("H|ICBC|20250303|1", "T|0"), "line 2: the trailer has 3 fields"),
    ],
)
def test_daily_bad_files_are_refused_naming_the_line(lines: tuple[str, ...], message: str) -> None:
    assert str(refusal(daily(*lines), "daily")).startswith(message)


def test_daily_empty_file_is_refused() -> None:
    assert str(refusal(b"", "daily")) == "the daily file is empty"


def test_daily_blank_lines_after_the_trailer_and_crlf_are_fine() -> None:
    data = b"H|ICBC|20250303|1\r\nD| B1 |20250303| 7 | DR1 \r\nT|1|7.00\r\n\r\n  \r\n"
    assert parse_bytes(data) == [StatementLine(1, "B1", date(2025, 3, 3), 700, "DR1")]


def test_daily_with_no_details_is_fine() -> None:
    assert parse_bytes(daily("H|ICBC|20250303|1", "T|0|0.00")) == []


# Big files stream in flat memory


def write_lines(path: Path, lines: Iterator[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.writelines(lines)


def peak_while_parsing(path: Path) -> tuple[int, int, int, int]:
    """Return (lines, sum of amounts, last line_no, peak bytes) parsing ``path`` traced."""
    count = total = last = 0
    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            for line in parse_statement(handle):
                count += 1
                total += line.amount
                last = line.line_no
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, total, last, peak


def test_big_csv_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    n = 200_000
    rows = (f"B{i:09d},2025-03-03,{i}.{i % 100:02d},DR{i:012X}\n" for i in range(1, n + 1))
    write_lines(path, iter(["bank_txn_id,value_date,amount,reference\n", *rows]))
    count, total, last, peak = peak_while_parsing(path)
    assert (count, last) == (n, n)
    assert total == sum(i * 100 + i % 100 for i in range(1, n + 1))
    assert peak < MAX_PEAK, f"peak {peak} bytes"
    with path.open("rb") as handle:
        assert count_lines(handle) == n


def test_big_daily_file_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    n = 200_000
    amounts = [(-1 if i % 7 == 0 else 1) * (i * 100 + 37) for i in range(1, n + 1)]
    details = (
        f"D|B{i:09d}|20250303|{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"
        f"|DR{i:012X}\n"
        for i, fen in enumerate(amounts, start=1)
    )
    total = sum(amounts)
    trailer = f"T|{n}|{'-' if total < 0 else ''}{abs(total) // 100}.{abs(total) % 100:02d}\n"
    write_lines(path, iter(["H|ICBC|20250303|1\n", *details, trailer]))
    count, parsed_total, last, peak = peak_while_parsing(path)
    assert (count, last, parsed_total) == (n, n, total)
    assert peak < MAX_PEAK, f"peak {peak} bytes"
    with path.open("rb") as handle:
        assert count_lines(handle, "daily") == n


def test_big_camt053_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    n = 50_000
    head, tail = camt().decode().split("</Stmt>")
    entries = (
        "<Ntry>"
        + camt_entry(
            amount=f'<Amt Ccy="CNY">{i}.{i % 100:02d}</Amt>',
            indicator=f"<CdtDbtInd>{'DBIT' if i % 5 == 0 else 'CRDT'}</CdtDbtInd>",
            ids=f"<AcctSvcrRef>B{i:09d}</AcctSvcrRef>",
            details=(
                "<NtryDtls><TxDtls><Refs><EndToEndId>E2E</EndToEndId></Refs>"
                f"<RmtInf><Ustrd>DR{i:012X}</Ustrd></RmtInf></TxDtls></NtryDtls>"
            ),
        )
        + "</Ntry>\n"
        for i in range(1, n + 1)
    )
    write_lines(path, iter([head, *entries, "</Stmt>", tail]))
    count, total, last, peak = peak_while_parsing(path)
    assert (count, last) == (n, n)
    assert total == sum((-1 if i % 5 == 0 else 1) * (i * 100 + i % 100) for i in range(1, n + 1))
    assert peak < MAX_PEAK, f"peak {peak} bytes"


# The plain CSV shape, checked in blocks, that PostgreSQL may COPY as it is

PLAIN = (
    b"bank_txn_id,value_date,amount,reference\n"
    b"B1,2025-03-03,12580.00,DR3F2A9C1B7E40\n"
    b"B 2,2025-03-05,-0.5,DR 0B7C\n"
    b"B3,2025-03-04,007.10,ST000120250303\n"
)


def scan(data: bytes) -> PlainCsv | None:
    return scan_plain_csv(io.BytesIO(data))


def test_a_plain_csv_is_scanned_to_what_the_parser_reads() -> None:
    lines = parse_bytes(PLAIN)
    assert scan(PLAIN) == PlainCsv(3, date(2025, 3, 3), date(2025, 3, 5))
    assert [(line.amount, line.reference) for line in lines] == [
        (1_258_000, "DR3F2A9C1B7E40"),
        (-50, "DR 0B7C"),
        (710, "ST000120250303"),
    ]
    assert scan(PLAIN.rstrip(b"\n")) == PlainCsv(3, date(2025, 3, 3), date(2025, 3, 5))


def test_a_plain_csv_is_checked_across_block_boundaries(monkeypatch) -> None:
    import settlement.reconciliation.statements as statements

    monkeypatch.setattr(statements, "PLAIN_BLOCK", 7)  # every line split between blocks
    assert scan(PLAIN) == PlainCsv(3, date(2025, 3, 3), date(2025, 3, 5))
    assert scan(PLAIN + b"B4,2025-03-04,1.001,DR1\n") is None


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf" + PLAIN,  # a byte order mark
        PLAIN.replace(b"\n", b"\r\n"),  # CRLF
        PLAIN + b"\n",  # a blank line
        PLAIN + b'"B4",2025-03-04,1.00,DR1\n',  # quoting
        PLAIN + "B4,2025-03-04,1.00,医保\n".encode(),  # beyond ASCII
        PLAIN + b"B4,2025-03-04,-0.00,DR1\n",  # zero
        PLAIN + b"B4,2025-03-04,0,DR1\n",  # zero
        PLAIN + b"B4,2025-02-30,1.00,DR1\n",  # no such day
        PLAIN + b"B4,2025-03-04,1.00, DR1\n",  # a blank the parser would strip
        PLAIN + b"B4,2025-03-04,1.00,DR1 \n",
        PLAIN + b"B4,2025-03-04,1.00,\n",  # empty
        PLAIN + b"B4,2025-03-04,1.00,DR1,extra\n",
        PLAIN + b"B4,2025-03-04,1e3,DR1\n",
        PLAIN + b"B4,2025-03-04,1.00," + b"R" * 65 + b"\n",  # longer than a batch keeps
        PLAIN.replace(b"reference", b"ref"),
        b"bank_txn_id,value_date,amount,reference\n",  # no lines
    ],
)
def test_anything_else_is_left_to_the_parser(data: bytes) -> None:
    assert scan(data) is None


@given(
    st.lists(st.sampled_from([*"0123456789" * 3, *".-+eE_ \t\u3000١５", "NaN"]), max_size=20).map(
        "".join
    )
)
def test_the_plain_scan_takes_the_amounts_core_money_reads(amount: str) -> None:
    """The scan's bytes pattern and ``core.money.STATEMENT`` must agree on what an amount is:
    a plain file goes to PostgreSQL's COPY unread by Python."""
    try:
        readable = yuan_to_fen(amount, STATEMENT) != 0
    except NotYuan:
        readable = False
    line = b"B4,2025-03-04," + amount.encode() + b",DR1\n"
    assert (scan(PLAIN + line) is not None) is readable


def test_the_csv_sample_is_not_plain_but_parses() -> None:
    with (DATA / "csv_basic.csv").open("rb") as handle:
        assert scan_plain_csv(handle) is None  # it starts with a byte order mark
    assert parse_file("csv_basic.csv")


@pytest.mark.parametrize("partner_id", [1, 42, 12345])
def test_a_daily_reference_names_its_bank_and_day(partner_id: int) -> None:
    from settlement.selectors import daily_reference, daily_reference_day

    reference = daily_reference(partner_id, date(2026, 11, 23))
    assert daily_reference_day(reference, partner_id) == date(2026, 11, 23)
    assert daily_reference_day(reference, partner_id + 1) is None  # another bank's
    assert daily_reference_day(reference[:-2] + "31", partner_id) is None  # 2026-11-31
    assert daily_reference_day("DR" + reference[2:], partner_id) is None


# Every refusal said in the page's language: Chinese on the pages, today's English elsewhere

CSV_HEAD = "bank_txn_id,value_date,amount,reference\n"
ENGLISH_WORDS = re.compile(r"[A-Za-z]{2,} [A-Za-z]{2,}")  # a phrase left untranslated


def _csv(*rows: str) -> bytes:
    return (CSV_HEAD + "".join(f"{row}\n" for row in rows)).encode()


REFUSALS = [
    # (id, file, format, today's English (or its pattern, Python's words captured), kept values)
    ("empty", b"", None, "the file is empty", ()),
    (
        "utf16",
        "bank_txn_id,value_date".encode("utf-16"),
        None,
        "the file is UTF-16; statement files must be UTF-8",
        ("UTF-16", "UTF-8"),
    ),
    (
        "xml-not-camt",
        b"<html><body>hello</body></html>",
        None,
        "the file is XML but not an ISO 20022 camt.053 statement (no BkToCstmrStmt)",
        ("XML", "camt.053", "BkToCstmrStmt"),
    ),
    (
        "unknown",
        b"id;date;amount\n",
        None,
        "not a bank statement: expected a CSV file with the header "
        "'bank_txn_id,value_date,amount,reference', a camt.053 XML document or a daily file "
        "starting 'H|'",
        ("bank_txn_id,value_date,amount,reference", "camt.053", "H|"),
    ),
    ("csv-empty", b"", "csv", "the CSV file is empty", ("CSV",)),
    (
        "csv-header",
        b"txn,date,amount,reference\n",
        "csv",
        "line 1: the header must be exactly 'bank_txn_id,value_date,amount,reference', "
        "not 'txn,date,amount,reference'",
        ("1", "bank_txn_id,value_date,amount,reference", "'txn,date,amount,reference'"),
    ),
    (
        "csv-utf8",
        _csv("B1,2025-03-03,1.00,医疗DR1").replace("医疗".encode(), "医疗".encode("gb18030")),
        None,
        re.compile(
            r"the CSV file is not valid UTF-8 \(at or after line ([0-9]+)\); save it as UTF-8"
        ),
        ("CSV", "UTF-8"),
    ),
    (
        "csv-quote",
        _csv('B1,2025-03-03,1.00,"DR1'),
        None,
        re.compile(r"line 2: not valid CSV \((.+)\)"),
        ("2", "CSV"),
    ),
    (
        "csv-fields",
        _csv("B1,2025-03-03,1.00"),
        None,
        "line 2: expected 4 fields, found 3",
        ("2", "4", "3"),
    ),
    (
        "csv-id",
        _csv(",2025-03-03,1.00,DR1"),
        None,
        "line 2: bank_txn_id is empty",
        ("2", "bank_txn_id"),
    ),
    (
        "csv-date",
        _csv("B1,2025-02-30,1.00,DR1"),
        None,
        "line 2: value date '2025-02-30' is not a date in the form YYYY-MM-DD",
        ("2", "'2025-02-30'", "YYYY-MM-DD"),
    ),
    (
        "csv-amount",
        _csv("B1,2025-03-03,1.00,DR1", "B2,2025-03-03,12.345,DR2"),
        None,
        "line 3: amount '12.345' is not an amount in yuan with at most two decimal places",
        ("3", "'12.345'"),
    ),
    ("csv-zero", _csv("B1,2025-03-03,0.00,DR1"), None, "line 2: amount is zero", ("2",)),
    (
        "csv-reference",
        _csv("B1,2025-03-03,1.00,"),
        None,
        "line 2: reference is empty",
        ("2", "reference"),
    ),
    (
        "camt-root",
        camt(namespace="urn:iso:std:iso:20022:tech:xsd:camt.052.001.08"),
        "camt053",
        "not a camt.053 statement: the root element is "
        "'{urn:iso:std:iso:20022:tech:xsd:camt.052.001.08}Document', not a camt.053.001 Document",
        ("camt.053", "'{urn:iso:std:iso:20022:tech:xsd:camt.052.001.08}Document'", "camt.053.001"),
    ),
    (
        "camt-not-statement",
        camt().replace(b"BkToCstmrStmt", b"BkToCstmrNtfctn"),
        "camt053",
        "not a camt.053 statement: "
        "'{urn:iso:std:iso:20022:tech:xsd:camt.053.001.08}BkToCstmrNtfctn' instead of "
        "BkToCstmrStmt",
        ("'{urn:iso:std:iso:20022:tech:xsd:camt.053.001.08}BkToCstmrNtfctn'", "BkToCstmrStmt"),
    ),
    (
        "camt-in-entry",
        camt(camt_entry(), camt_entry())[:-120],
        None,
        re.compile(r"not a well-formed XML document \((.+); in entry 2\)"),
        ("XML", "2"),
    ),
    (
        "camt-after-entry",
        camt(camt_entry())[:-20],
        None,
        re.compile(r"not a well-formed XML document \((.+); after entry 1\)"),
        ("XML", "1"),
    ),
    (
        "camt-before-entry",
        (DATA / "csv_basic.csv").read_bytes(),
        "camt053",
        re.compile(r"not a well-formed XML document \((.+); before the first entry\)"),
        ("XML",),
    ),
    (
        "camt-dtd",
        b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY a "a">]>'
        b'<Document xmlns="'
        + CAMT_NS.encode()
        + b'"><BkToCstmrStmt>&a;</BkToCstmrStmt></Document>',
        None,
        re.compile(r"the XML document is refused: (.+) \(DTDs and entities are not allowed\)"),
        ("XML", "DTD"),
    ),
    (
        "camt-no-statement",
        f'<Document xmlns="{CAMT_NS}"></Document>'.encode(),
        "camt053",
        "not a camt.053 statement: no BkToCstmrStmt",
        ("camt.053", "BkToCstmrStmt"),
    ),
    (
        "camt-no-id",
        camt(camt_entry(), camt_entry(ids="")),
        None,
        "entry 2: no AcctSvcrRef or NtryRef to identify the transfer",
        ("2", "AcctSvcrRef", "NtryRef"),
    ),
    (
        "camt-no-amount",
        camt(camt_entry(amount="")),
        None,
        "entry 1 (B1): no Amt",
        ("1", "B1", "Amt"),
    ),
    (
        "camt-no-currency",
        camt(camt_entry(amount="<Amt>10.00</Amt>")),
        None,
        "entry 1 (B1): Amt is in no currency; only CNY is accepted",
        ("1", "B1", "Amt", "CNY"),
    ),
    (
        "camt-currency",
        camt(camt_entry(amount='<Amt Ccy="USD">10.00</Amt>')),
        None,
        "entry 1 (B1): Amt is in currency USD; only CNY is accepted",
        ("1", "B1", "USD", "CNY"),
    ),
    (
        "camt-fraction",
        camt(camt_entry(amount='<Amt Ccy="CNY">10.005</Amt>')),
        None,
        "entry 1 (B1): Amt '10.005' is not a whole number of fen",
        ("1", "B1", "'10.005'"),
    ),
    (
        "camt-amount",
        camt(camt_entry(amount='<Amt Ccy="CNY">-10.00</Amt>')),
        None,
        "entry 1 (B1): Amt '-10.00' is not a decimal amount",
        ("1", "B1", "'-10.00'"),
    ),
    (
        "camt-zero",
        camt(camt_entry(amount='<Amt Ccy="CNY">0.00</Amt>')),
        None,
        "entry 1 (B1): Amt is zero",
        ("1", "B1", "Amt"),
    ),
    (
        "camt-no-indicator",
        camt(camt_entry(indicator="")),
        None,
        "entry 1 (B1): no CdtDbtInd (CRDT or DBIT)",
        ("1", "B1", "CdtDbtInd", "CRDT", "DBIT"),
    ),
    (
        "camt-indicator",
        camt(camt_entry(indicator="<CdtDbtInd>CRED</CdtDbtInd>")),
        None,
        "entry 1 (B1): CdtDbtInd 'CRED' is neither CRDT nor DBIT",
        ("1", "B1", "'CRED'"),
    ),
    (
        "camt-date",
        camt(camt_entry(dates="")),
        None,
        "entry 1 (B1): no valid ValDt/Dt or BookgDt/Dt (YYYY-MM-DD)",
        ("1", "B1", "ValDt/Dt", "BookgDt/Dt", "YYYY-MM-DD"),
    ),
    (
        "camt-reference",
        camt(camt_entry(details="")),
        None,
        "entry 1 (B1): no reference: neither RmtInf/Ustrd nor Refs/EndToEndId in NtryDtls/TxDtls",
        ("1", "B1", "RmtInf/Ustrd", "Refs/EndToEndId", "NtryDtls/TxDtls"),
    ),
    (
        "daily-long",
        b"H|ICBC|20250303|1\n" + b"D" * 70_000 + b"\n",
        "daily",
        "line 2: longer than 65536 bytes; this is not a daily file",
        ("2", "65536"),
    ),
    (
        "daily-after-trailer",
        daily("H|ICBC|20250303|1", "T|0|0.00", "D|B1|20250303|1|DR1"),
        None,
        "line 3: nothing may follow the trailer (line 2)",
        ("3", "2"),
    ),
    (
        "daily-blank",
        daily("H|ICBC|20250303|1", "", "T|0|0"),
        None,
        "line 2: blank line before the trailer",
        ("2",),
    ),
    (
        "daily-no-header",
        daily("D|B1|20250303|1.00|DR1", "T|1|1.00"),
        "daily",
        "line 1: the file must start with the header 'H|bank code|YYYYMMDD|sequence', "
        "not 'D|B1|20250303|1.00|DR1'",
        ("1", "'D|B1|20250303|1.00|DR1'"),
    ),
    (
        "daily-detail-fields",
        daily("H|ICBC|20250303|1", "D|B1|20250303|1.00|DR|1", "T|1|1.00"),
        None,
        "line 2: a detail line has 5 fields (D|bank_txn_id|YYYYMMDD|amount|reference), found 6",
        ("2", "5", "D|bank_txn_id|YYYYMMDD|amount|reference", "6"),
    ),
    (
        "daily-id",
        daily("H|ICBC|20250303|1", "D||20250303|1.00|DR1", "T|1|1.00"),
        None,
        "line 2: bank_txn_id is empty",
        ("2", "bank_txn_id"),
    ),
    (
        "daily-date",
        daily("H|ICBC|20250303|1", "D|B1|2025030|1.00|DR1", "T|1|1.00"),
        None,
        "line 2: value date '2025030' is not a date in the form YYYYMMDD",
        ("2", "'2025030'", "YYYYMMDD"),
    ),
    (
        "daily-amount",
        daily("H|ICBC|20250303|1", "D|B1|20250303|1.001|DR1", "T|1|1.00"),
        None,
        "line 2: amount '1.001' is not an amount in yuan with at most two decimal places",
        ("2", "'1.001'"),
    ),
    (
        "daily-zero",
        daily("H|ICBC|20250303|1", "D|B1|20250303|0|DR1", "T|1|0"),
        None,
        "line 2: amount is zero",
        ("2",),
    ),
    (
        "daily-reference",
        daily("H|ICBC|20250303|1", "D|B1|20250303|1.00|", "T|1|1.00"),
        None,
        "line 2: reference is empty",
        ("2", "reference"),
    ),
    (
        "daily-second-header",
        daily("H|ICBC|20250303|1", "H|ICBC|20250303|2", "T|0|0"),
        None,
        "line 2: a second header line",
        ("2",),
    ),
    (
        "daily-line-type",
        daily("H|ICBC|20250303|1", "X|B1", "T|0|0"),
        None,
        "line 2: unknown line type 'X'; expected H, D or T",
        ("2", "'X'", "H", "D", "T"),
    ),
    ("daily-empty", b"", "daily", "the daily file is empty", ()),
    (
        "daily-truncated",
        daily("H|ICBC|20250303|1", "D|B1|20250303|1.00|DR1"),
        None,
        "the daily file ends at line 2 without a trailer 'T|count|sum'; it may be truncated",
        ("2", "T|"),
    ),
    (
        "daily-header-fields",
        daily("H|ICBC|20250303", "T|0|0"),
        None,
        "line 1: the header has 4 fields (H|bank code|YYYYMMDD|sequence), found 3",
        ("1", "4", "3"),
    ),
    (
        "daily-bank",
        daily("H||20250303|1", "T|0|0"),
        None,
        "line 1: the header's bank code is empty",
        ("1",),
    ),
    (
        "daily-statement-date",
        daily("H|ICBC|2025-03-03|1", "T|0|0"),
        None,
        "line 1: the header's statement date '2025-03-03' is not YYYYMMDD",
        ("1", "'2025-03-03'", "YYYYMMDD"),
    ),
    (
        "daily-sequence",
        daily("H|ICBC|20250303|A", "T|0|0"),
        None,
        "line 1: the header's file sequence 'A' is not a number",
        ("1", "'A'"),
    ),
    (
        "daily-trailer-fields",
        daily("H|ICBC|20250303|1", "T|0"),
        None,
        "line 2: the trailer has 3 fields (T|count|sum), found 2",
        ("2", "3", "2"),
    ),
    (
        "daily-trailer-count",
        daily("H|ICBC|20250303|1", "T|x|0"),
        None,
        "line 2: the trailer's count 'x' is not a number",
        ("2", "'x'"),
    ),
    (
        "daily-trailer-sum",
        daily("H|ICBC|20250303|1", "T|0|1e3"),
        None,
        "line 2: the trailer's sum '1e3' is not an amount in yuan",
        ("2", "'1e3'"),
    ),
    (
        "daily-trailer-totals",
        (DATA / "daily_bad_trailer.txt").read_bytes(),
        None,
        "line 4: trailer says 2 lines / ¥11390.00, the file has 2 / ¥11380.00",
        ("4", "2", "¥11390.00", "¥11380.00"),
    ),
    (
        "daily-encoding",
        b"H|\xff\xfe|20250303|1\n",
        None,
        "line 1: neither UTF-8 nor GB18030 text",
        ("1", "UTF-8", "GB18030"),
    ),
    (
        "daily-encoding-changes",
        "H|工行|20250303|1\nD|B1|20250303|1.00|医疗DR1\n".encode()
        + "D|B2|20250303|1.00|医疗DR2\n".encode("gb18030"),
        None,
        "line 3: not valid UTF-8, the encoding of line 1",
        ("3", "UTF-8", "1"),
    ),
]


@pytest.mark.parametrize(
    ("data", "fmt", "english", "kept"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
def test_each_refusal_is_said_in_chinese_on_pages_and_in_todays_english_elsewhere(
    data: bytes, fmt: str | None, english: str | re.Pattern[str], kept: tuple[str, ...]
) -> None:
    error = refusal(data, fmt)
    with translation.override("en"):
        said_in_english = str(error.message)
    if isinstance(english, str):
        assert said_in_english == english
    else:
        match = english.fullmatch(said_in_english)
        assert match is not None, said_in_english
        kept = (*kept, *match.groups())
    with translation.override("zh-hans"):
        said_in_chinese = str(error.message)
        assert str(error) == error.args[0] == said_in_english  # the API's and the logs'
    assert CJK.search(said_in_chinese), said_in_chinese
    rest = said_in_chinese
    for value in sorted(kept, key=len, reverse=True):
        assert value in rest, (value, said_in_chinese)
        rest = rest.replace(value, "", 1)
    assert not ENGLISH_WORDS.search(rest), said_in_chinese
    if error.line_no is not None and said_in_english.startswith(("line ", "entry ")):
        number = re.escape(str(error.line_no))
        assert re.match(rf"第 {number} (行|条记录)", said_in_chinese), said_in_chinese


def test_the_line_is_said_before_the_problem_in_chinese() -> None:
    error = refusal(_csv("B1,2025-03-03,0.00,DR1"))
    with translation.override("zh-hans"):
        assert str(error.message) == "第 2 行：金额为零"
    error = refusal(camt(camt_entry(indicator="<CdtDbtInd>CRED</CdtDbtInd>")))
    with translation.override("zh-hans"):
        assert str(error.message) == "第 1 条记录（B1）：CdtDbtInd 'CRED' 既不是 CRDT 也不是 DBIT"
