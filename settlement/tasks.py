from celery import shared_task

from .services.outbox import outbox_deliver
from .services.repayments import receivables_mark_overdue
from .services.settle import claims_retry


@shared_task
def retry_deferred_claims() -> dict:
    return claims_retry()


@shared_task
def mark_overdue_receivables() -> int:
    return receivables_mark_overdue()


@shared_task
def deliver_webhooks() -> int:
    return outbox_deliver()


@shared_task(acks_late=True)
def run_recon_batch(batch_id: str) -> str:
    from .reconciliation.batches import batch_run

    return batch_run(batch_id).status


@shared_task
def resume_stalled_recon_batches() -> int:
    from .reconciliation.batches import batches_resume_stalled

    return batches_resume_stalled()


@shared_task
def reconcile_insurer_yesterday() -> str:
    from datetime import timedelta

    from django.utils import timezone

    from .reconciliation.batches import insurer_day_reconcile

    day = timezone.localdate() - timedelta(days=1)
    return insurer_day_reconcile(day=day).status


@shared_task
def nightly_ledger_check() -> dict:
    from .reconciliation.batches import ledger_check_batch

    return ledger_check_batch().counts


@shared_task
def recover_stalled_settlements() -> dict:
    from .services.settle import settlements_recover

    return settlements_recover()
