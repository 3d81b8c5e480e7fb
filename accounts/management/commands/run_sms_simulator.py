from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.sms import simulator
from core import simserver


class Command(BaseCommand):
    help = (
        "Run the SMS gateway simulator in the foreground until SIGTERM or SIGINT: messages in "
        "the cloud-SMS shape on POST /, the messages received on GET / (a page) and "
        "GET /sim/messages?phone= (JSON), POST /sim/control {mode: ok|reject|fail|hang}. "
        "Messages are kept in memory only."
    )
    # It touches no database: no checks, so it starts quickly and without one.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        simulator.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = simulator.server_from_options(options, log=self._log)
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot start the SMS simulator: {e}") from e
        self._log(f"SMS simulator at {server.url}/ (open it in a browser to read the messages)")
        simserver.serve(server)
        self._log("SMS simulator stopped")

    def _log(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
