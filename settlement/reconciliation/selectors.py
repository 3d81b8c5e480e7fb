"""Reads behind the reconciliation pages and API: the batches a staff user may see, recent
batches and the latest ledger check."""

from django.db.models import QuerySet

from accounts.models import Institution
from accounts.selectors import StaffPlace

from .models import ReconBatch, ReconItem


def batches_seen(place: StaffPlace) -> QuerySet[ReconBatch]:
    """The batches ``place`` may see: its institution's, or every one's for the platform's
    operators, who alone see the ledger's checks (they read the whole city's ledger)."""
    return ReconBatch.objects.filter(place.q())


def items_seen(place: StaffPlace) -> QuerySet[ReconItem]:
    """The results of the batches ``place`` may see."""
    return ReconItem.objects.filter(batch__in=batches_seen(place))


def institution_for_upload(place: StaffPlace, code: str) -> Institution | None:
    """Whose statement an upload is: the one named by ``code`` if ``place`` sees it, else, when
    none is named, the uploader's own; ``None`` if there is none (or it is not theirs)."""
    if code:
        found = Institution.objects.filter(code=code).first()
        return found if found is not None and place.sees(found.pk) else None
    if place.institution_id is None:
        return None
    return Institution.objects.get(pk=place.institution_id)


def latest_ledger_check() -> ReconBatch | None:
    """The most recent ``verify_ledger`` run kept as a batch."""
    return (
        ReconBatch.objects.filter(source=ReconBatch.Source.LEDGER).order_by("-created_at").first()
    )


def recon_batches(place: StaffPlace, *, limit: int = 50) -> QuerySet[ReconBatch]:
    return (
        batches_seen(place).select_related("partner", "institution").order_by("-created_at")[:limit]
    )
