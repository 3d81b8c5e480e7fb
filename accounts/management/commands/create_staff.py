from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.exceptions import AccountsError
from accounts.models import Institution
from accounts.services.staff import PLATFORM_ROLE, ROLES, staff_create


class Command(BaseCommand):
    help = (
        "Create a staff user (or add a role to one) at an institution, or an operator of the "
        "city platform (--role platform, no institution), and print a new API token once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="user name")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument(
            "--institution", metavar="CODE", help="where they work (every role but platform)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        code = options["institution"]
        institution = None
        if code is not None:
            institution = Institution.objects.filter(code=code).first()
            if institution is None:
                raise CommandError(f"no institution with code {code!r}")
        elif options["role"] != PLATFORM_ROLE:
            raise CommandError(
                f"--institution CODE is needed for role {options['role']}: staff work at one"
            )
        try:
            user, token = staff_create(
                actor="command:create_staff",
                username=options["name"],
                role=options["role"],
                institution=institution,
            )
        except AccountsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"token={token}")
        where = institution.code if institution else "the platform"
        self.stdout.write(f"user={user.get_username()} role={options['role']} at {where}")
        self.stdout.write("Send it as `Authorization: Token <token>`; it is not shown again.")
