"""What the reconciliation pages call the codes of batches and their results, in the page's
language (the codes stay as the API returns them; see ``settlement.web.labels``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from .models import ReconBatch, ReconItem

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

    from ..web.labels import Labels

RECON_KIND: Labels = {
    ReconItem.Kind.MATCHED: _("Matched"),
    ReconItem.Kind.COVERED: _("Paid in a daily net"),
    ReconItem.Kind.AMOUNT_MISMATCH: _("Amount mismatch"),
    ReconItem.Kind.UNKNOWN_REFERENCE: _("Unknown reference"),
    ReconItem.Kind.DUPLICATE: _("Duplicate"),
    ReconItem.Kind.MISSING: _("Missing"),
    ReconItem.Kind.PROBLEM: _("Integrity problem"),
}
RECON_STATUS: Labels = {
    ReconBatch.Status.QUEUED: _("Queued"),
    ReconBatch.Status.RUNNING: _("Running"),
    ReconBatch.Status.DONE: _("Done"),
    ReconBatch.Status.FAILED: _("Failed"),
}
RECON_SOURCE: Labels = {
    ReconBatch.Source.BANK_STATEMENT: _("Bank statement"),
    ReconBatch.Source.INSURER: _("Insurer daily list"),
    ReconBatch.Source.LEDGER: _("Ledger integrity check"),
}
# What each kind of batch can find, in the order its results are listed: a ledger check finds
# integrity problems only, so its page lists no bank-statement classes.
RECON_KINDS_BY_SOURCE: dict[str, tuple[str, ...]] = {
    ReconBatch.Source.BANK_STATEMENT: (
        ReconItem.Kind.MATCHED,
        ReconItem.Kind.COVERED,
        ReconItem.Kind.AMOUNT_MISMATCH,
        ReconItem.Kind.UNKNOWN_REFERENCE,
        ReconItem.Kind.DUPLICATE,
        ReconItem.Kind.MISSING,
    ),
    ReconBatch.Source.INSURER: (
        ReconItem.Kind.MATCHED,
        ReconItem.Kind.AMOUNT_MISMATCH,
        ReconItem.Kind.UNKNOWN_REFERENCE,
        ReconItem.Kind.MISSING,
        ReconItem.Kind.PROBLEM,
    ),
    ReconBatch.Source.LEDGER: (ReconItem.Kind.PROBLEM,),
}


# An item's ``detail`` is the API's English sentence (matching and the insurer's day write it);
# the pages say each form of it in their language, with its values. A ledger check's problems
# are technical (account codes, sums) and shown as they are, under their kind's label.
_DETAILS: tuple[tuple[re.Pattern[str], StrPromise], ...] = (
    (re.compile(r"bank transaction seen before"), _("The bank reported this transaction before.")),
    (re.compile(r"already paid"), _("This draw was paid by the bank before.")),
    (
        re.compile(r"drawn on (?P<day>\d{4}-\d{2}-\d{2}), not paid by the bank"),
        _("Drawn on %(day)s; the bank has not paid it."),
    ),
    (re.compile(r"net of (?P<count>\d+) items"), _("The net of %(count)s items of the day.")),
    (
        re.compile(r"daily net of (?P<count>\d+) items"),
        _("Paid as the day's net of %(count)s items."),
    ),
    (
        re.compile(r"some of the day's items are paid on their own"),
        _("Some of the day's items were paid on their own."),
    ),
    (
        re.compile(
            r"insurer \((?P<theirs>[-\d, ]+)\) != ledger \((?P<mine>[-\d, ]+)\)"
            r" \(total, fund, account\)"
        ),
        _(
            "The insurer's total, fund and account (%(theirs)s fen) differ from the ledger's"
            " (%(mine)s fen)."
        ),
    ),
    (
        re.compile(r"settled at the insurer, no claim here"),
        _("Settled at the insurer, but no claim here."),
    ),
    (
        re.compile(r"settled here, not in the insurer's list"),
        _("Settled here, but not in the insurer's list."),
    ),
    (
        re.compile(r"totals say (?P<count>\d+) settlements, the detail has (?P<rows>\d+)"),
        _("The insurer's totals say %(count)s settlements; its detail lists %(rows)s."),
    ),
)


def detail_label(detail: str) -> str:
    """An item's detail in the page's language: its form's sentence with its values, or the
    detail as it is when it is none of them (a ledger check's problem, or empty)."""
    for pattern, sentence in _DETAILS:
        match = pattern.fullmatch(detail)
        if match is not None:
            return str(sentence) % match.groupdict() if match.groupdict() else str(sentence)
    return detail
