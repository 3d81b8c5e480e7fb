import sys
from typing import Any

from django.core.management.base import BaseCommand

from ledger.verification import verify_ledger


class Command(BaseCommand):
    help = (
        "Check every transaction sums to zero, every stored balance equals the sum of its "
        "entries and holds, each ledger's trial balance, and the hash chain. "
        "Exit 0 when intact, 1 listing each problem."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_ledger()
        summary = (
            f"{report.transactions} transactions, {report.accounts} accounts, "
            f"{report.links} chain links checked"
        )
        if report.unsealed_recent:
            summary += f"; {report.unsealed_recent} recent transactions not yet sealed"
        if report.intact:
            self.stdout.write(f"ledger intact: {summary}")
            return
        for problem in report.problems:
            self.stdout.write(f"PROBLEM {problem}")
        self.stdout.write(f"ledger NOT intact: {len(report.problems)} problems; {summary}")
        sys.exit(1)
