import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_ADMIN = "admin"
DEMO_PASSWORD_DEFAULT = "demo-pass-2026"  # noqa: S105 - printed demo login, DEBUG only


class Command(BaseCommand):
    help = (
        "Load the demo data idempotently and print the demo logins. It grows with the product: "
        "for now the administrator login to /admin/ (the ledger is read-only there)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (not for production)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo sets known passwords; it runs only with DEBUG on.")
        password = os.environ.get("DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        user, _ = get_user_model().objects.get_or_create(username=DEMO_ADMIN)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write("Demo logins:")
        self.stdout.write(f"  admin     {DEMO_ADMIN} / {password}   at /admin/")
