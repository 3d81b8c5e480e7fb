"""``core.renderers.FastJSONRenderer`` writes what DRF's ``JSONRenderer`` writes, byte for byte.

The properties: any answer made of text, integers, booleans, None, lists and dicts renders the
same both ways (control characters, quotes, backslashes, U+2028/U+2029, any Unicode); dates,
times, decimals, UUIDs and lazy text go through DRF's encoder as before; an integer past 64
bits and an indented answer fall back to the standard way.
"""

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from core.renderers import FastJSONRenderer

json_keys = st.text(max_size=8)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text()
    | st.sampled_from(["\u2028", "\u2029", "\x00\x1f\x7f", '"\\/', "名\U0001f600"])
)
answers = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_keys, inner, max_size=5),
    max_leaves=30,
)


def both(data: object, accepted: str | None = None, context: dict | None = None) -> bytes:
    standard = JSONRenderer().render(data, accepted, context)
    fast = FastJSONRenderer().render(data, accepted, context)
    assert fast == standard
    return fast


@given(answers)
def test_any_answer_of_plain_values_is_written_the_same(data):
    both(data)


def test_what_drf_encodes_itself_is_written_the_same():
    both(
        {
            "when": datetime(2026, 12, 6, 7, 30, 1, 123456, tzinfo=UTC),
            "day": date(2026, 12, 6),
            "at": time(7, 30, 1, 500),
            "amount": Decimal("12.50"),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "label": gettext_lazy("Reverse"),
            "set": (1, 2),
        }
    )


def test_an_integer_past_64_bits_and_an_indented_answer_fall_back():
    assert both({"big": 2**64 + 1}) == b'{"big":18446744073709551617}'
    indented = both({"a": [1]}, "application/json; indent=2")
    assert indented == b'{\n  "a": [\n    1\n  ]\n}'
    assert both({"a": 1}, None, {"indent": 4}).startswith(b"{\n    ")


def test_nothing_is_written_for_none():
    assert both(None) == b""
