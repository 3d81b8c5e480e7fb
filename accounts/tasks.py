from celery import shared_task

from accounts.services.family import family_links_lapse
from accounts.services.partners import partner_nonces_purge


@shared_task
def lapse_family_links() -> int:
    return family_links_lapse()


@shared_task
def purge_partner_nonces() -> int:
    return partner_nonces_purge()
