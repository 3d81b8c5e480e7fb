from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Institution
from settlement.exceptions import SettlementInputError
from settlement.services.deposit_table import deposit_table_import


class Command(BaseCommand):
    help = (
        "Load the diagnosis deposit table (CSV: diagnosis_code,name,amount in yuan) for an "
        "institution. All or nothing; codes not in the file are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--institution", required=True, help="institution code")

    def handle(self, *args: Any, **options: Any) -> None:
        institution = Institution.objects.filter(code=options["institution"]).first()
        if institution is None:
            raise CommandError(f"no institution with code {options['institution']!r}")
        try:
            text = options["file"].read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {options['file']}: {error}") from None
        try:
            result = deposit_table_import(
                actor="command:import_deposit_table", institution=institution, text=text
            )
        except SettlementInputError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"created={result.created} updated={result.updated} unchanged={result.unchanged}"
        )
