"""What a settlement costs the server: queries per settle, its time with the insurer's wait
taken out, and the time to read a long stay's daily bill.

``manage.py settle_bench [--runs 50] [--lines 30,3000] [--only settle|bill]`` builds, for each
number of charge lines, ``--runs`` inpatient stays through the services (a patient with a
credit line, the deposit waived onto it, the lines posted 500 at a time), then settles each
against the insurer simulator, started in a process of its own (as the insurer is another
system). A settle's time is ``encounter_settle`` from call to return less the time its adapter
spent waiting for the insurer's answers (the insurer's share: it is not the server's), after
eight settles of the size not measured (a running server has settled before); its queries are
counted on one more stay of the same size, apart (counting slows what it watches). Then the
bill of one open stay of the largest size is read ``--runs`` times through the staff API and as
the cashier's page, in this process through Django's test client (the server's time, without
a network). ``--only`` measures one of the two: ``bill`` builds only the open stay.

The set-up is followed by ``ANALYZE``, as a database that has run a while would be. Each figure
is printed with its target (issue: "≤ 40 queries per settle whatever the number of lines;
≤ 30 ms p99 for 30 lines and ≤ 60 ms for 3,000; the bill ≤ 40 ms through the API and ≤ 100 ms
as a page"). The stays stay in the database (the ledger keeps what it posted): run it on a
database of its own.
"""

import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from django.core import signals
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from stdnum.cn import ric

from accounts.exceptions import PersonExists
from accounts.models import Department, Partner, Person
from accounts.services.credit_lines import credit_line_grant
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create
from accounts.services.persons import person_create
from accounts.services.staff import staff_create
from core.bench import as_in_production
from settlement.bench.insurer import insurer_process
from settlement.insurer.client import InsurerClient
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.settle import encounter_settle

ACTOR = "command:settle_bench"
INSTITUTION = "SETTLEBENCH"
CHUNK = 500  # charge lines per posting, as a HIS sends a day's orders
LINE_FEN = 100  # each line ¥1.00: 3,000 lines stay well inside a ¥30,000 line
LIMIT = 3_000_000
# Settles not timed first: a running server has settled before, and PostgreSQL plans the
# statements of a PL/pgSQL function (the ledger's) anew for each of its first five calls on a
# connection before it settles on a plan.
WARM_UP = 8
TARGETS = {"queries": 40, "settle_small": 30.0, "settle_large": 60.0, "api": 40.0, "page": 100.0}


class TimedInsurer(InsurerClient):
    """The adapter, counting the time it waits for the insurer's answers."""

    def __init__(self, url: str) -> None:
        super().__init__(base_url=url, timeout=30)
        self.waited = 0.0

    def _post(self, infno: str, body: bytes) -> tuple[int, Any]:
        started = time.perf_counter()
        try:
            return super()._post(infno, body)
        finally:
            self.waited += time.perf_counter() - started


@dataclass
class Figures:
    label: str
    queries: int
    times: list[float]  # milliseconds
    target: float

    def percentile(self, share: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    @property
    def met(self) -> bool:
        return self.percentile(0.99) <= self.target and (
            self.queries <= TARGETS["queries"] or not self.label.startswith("settle")
        )


@contextmanager
def counted_queries() -> Iterator[list[int]]:
    """Count the statements sent to the database meanwhile (``[n]``, read after the block):
    every one, as Django's query log has them: BEGIN, COMMIT and savepoints included, and the
    ledger's prepared calls (which it logs there too)."""
    count = [0]
    connection.queries_log.clear()  # a full log (it keeps 9,000) would capture nothing
    with CaptureQueriesContext(connection) as captured:
        yield count
    count[0] = len(captured)


def _ms(seconds: float) -> float:
    return seconds * 1000


class Command(BaseCommand):
    help = (
        "Time settlements of stays of 30 and 3,000 charge lines (queries, the server's p50 and "
        "p99 without the insurer's wait) and the reading of a long stay's bill, with targets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=50, help="Settles per size (50).")
        parser.add_argument(
            "--lines", default="30,3000", help="Charge lines per stay, comma-separated."
        )
        parser.add_argument("--seed", type=int, default=1, help="Seed of the generated stays.")
        parser.add_argument(
            "--only",
            choices=["settle", "bill"],
            help="Measure only the settles, or only the bill's reads (one stay of the largest "
            "size is built for them).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        runs = options["runs"]
        try:
            sizes = [int(part) for part in options["lines"].split(",") if part.strip()]
        except ValueError:
            raise CommandError("--lines takes whole numbers, comma-separated") from None
        if runs < 1 or not sizes or min(sizes) < 1:
            raise CommandError("--runs and every --lines size must be at least 1")
        self.rng = random.Random(options["seed"])  # noqa: S311 - benchmark data
        with tempfile.TemporaryDirectory() as folder, insurer_process(Path(folder)) as url:
            with as_in_production():
                self._run(url, runs, sizes, options["only"])

    def _run(self, url: str, runs: int, sizes: list[int], only: str | None) -> None:
        department, partner = self._setup()
        stays: dict[int, list[UUID]] = {}
        if only != "bill":
            for size in sizes:
                count = WARM_UP + runs + 1
                self.stdout.write(f"building {count} stays of {size} lines (not measured)")
                stays[size] = [self._stay(department, partner, size) for _ in range(count)]
        open_stay = self._stay(department, partner, max(sizes)) if only != "settle" else None
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        results = []
        for size in stays:
            built = stays[size]
            warm_up, timed, counted = built[:WARM_UP], built[WARM_UP:-1], built[-1]
            for stay in warm_up:  # as a server that has settled before: not counted
                self._settle_time(url, stay)
            times = [self._settle_time(url, stay) for stay in timed]
            queries = self._settle_queries(url, counted)
            target = TARGETS["settle_small"] if size <= 30 else TARGETS["settle_large"]
            results.append(Figures(f"settle, {size} lines", queries, times, target))
        if open_stay is not None:
            results += self._bill(open_stay, runs, max(sizes))
        self._print(results, connection.vendor)

    # --- set-up ---------------------------------------------------------------------------

    def _setup(self) -> tuple[Department, Partner]:
        institution = institution_ensure(actor=ACTOR, code=INSTITUTION, name="settle_bench")
        department = department_ensure(
            actor=ACTOR, institution=institution, code="IM", name="内科", default_deposit=500_000
        )
        department.refresh_from_db()
        partner, _, _ = partner_create(actor=ACTOR, name=f"settle_bench {uuid4().hex[:8]}")
        return department, partner

    def _person(self, partner: Partner) -> Person:
        for _ in range(50):
            born = date(1950, 1, 1) + timedelta(days=self.rng.randrange(365 * 50))
            base = f"350203{born:%Y%m%d}{self.rng.randrange(1, 1000):03d}"
            id_number = base + ric.calc_check_digit(base + "0")
            try:
                person = person_create(actor=ACTOR, name="结算压测", id_number=id_number)
            except PersonExists:
                continue
            credit_line_grant(
                actor=ACTOR,
                partner=partner,
                id_number=id_number,
                name=person.name,
                score=700,
                score_provider="settle_bench",
                limit=LIMIT,
            )
            return person
        raise CommandError("could not find an unused ID number")

    def _stay(self, department: Department, partner: Partner, lines: int) -> UUID:
        stay = encounter_admit(
            actor=ACTOR, person=self._person(partner), department=department, kind="inpatient"
        )
        today = timezone.localdate()  # lines are dated from admission (today) to today
        items = [
            ChargeItem(
                f"C{n % 97}",
                "检查费",
                "exam",
                "ABC"[n % 3],
                Decimal(1),
                LINE_FEN,
                today,
            )
            for n in range(lines)
        ]
        for start in range(0, lines, CHUNK):
            charges_post(
                actor=ACTOR,
                encounter_id=stay.pk,
                items=items[start : start + CHUNK],
                key=f"settle_bench:{stay.pk}:{start}",
            )
        return stay.pk

    # --- measuring ------------------------------------------------------------------------

    def _settle_queries(self, url: str, stay: UUID) -> int:
        with counted_queries() as queries:
            encounter_settle(actor=ACTOR, encounter_id=stay, client=TimedInsurer(url))
        return queries[0]

    def _settle_time(self, url: str, stay: UUID) -> float:
        client = TimedInsurer(url)
        started = time.perf_counter()
        encounter_settle(actor=ACTOR, encounter_id=stay, client=client)
        return _ms(time.perf_counter() - started - client.waited)

    def _bill(self, stay: UUID, runs: int, lines: int) -> list[Figures]:
        institution = Department.objects.get(institution__code=INSTITUTION, code="IM").institution
        user, token = staff_create(
            actor=ACTOR,
            institution=institution,
            username=f"settle-bench-{uuid4().hex[:8]}",
            role="cashier",
        )
        api, page = Client(HTTP_AUTHORIZATION=f"Token {token}"), Client()
        page.force_login(user)  # type: ignore[arg-type]  # the project's user model
        found: list[Figures] = []
        # A server keeps its connection between requests (CONN_MAX_AGE); the test client
        # would close it at the end of each, and reconnect at the next.
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            self._reads(stay, runs, lines, api, page, found)
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)
        return found

    def _reads(
        self, stay: UUID, runs: int, lines: int, api: Client, page: Client, found: list[Figures]
    ) -> None:
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            for label, client, path, target in (
                ("bill, API", api, f"/api/v1/encounters/{stay}/bill/", TARGETS["api"]),
                ("bill, page", page, f"/cashier/encounters/{stay}/", TARGETS["page"]),
            ):
                with counted_queries() as queries:
                    answer = client.get(path)
                if answer.status_code != 200:
                    raise CommandError(f"{path} answered {answer.status_code}")
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    client.get(path)
                    times.append(_ms(time.perf_counter() - started))
                found.append(Figures(f"{label}, {lines} lines", queries[0], times, target))

    def _print(self, results: list[Figures], vendor: str) -> None:
        self.stdout.write(f"\nsettle_bench on {vendor}; times in ms, the insurer's wait excluded")
        header = f"{'':24} {'queries':>8} {'p50':>8} {'p99':>8} {'target p99':>11}  met"
        self.stdout.write(header)
        for row in results:
            self.stdout.write(
                f"{row.label:24} {row.queries:>8} {statistics.median(row.times):>8.1f} "
                f"{row.percentile(0.99):>8.1f} {row.target:>11.0f}  {'yes' if row.met else 'NO'}"
            )
        self.stdout.write(f"(queries per settle: target ≤ {TARGETS['queries']})")
