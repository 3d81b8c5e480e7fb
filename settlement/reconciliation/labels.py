"""What the reconciliation pages call the codes of batches and their results, in the page's
language (the codes stay as the API returns them; see ``settlement.web.labels``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from .models import ReconBatch, ReconItem

if TYPE_CHECKING:
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
