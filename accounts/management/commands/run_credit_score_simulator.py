from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.credit_score import simulator
from core import simserver


class Command(BaseCommand):
    help = (
        "Run the credit-score platform simulator in the foreground until SIGTERM or SIGINT: "
        "POST /score gives each id_number_hash a stable score (or 404), POST /sim/pin pins "
        "one, POST /sim/control {mode: ok|fail|hang}, GET /sim/state. Pins are kept in memory."
    )
    # It touches no database: no checks, so it starts quickly and without one.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        simulator.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = simulator.server_from_options(options, log=self._log)
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot start the credit-score simulator: {e}") from e
        self._log(f"credit-score simulator at {server.url}")
        simserver.serve(server)
        self._log("credit-score simulator stopped")

    def _log(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
