from celery import shared_task

from accounts.services.family import family_links_lapse
from accounts.services.notices import sms_deliver
from accounts.services.partners import partner_nonces_purge


@shared_task
def lapse_family_links() -> int:
    return family_links_lapse()


@shared_task
def purge_partner_nonces() -> int:
    return partner_nonces_purge()


@shared_task(name="accounts.tasks.deliver_sms", acks_late=True)
def deliver_sms() -> int:
    return sms_deliver()
