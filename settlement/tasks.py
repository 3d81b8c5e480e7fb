from celery import shared_task

from .services.claim_retries import claims_retry
from .services.enrolment import scores_refresh
from .services.notices import notices_due_soon
from .services.outbox import outbox_deliver
from .services.repayments import receivables_mark_overdue


@shared_task
def retry_deferred_claims() -> dict:
    return claims_retry()


@shared_task
def mark_overdue_receivables() -> int:
    return receivables_mark_overdue()


@shared_task
def notify_due_soon() -> int:
    return notices_due_soon()


@shared_task
def deliver_webhooks() -> int:
    return outbox_deliver()


@shared_task
def recover_stalled_settlements() -> dict:
    from .services.settle import settlements_recover

    return settlements_recover()


@shared_task
def refresh_credit_scores() -> dict:
    """Monthly: every consenting holder's score asked again, their lines re-tiered."""
    return scores_refresh().as_dict()
