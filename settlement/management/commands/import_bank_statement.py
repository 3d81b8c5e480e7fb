from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Institution
from settlement.exceptions import SettlementInputError
from settlement.reconciliation.batches import batch_run, partner_named, statement_batch_create


class Command(BaseCommand):
    help = (
        "Reconcile a bank statement file dropped by a scheduled transfer (CSV, camt.053 or the "
        "daily file). Queues the batch for the worker, or runs it here with --now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--bank", required=True, help="partner id or name")
        parser.add_argument(
            "--institution",
            required=True,
            help="code of the institution whose statement it is (matched against its items)",
        )
        parser.add_argument("--now", action="store_true", help="run the batch in this process")

    def handle(self, *args: Any, **options: Any) -> None:
        bank = options["bank"]
        partner = partner_named(bank)
        if partner is None:
            raise CommandError(f"no bank partner {bank!r}")
        institution = Institution.objects.filter(code=options["institution"]).first()
        if institution is None:
            raise CommandError(f"no institution {options['institution']!r}")
        try:
            with options["file"].open("rb") as stream:
                batch, created = statement_batch_create(
                    actor="command:import_bank_statement",
                    institution=institution,
                    partner=partner,
                    stream=stream,
                    file_name=options["file"].name,
                )
        except OSError as error:
            raise CommandError(f"cannot read {options['file']}: {error}") from None
        except SettlementInputError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"batch={batch.pk} {'new' if created else 'seen before'}")
        if options["now"] and batch.status in ("queued", "running"):
            batch = batch_run(batch.pk)
        self.stdout.write(
            f"status={batch.status} lines={batch.progress_total} counts={batch.counts}"
        )
