"""``core.money``: yuan text ⇄ integer fen, the one conversion.

The properties: every fen amount a shape can hold comes back from its text unchanged; text
that is not an amount (three places, an exponent, NaN, a float, a plus sign, other digits,
spaces where the shape has none) is refused; and each shape accepts exactly what its caller
accepted before the conversions were brought here, checked against those old conversions
copied below.
"""

import re
import subprocess
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.money import (
    API,
    CAMT053,
    STATEMENT,
    WHOLE,
    WIRE,
    FractionOfFen,
    NotYuan,
    Shape,
    TooLarge,
    TooManyPlaces,
    fen_to_yuan,
    yuan_to_fen,
)

SHAPES = {"api": API, "wire": WIRE, "statement": STATEMENT, "camt053": CAMT053, "whole": WHOLE}
# The largest fen each shape can write: digits before the point, and two places.
LIMIT = {
    "api": 10**15 - 1,
    "wire": 10**15 - 1,
    "statement": 10**17 - 1,
    "camt053": 10**17 - 1,
    "whole": 10**15 - 100,
}

# Text made of what amounts are made of, and of what they must not be.
NEAR_AMOUNTS = st.lists(
    st.sampled_from([*"0123456789" * 3, *".-+eE_ \t\n\u3000\xa0١５", "NaN", "Infinity"]),
    max_size=20,
).map("".join)


# --- the conversions as they were, one per caller -------------------------------------------


def old_api(data: object) -> int | None:
    """``core.api.YuanField``: its syntax and its ceiling (sign rules stay there)."""
    if not isinstance(data, str) or not re.fullmatch(r"-?[0-9]+(\.[0-9]{1,2})?", data.strip()):
        return None
    value = Decimal(data.strip())
    if abs(value) >= Decimal(10) ** 13:
        return None
    return int(value * 100)


def old_statement(text: str) -> int | None:
    """``settlement.reconciliation.statements._yuan_to_fen``: the CSV and daily files."""
    if not re.fullmatch(r"-?[0-9]{1,15}(?:\.[0-9]{1,2})?", text):
        return None
    return int(Decimal(text).scaleb(2))


def old_wire(value: object) -> int | None:
    """``settlement.insurer.yuan_to_fen``, but with ASCII digits: its ``\\d`` took any digit."""
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]{1,13}(\.[0-9]{1,2})?", value):
        return None
    return int(Decimal(value) * 100)


def old_camt053(text: str) -> int | str | None:
    """``settlement.reconciliation.statements._camt053_line``'s Amt: ``None`` not decimal,
    ``"fraction"``."""
    if not re.fullmatch(r"[0-9]{1,15}(?:\.[0-9]{1,5})?", text):
        return None
    exact = Decimal(text).scaleb(2)
    if exact != exact.to_integral_value():
        return "fraction"
    return int(exact)


def old_whole(text: str) -> int | None:
    """``create_partner``'s tiers: ``int(yuan) * 100``, which also took ``+``, ``_`` and any
    digits (here left out) and any size (here up to the API's ceiling)."""
    try:
        fen = int(text) * 100
    except ValueError:
        return None
    return fen if abs(fen) < 10**15 else None


def parsed(text: object, shape: Shape) -> int | str | None:
    try:
        return yuan_to_fen(text, shape)
    except FractionOfFen:
        return "fraction"
    except NotYuan:
        return None


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHAPES)
@given(data=st.data())
def test_every_amount_comes_back_from_its_text(name, data):
    shape = SHAPES[name]
    low = 0 if not shape.signed else -LIMIT[name]
    fen = data.draw(st.integers(min_value=low, max_value=LIMIT[name]))
    if shape.places == 0:
        fen -= fen % 100 if fen >= 0 else -(-fen % 100)
        assert yuan_to_fen(fen_to_yuan(fen)[:-3], shape) == fen
    else:
        assert yuan_to_fen(fen_to_yuan(fen), shape) == fen


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_the_text_is_the_decimal_value_with_two_places(fen):
    text = fen_to_yuan(fen)
    assert re.fullmatch(r"-?(0|[1-9][0-9]*)\.[0-9]{2}", text)
    assert Decimal(text) == Decimal(fen) / 100
    assert fen_to_yuan(fen, symbol="¥") == (text.replace("-", "-¥") if fen < 0 else "¥" + text)


@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1), st.integers(0, 3))
def test_trailing_zeros_and_shorter_places_read_the_same(fen, zeros):
    text = fen_to_yuan(fen)
    assert yuan_to_fen(text.rstrip("0").rstrip(".") if fen else "0") == fen
    if fen >= 0:
        assert yuan_to_fen(text + "0" * zeros, CAMT053) == fen


def test_examples():
    assert yuan_to_fen("1234.50") == 123_450
    assert yuan_to_fen("0.07") == 7
    assert yuan_to_fen("-0.05") == -5
    assert yuan_to_fen("-0.00") == 0
    assert yuan_to_fen("12") == 1200
    assert yuan_to_fen("12.3") == 1230
    assert yuan_to_fen("  12.30\n") == 1230
    assert yuan_to_fen("0000000000000000000001.00") == 100
    assert yuan_to_fen("12.30000", CAMT053) == 1230
    assert fen_to_yuan(123_450) == "1234.50"
    assert fen_to_yuan(-5) == "-0.05"
    assert fen_to_yuan(0) == "0.00"
    assert fen_to_yuan(-1230, symbol="¥") == "-¥12.30"


def test_past_28_digits_nothing_is_rounded():
    """``Decimal`` arithmetic rounds to 28 digits by default; moving the point must not."""
    text = "1234567890123456789012345678901234567890.99"
    assert yuan_to_fen(text, Shape(digits=60)) == int(text.replace(".", ""))


def test_the_api_ceiling_is_refused_before_any_int_is_made():
    """``int`` of a million-digit number takes half a minute; the ceiling is checked first."""
    assert yuan_to_fen("9999999999999.99") == 10**15 - 1
    assert yuan_to_fen("-9999999999999.99") == -(10**15) + 1
    assert yuan_to_fen("000000000000000000009999999999999.99") == 10**15 - 1
    for text, negative in [("10000000000000", False), ("-10000000000000.00", True)]:
        with pytest.raises(TooLarge) as refused:
            yuan_to_fen(text)
        assert refused.value.negative is negative
    started = time.perf_counter()
    with pytest.raises(TooLarge):
        yuan_to_fen("-" + "9" * 2_000_000 + ".99")
    assert time.perf_counter() - started < 1


def test_a_shape_has_a_bound():
    with pytest.raises(ValueError, match="below"):
        Shape()


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api", "wire", "statement"])
@given(whole=st.integers(0, 10**12), fraction=st.integers(0, 999), sign=st.sampled_from(["", "-"]))
def test_three_places_are_refused_where_two_are_the_most(name, whole, fraction, sign):
    """Even ``"1.230"``: a float printed to three places is no amount, whatever its value."""
    with pytest.raises(TooManyPlaces):
        yuan_to_fen(f"{sign}{whole}.{fraction:03d}", SHAPES[name])


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E3",
        "1e-2",
        "1.5e2",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "+1",
        "+1.00",
        "1_000",
        "1,000.00",
        "",
        "-",
        ".5",
        "5.",
        "--1",
        "1.2.3",
        "0x10",
        "１２",
        "١٢",
        "1 000",
        "¥12.30",
        "12.30元",
    ],
)
def test_what_is_no_amount_anywhere(name, text):
    with pytest.raises(NotYuan):
        yuan_to_fen(text, SHAPES[name])


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("value", [12.3, 12, Decimal("12.30"), True, None, b"12.30", ["1"]])
def test_anything_but_text_is_refused(name, value):
    """A JSON number may have been a float on the way; only a string is an amount."""
    with pytest.raises(NotYuan):
        yuan_to_fen(value, SHAPES[name])


@given(
    st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.floats(min_value=1e-9, max_value=1e-3).map(str)
)
def test_what_floats_print_is_no_amount_unless_it_has_at_most_two_places(text):
    try:
        fen = yuan_to_fen(text)
    except TooLarge:
        assert abs(Decimal(text)) >= 10**13
    except NotYuan:
        assert not re.fullmatch(r"-?[0-9]+(\.[0-9]{1,2})?", text)
    else:
        assert Decimal(text) * 100 == fen


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\u3000", "\xa0"])
def test_spaces_around_are_dropped_only_where_people_type(space):
    assert yuan_to_fen(f"{space}12.30{space}", API) == 1230
    for shape in (WIRE, STATEMENT, CAMT053):
        with pytest.raises(NotYuan):
            yuan_to_fen(f"{space}12.30", shape)
        with pytest.raises(NotYuan):
            yuan_to_fen(f"12.30{space}", shape)
    with pytest.raises(NotYuan):
        yuan_to_fen(f"12{space}.30", API)


def test_digit_limits_count_every_digit_before_the_point():
    assert yuan_to_fen("9" * 13 + ".99", WIRE) == 10**15 - 1
    assert yuan_to_fen("0" * 13, WIRE) == 0
    with pytest.raises(NotYuan):
        yuan_to_fen("1" + "0" * 13, WIRE)
    assert yuan_to_fen("9" * 15 + ".99", STATEMENT) == 10**17 - 1
    with pytest.raises(NotYuan):
        yuan_to_fen("1" + "0" * 15, STATEMENT)
    with pytest.raises(NotYuan):
        yuan_to_fen("1" + "0" * 15, CAMT053)


def test_camt053_has_no_sign_five_places_and_whole_fen():
    with pytest.raises(NotYuan):
        yuan_to_fen("-12.30", CAMT053)
    with pytest.raises(FractionOfFen, match="whole number of fen"):
        yuan_to_fen("12.301", CAMT053)
    with pytest.raises(FractionOfFen):
        yuan_to_fen("0.00001", CAMT053)
    with pytest.raises(TooManyPlaces):
        yuan_to_fen("12.300000", CAMT053)


def test_the_refusal_names_the_text():
    with pytest.raises(
        ValueError, match=r"^not an amount in yuan with at most two places: '1\.234'$"
    ):
        yuan_to_fen("1.234", WIRE)
    with pytest.raises(ValueError, match=r"at most two places: 12\.5$"):
        yuan_to_fen(12.5, WIRE)


def test_too_many_places_is_told_apart_from_other_refusals():
    assert isinstance(_refusal("12.345", API), TooManyPlaces)
    assert isinstance(_refusal("-12.345", API), TooManyPlaces)
    assert isinstance(_refusal(" 12.345 ", API), TooManyPlaces)
    assert not isinstance(_refusal("1e-3", API), TooManyPlaces)
    assert not isinstance(_refusal("-12.345", CAMT053), TooManyPlaces)
    assert not isinstance(_refusal("1" * 14 + ".001", WIRE), TooManyPlaces)


def _refusal(text: str, shape: Shape) -> NotYuan:
    with pytest.raises(NotYuan) as refused:
        yuan_to_fen(text, shape)
    return refused.value


# --- the same as before, caller by caller -----------------------------------------------------


@given(NEAR_AMOUNTS)
@example("1.2300")
@example(" -0 ")
def test_api_forms_and_deposit_file_accept_what_the_api_accepted(text):
    assert parsed(text, API) == old_api(text)


@given(NEAR_AMOUNTS)
@example("1" * 16)
def test_statement_files_accept_what_they_accepted(text):
    assert parsed(text, STATEMENT) == old_statement(text)


@given(NEAR_AMOUNTS)
@example("1" * 14)
def test_the_wire_format_accepts_what_it_accepted_in_ascii_digits(text):
    assert parsed(text, WIRE) == old_wire(text)


@given(NEAR_AMOUNTS)
@example("12.301")
@example("12.30000")
def test_camt053_accepts_what_it_accepted(text):
    assert parsed(text, CAMT053) == old_camt053(text)


@given(NEAR_AMOUNTS)
@example("-0")
@example(" 500\u3000")
def test_whole_yuan_are_what_int_took_but_plus_underscores_and_other_digits(text):
    if not any(c in text for c in "+_١５"):
        assert parsed(text, WHOLE) == old_whole(text)
    else:
        assert parsed(text, WHOLE) is None


def test_the_wire_format_no_longer_takes_other_digits():
    """``\\d`` in the old wire pattern let ``"١٢٣"`` (Arabic-Indic) through as 123 yuan."""
    try:
        old = int(Decimal("١٢٣") * 100)
    except InvalidOperation:  # pragma: no cover - Decimal has always read them
        old = None
    assert old == 12_300
    with pytest.raises(NotYuan):
        yuan_to_fen("١٢٣", WIRE)


def test_core_imports_nothing_of_the_apps_nor_django():
    """The apps may import ``core``; ``core`` imports none of them, and the insurer simulator,
    a plain Python program, imports ``core.money``."""
    code = (
        "import sys, core, core.money\n"
        "taken = sorted({m.split('.')[0] for m in sys.modules}"
        " & {'django', 'rest_framework', 'ledger', 'accounts', 'settlement', 'config'})\n"
        "assert not taken, taken\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, env={"PATH": ""})
