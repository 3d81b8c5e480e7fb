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
