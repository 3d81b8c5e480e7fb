from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.exceptions import AccountsError
from accounts.services.staff import ROLES, staff_create


class Command(BaseCommand):
    help = "Create a staff user (or add a role to one) and print a new API token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="user name")
        parser.add_argument("--role", required=True, choices=ROLES)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user, token = staff_create(
                actor="command:create_staff", username=options["name"], role=options["role"]
            )
        except AccountsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"token={token}")
        self.stdout.write(f"user={user.get_username()} role={options['role']}")
        self.stdout.write("Send it as `Authorization: Token <token>`; it is not shown again.")
