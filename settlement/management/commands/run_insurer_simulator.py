from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from settlement.insurer import simulator


class Command(BaseCommand):
    help = (
        "Run the insurer simulator in the foreground until SIGTERM or SIGINT: the insurer "
        "protocol on /fsi/api/{infno}, POST /sim/control {mode: ok|fail|hang|drop} and "
        "GET /sim/state. Its settlements and balances are kept in the --state file."
    )
    # It touches no database: no checks, so it starts quickly and without one.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        simulator.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = simulator.server_from_options(options, log=self._log)
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot start the insurer simulator: {e}") from e
        self._log(f"insurer simulator at {server.url} (state {options['state']})")
        simulator.serve(server)
        self._log("insurer simulator stopped")

    def _log(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
