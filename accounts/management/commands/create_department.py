from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.exceptions import AccountsError
from accounts.models import Institution
from accounts.services.institutions import department_ensure
from core.money import API, NotYuan, yuan_to_fen


class Command(BaseCommand):
    help = (
        "Create a department of an institution (or rename the one with this code) and print "
        "its id; --default-deposit sets the inpatient deposit it takes when the diagnosis "
        "deposit table has no entry."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("institution", help="the institution's code")
        parser.add_argument("code", help="the department's code, e.g. IM")
        parser.add_argument("name", help="its name, e.g. 内科")
        parser.add_argument("--default-deposit", metavar="YUAN", help='e.g. "2000.00"')

    def handle(self, *args: Any, **options: Any) -> None:
        institution = Institution.objects.filter(code=options["institution"]).first()
        if institution is None:
            raise CommandError(f"no institution with code {options['institution']!r}")
        deposit = None
        if options["default_deposit"] is not None:
            try:
                deposit = yuan_to_fen(options["default_deposit"], API)
            except NotYuan:
                raise CommandError(
                    "--default-deposit is an amount in yuan with up to two decimals, "
                    'such as "2000.00"'
                ) from None
        try:
            department = department_ensure(
                actor="command:create_department",
                institution=institution,
                code=options["code"],
                name=options["name"],
                default_deposit=deposit,
            )
        except AccountsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"department_id={department.pk}")
