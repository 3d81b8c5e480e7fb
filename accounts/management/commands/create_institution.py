from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.exceptions import AccountsError
from accounts.models import Institution
from accounts.services.institutions import institution_ensure


class Command(BaseCommand):
    help = (
        "Create a hospital or community health centre on the platform (or rename the one with "
        "this code) and print its id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code", help="the institution's code, e.g. XMH1")
        parser.add_argument("name", help="its name, e.g. 厦门市第一医院")
        parser.add_argument(
            "--kind", choices=Institution.Kind.values, default=Institution.Kind.HOSPITAL
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            institution = institution_ensure(
                actor="command:create_institution",
                code=options["code"],
                name=options["name"],
                kind=options["kind"],
            )
        except AccountsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"institution_id={institution.pk}")
