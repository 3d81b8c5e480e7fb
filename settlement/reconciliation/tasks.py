"""Reconciliation's Celery tasks.

They keep the names they were first registered under (``settlement.tasks.<name>``): the beat
schedule, the services (which queue batches by name) and any message already waiting in the
broker use those. ``settlement.tasks`` imports this module, so the worker registers them.
"""

from celery import shared_task


@shared_task(name="settlement.tasks.run_recon_batch", acks_late=True)
def run_recon_batch(batch_id: str) -> str:
    from .batches import batch_run

    return batch_run(batch_id).status


@shared_task(name="settlement.tasks.resume_stalled_recon_batches")
def resume_stalled_recon_batches() -> int:
    from .batches import batches_resume_stalled

    return batches_resume_stalled()


@shared_task(name="settlement.tasks.reconcile_insurer_yesterday")
def reconcile_insurer_yesterday() -> dict[str, str]:
    """Yesterday's insurer reconciliation at every institution: their statuses by code."""
    from datetime import timedelta

    from django.utils import timezone

    from .batches import insurer_days_reconcile

    day = timezone.localdate() - timedelta(days=1)
    return insurer_days_reconcile(day=day)


@shared_task(name="settlement.tasks.nightly_ledger_check")
def nightly_ledger_check() -> dict:
    from .batches import ledger_check_batch

    return ledger_check_batch().counts
