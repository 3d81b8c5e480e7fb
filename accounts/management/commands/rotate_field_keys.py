from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import crypto
from accounts.models import PartnerKey
from accounts.services.persons import persons_rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt personal data and partner secrets under the first FIELD_ENCRYPTION_KEY "
        "and recompute lookup hashes. Safe to rerun; run it after putting a new key first."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        people = persons_rotate_keys()
        self.stdout.write(f"persons re-encrypted: {people}")
        keys = 0
        with transaction.atomic():
            for key in PartnerKey.objects.select_for_update().order_by("pk"):
                key.secret_encrypted = crypto.reencrypt(key.secret_encrypted)
                key.save(update_fields=["secret_encrypted"])
                keys += 1
        self.stdout.write(f"partner keys re-encrypted: {keys}")
        self.stdout.write("Every row now reads with the first key alone; older keys may go.")
