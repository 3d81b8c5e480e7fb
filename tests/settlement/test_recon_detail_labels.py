"""A reconciliation item's detail is the API's English sentence; the finance pages say each
form of it in Chinese, values kept."""

import re

import pytest
from django.utils import translation

from settlement.reconciliation.labels import detail_label

CJK = re.compile(r"[\u4e00-\u9fff]")

# Each form as matching and the insurer's day write it (settlement/reconciliation/).
DETAILS = [
    ("bank transaction seen before", []),
    ("already paid", []),
    ("drawn on 2026-11-03, not paid by the bank", ["2026-11-03"]),
    ("net of 12 items", ["12"]),
    ("daily net of 7 items", ["7"]),
    ("some of the day's items are paid on their own", []),
    (
        f"insurer {(185000, 123100, 0)} != ledger {(185000, 120000, 3100)} (total, fund, account)",
        ["185000, 123100, 0", "185000, 120000, 3100"],
    ),
    ("settled at the insurer, no claim here", []),
    ("settled here, not in the insurer's list", []),
    ("totals say 40 settlements, the detail has 39", ["40", "39"]),
]


@pytest.mark.parametrize("detail, values", DETAILS)
def test_each_detail_is_said_in_chinese_with_its_values(detail, values):
    with translation.override("zh-hans"):
        said = detail_label(detail)
    assert CJK.search(said), said
    assert said != detail
    for value in values:
        assert value in said


def test_a_ledger_checks_problem_is_shown_as_it_is():
    problem = "account money:inst:1:refunds: no stored balance"
    with translation.override("zh-hans"):
        assert detail_label(problem) == problem
        assert detail_label("") == ""
