"""The cashier's bill by day (每日清单) as the encounter page shows it: one section a day, its
lines as HTML table rows built here rather than in a template loop.

A long stay has thousands of lines; a template spends tens of microseconds on each (a lookup,
a localisation and an escape per value), this about one. Each line becomes its row straight
from ``encounter_bill``'s fields (no object per line), and every text is escaped here, once
per distinct text: a stay repeats its item codes, names and categories.

A reversible line gets a button that sends the page's one reverse form (``#reverse-form``,
where the cashier types the reason) with that line's id, instead of a form of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from settlement.models import Encounter
from settlement.selectors import BillLine, encounter_bill

from .labels import CATEGORY, INSURANCE_CLASS, label

if TYPE_CHECKING:
    from .labels import Labels

# Up to this many lines every day is shown open; past it, the last day only (the others
# open on a click), so that a long stay reads as its days and their totals first.
ALL_DAYS_OPEN_UP_TO = 200


class _Escaped(dict[str, str]):
    """Text to its HTML-escaped form, each distinct text escaped once."""

    def __missing__(self, text: str) -> str:
        escaped = self[text] = str(escape(text))
        return escaped


class _Labelled(dict[str, str]):
    """A code to its label in the page's language, escaped, each code looked up once."""

    def __init__(self, labels: Labels) -> None:
        super().__init__()
        self.labels = labels

    def __missing__(self, code: str) -> str:
        labelled = self[code] = str(escape(label(self.labels, code)))
        return labelled


class _Rows:
    """Makes each bill line's table row (an ``encounter_bill`` item maker), and notes whether
    any line can be reversed."""

    def __init__(self) -> None:
        self.text = _Escaped()
        self.categories = _Labelled(CATEGORY)
        self.classes = _Labelled(INSURANCE_CLASS)
        self.reverse = escape(gettext("Reverse"))
        self.reversal = escape(gettext("Reversal"))
        self.reversed = escape(gettext("Reversed"))
        self.any_reversible = False

    def __call__(self, line: BillLine) -> str:
        # Quantities and yuan are digits, a point and a sign: nothing in them to escape.
        pk = line.pk
        if line.reversible:
            self.any_reversible = True
            kind = "charge"
            action = (
                f'<button form="reverse-form" name="charge" value="{pk}">{self.reverse}</button>'
            )
        elif line.reverses is not None:
            kind = "charge reversal"
            action = f"{self.reversal}: {self.text[line.reason]}"
        elif line.reversed_:
            kind = "charge reversed"
            action = self.reversed
        else:
            kind = "charge"
            action = ""
        text = self.text
        return (
            f'<tr class="{kind}" data-charge="{pk}"><td>{text[line.code]}</td>'
            f"<td>{text[line.name]}</td><td>{self.categories[line.category]}</td>"
            f"<td>{self.classes[line.insurance_class]}</td><td>{line.quantity}</td>"
            f"<td>{line.unit_price}</td><td>{line.amount}</td><td>{action}</td></tr>"
        )


def bill_page(encounter: Encounter) -> dict[str, Any]:
    """The encounter's bill for the cashier's page: its totals, whether any line can be
    reversed (then the page has its reverse form), and its days, each with its date,
    subtotal, number of lines, whether it is shown open, and its lines as rows (safe HTML)."""
    rows = _Rows()
    bill = encounter_bill(encounter, rows)
    days = bill["days"]
    lines = sum(len(day["items"]) for day in days)
    return {
        "days": [
            {
                "date": day["date"],
                "subtotal": day["subtotal"],
                "lines": len(day["items"]),
                "open": lines <= ALL_DAYS_OPEN_UP_TO or number == len(days),
                "rows": _safe("\n".join(day["items"])),
            }
            for number, day in enumerate(days, start=1)
        ],
        "reversible": rows.any_reversible,
        "total": bill["total"],
        "paid": bill["paid"],
        "outstanding": bill["outstanding"],
    }


def _receipt_row(line: BillLine) -> str:
    return (
        f"<tr><td>{line.service_date}</td><td>{escape(line.name)}</td>"
        f'<td class="money">{line.quantity}</td><td class="money">{line.unit_price}</td>'
        f'<td class="money">{line.amount}</td></tr>'
    )


def receipt_rows(encounter: Encounter) -> SafeString:
    """The receipt's charges, every line of every day in order, as table rows (safe HTML)."""
    bill = encounter_bill(encounter, _receipt_row)
    return _safe("\n".join(row for day in bill["days"] for row in day["items"]))


def _safe(html: str) -> SafeString:
    # Every text in the rows was escaped by _Rows; the rest is markup and numbers made there.
    return mark_safe(html)  # noqa: S308
