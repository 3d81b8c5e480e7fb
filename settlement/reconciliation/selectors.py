"""Reads behind the reconciliation pages: recent batches and the latest ledger check."""

from django.db.models import QuerySet

from .models import ReconBatch


def latest_ledger_check() -> ReconBatch | None:
    """The most recent ``verify_ledger`` run kept as a batch."""
    return (
        ReconBatch.objects.filter(source=ReconBatch.Source.LEDGER).order_by("-created_at").first()
    )


def recon_batches(*, limit: int = 50) -> QuerySet[ReconBatch]:
    return ReconBatch.objects.select_related("partner").order_by("-created_at")[:limit]
