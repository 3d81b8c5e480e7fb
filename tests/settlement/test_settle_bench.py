"""``settle_bench`` runs end to end on a few small stays and prints each figure with its
target (its figures themselves are read on a quiet machine, not asserted here)."""

import io
import re

import pytest
from django.core.management import call_command


@pytest.mark.django_db(transaction=True)
def test_settle_bench_prints_queries_and_times_against_the_targets():
    out = io.StringIO()
    call_command("settle_bench", runs=2, lines="3,7", stdout=out)
    text = out.getvalue()
    rows = {
        match["label"].strip(): (int(match["queries"]), float(match["p99"]), int(match["target"]))
        for match in re.finditer(
            r"^(?P<label>(settle|bill)[^\d]*\d+ lines)\s+(?P<queries>\d+)\s+[\d.]+\s+"
            r"(?P<p99>[\d.]+)\s+(?P<target>\d+)\s+(yes|NO)$",
            text,
            re.MULTILINE,
        )
    }
    assert set(rows) == {
        "settle, 3 lines",
        "settle, 7 lines",
        "bill, API, 7 lines",
        "bill, page, 7 lines",
    }, text
    assert all(queries > 0 and p99 > 0 for queries, p99, _ in rows.values()), text
    assert [rows[label][2] for label in ("settle, 3 lines", "bill, API, 7 lines")] == [30, 40]
