from celery import shared_task

from . import services


@shared_task
def void_expired_holds() -> int:
    return services.holds_void_expired()


@shared_task
def seal_chain() -> int:
    return services.chain_seal()
