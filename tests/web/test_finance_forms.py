import pytest

from settlement.reconciliation.forms import ResolveForm


@pytest.mark.parametrize(
    ("typed", "valid", "fen"),
    [
        ("12.50", True, 1250),
        ("-0.50", True, -50),
        ("", True, None),
        ("1e2", False, None),
        ("1_000", False, None),
        ("0", False, None),
        ("1.234", False, None),
    ],
)
def test_the_adjustment_takes_only_plain_yuan(typed, valid, fen):
    form = ResolveForm({"comment": "agreed with the bank", "adjust": typed})
    assert form.is_valid() is valid
    if valid:
        assert form.adjust_fen() == fen
