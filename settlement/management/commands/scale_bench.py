"""Xiamen's scale in one box: build a city's data set with ``COPY``, then time the everyday
requests on it and the nightly ledger check.

``manage.py scale_bench [--citizens 900000] [--institutions 62] [--encounters 1000000]
[--lines 10000000] [--runs 200] [--seed 1] [--reuse]`` (PostgreSQL only) builds, on a database
of its own, the citizens with their credit lines, the institutions (23 hospitals to 39
community centres), the encounters with their charge lines, settlements and the whole ledger
history they make (see ``settlement.bench.scale_data`` for what is written and how: generated
as text, loaded with ``COPY``, the hash chain computed while generating, keys, indexes and
foreign keys built and checked after the load, the loaded tables' triggers set aside for the
load only), prints each table's rows per second and the build's time against its target (15
minutes), and runs ``ANALYZE``.

Then it times, each ``--runs`` times on random picks across the data set, in this process
through Django's test client (the server's time, without a network; connections kept between
requests, as a server keeps them):

- an admission: ``POST /api/v1/encounters/`` as the institution's cashier, for a random citizen
  (an inpatient's deposit held on their line when it has room);
- a settle: ``encounter_settle`` of a random open stay against the insurer simulator started in
  a process of its own, less the time waiting for the insurer (as ``settle_bench``);
- a bill: ``GET /api/v1/encounters/{id}/bill/`` of a random stay, as its institution's cashier;
- a partner's line: ``GET /api/partner/v1/credit-lines/{id}/``, signed with the bank's key;
- a patient's own list: ``GET /api/patient/v1/encounters/`` with a token of a random citizen;

each with its p50 and p99 beside the target (p99 ≤ 150 ms), then ``verify_ledger`` over the
whole ledger, timed (``--skip-verify`` leaves it out). ``--reuse`` times a data set built
before without building again.

The build refuses a database that holds other data (persons, encounters or ledger
transactions) unless ``--allow-existing-data`` is given: it writes millions of rows.
"""

import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from django.core import signals
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection
from django.db.models import Exists, OuterRef
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from accounts import signing
from accounts.models import Department, Institution, Partner, Person
from accounts.services.partners import partner_key_issue
from accounts.services.patient_tokens import patient_token_issue
from accounts.services.staff import staff_create
from core.bench import as_in_production
from ledger.models import Transaction
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.bench import scale_data
from settlement.bench.insurer import insurer_process
from settlement.models import Channel, Charge, Encounter
from settlement.services.settle import encounter_settle

from .settle_bench import TimedInsurer

ACTOR = scale_data.ACTOR
TARGET_MS = 150.0
BUILD_TARGET_S = 15 * 60


@dataclass
class Timing:
    label: str
    times: list[float]  # milliseconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _ms(seconds: float) -> float:
    return seconds * 1000


class Command(BaseCommand):
    help = (
        "Build a city-sized data set with COPY (citizens, lines, institutions, encounters, charge "
        "lines and their ledger history), then time admission, settle, bill, partner line and "
        "patient list reads (p50/p99 against 150 ms) and verify_ledger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--citizens", type=int, default=900_000)
        parser.add_argument("--institutions", type=int, default=62)
        parser.add_argument("--encounters", type=int, default=1_000_000)
        parser.add_argument("--lines", type=int, default=10_000_000, help="Charge lines in all.")
        parser.add_argument("--runs", type=int, default=200, help="Timed requests of each kind.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--reuse",
            action="store_true",
            help="Time the data set built before; build nothing.",
        )
        parser.add_argument(
            "--skip-verify",
            action="store_true",
            help="Do not time verify_ledger after the requests.",
        )
        parser.add_argument(
            "--allow-existing-data",
            action="store_true",
            help="Build even though the database holds persons, encounters or transactions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                "scale_bench runs on PostgreSQL only (it loads with COPY): set DATABASE_URL"
            )
        sizes = scale_data.Sizes(
            citizens=options["citizens"],
            institutions=options["institutions"],
            encounters=options["encounters"],
            lines=options["lines"],
            seed=options["seed"],
        )
        runs = options["runs"]
        if min(sizes.citizens, sizes.institutions, sizes.encounters, runs) < 1:
            raise CommandError("--citizens, --institutions, --encounters and --runs must be >= 1")
        if sizes.lines < sizes.encounters:
            raise CommandError("--lines must be at least --encounters (a line per encounter)")
        self.rng = random.Random(sizes.seed)  # noqa: S311 - benchmark data
        if options["reuse"]:
            if not scale_data.bench_places():
                raise CommandError("no scale_bench data set here to reuse: build one first")
        else:
            self._refuse_other_data(options["allow_existing_data"])
            self._build(sizes)
        with as_in_production():
            self._timed(runs, options["skip_verify"])

    # --- the build ------------------------------------------------------------------------

    def _refuse_other_data(self, allowed: bool) -> None:
        held = {
            "persons": Person.objects.exists(),
            "encounters": Encounter.objects.exists(),
            "ledger transactions": Transaction.objects.exists(),
        }
        found = [name for name, present in held.items() if present]
        if found and not allowed:
            raise CommandError(
                f"this database already holds {', '.join(found)}: scale_bench writes millions of "
                "rows, so build on a database of its own (--reuse times a data set built before; "
                "--allow-existing-data builds anyway)"
            )

    def _build(self, sizes: scale_data.Sizes) -> None:
        self.stdout.write(
            f"building {sizes.citizens:,} citizens with lines, {sizes.institutions} institutions, "
            f"{sizes.encounters:,} encounters, {sizes.lines:,} charge lines"
        )
        report = scale_data.build(sizes, lambda line: self.stdout.write(line, ending="\n"))
        self.stdout.write("\nbuild (COPY per table):")
        for table, (rows, seconds) in report.rows.items():
            rate = rows / seconds if seconds else 0.0
            self.stdout.write(f"  {table:28} {rows:>12,} rows {seconds:>7.1f} s {rate:>11,.0f}/s")
        met = "yes" if report.seconds <= BUILD_TARGET_S else "NO"
        self.stdout.write(
            f"  generating rows (Python) {report.generate_seconds:.1f} s; keys, indexes and "
            f"foreign keys built and checked {report.constraints_seconds:.1f} s"
        )
        self.stdout.write(
            f"build total {report.seconds:.1f} s (target {BUILD_TARGET_S} s)  met {met}"
        )

    # --- the timed part -------------------------------------------------------------------

    def _timed(self, runs: int, skip_verify: bool) -> None:
        with tempfile.TemporaryDirectory() as folder, insurer_process(Path(folder)) as url:
            # A server keeps its connection between requests (CONN_MAX_AGE); the test client
            # would close it at the end of each, and reconnect at the next.
            signals.request_started.disconnect(close_old_connections)
            signals.request_finished.disconnect(close_old_connections)
            try:
                with override_settings(ALLOWED_HOSTS=["testserver"]):
                    results = self._measure(url, runs)
            finally:
                signals.request_started.connect(close_old_connections)
                signals.request_finished.connect(close_old_connections)
        self._print(results)
        if not skip_verify:
            self._verify()

    def _measure(self, url: str, runs: int) -> list[Timing]:
        places = scale_data.bench_places()
        self.cashiers: dict[int, Client] = {}
        results = [
            self._admissions(places, runs),
            self._settles(url, runs),
            self._bills(runs),
            self._partner_reads(runs),
            self._patient_lists(runs),
        ]
        return results

    def _cashier(self, institution_id: int) -> Client:
        client = self.cashiers.get(institution_id)
        if client is None:
            institution = Institution.objects.get(pk=institution_id)
            _, token = staff_create(
                actor=ACTOR,
                institution=institution,
                username=f"scale-bench-{institution.code.lower()}-{uuid4().hex[:8]}",
                role="cashier",
            )
            client = self.cashiers[institution_id] = Client(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    def _repeat(self, label: str, runs: int, once: Callable[[int], float]) -> Timing:
        """``once(n)`` returns one timed request's milliseconds; the first call warms up."""
        once(-1)  # not counted: a server has answered such a request before
        timing = Timing(label, [once(number) for number in range(runs)])
        self.stdout.write(
            f"  timed {runs} × {label}: p50 {statistics.median(timing.times):.1f} ms, "
            f"p99 {timing.percentile(0.99):.1f} ms"
        )
        return timing

    def _random_ids(self, table: str, runs: int, where: str = "") -> list[Any]:
        """``runs`` + 1 random row ids of ``table`` across the whole table."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [self.rng.random()])
            cursor.execute(
                f"SELECT id FROM {table} {where} ORDER BY random() LIMIT %s",  # noqa: S608 - fixed names
                [runs + 1],
            )
            found = [row[0] for row in cursor.fetchall()]
        if len(found) < runs + 1:
            raise CommandError(f"{table} has fewer than {runs + 1} rows to pick from")
        return found

    def _admissions(self, places: list[Institution], runs: int) -> Timing:
        people = self._random_ids("accounts_person", runs)
        departments: dict[int, list[Department]] = {}
        for department in Department.objects.filter(institution__in=places):
            departments.setdefault(department.institution_id, []).append(department)

        def once(number: int) -> float:
            place = self.rng.choice(places)
            department = self.rng.choice(departments[place.pk])
            kind = "outpatient" if department.default_deposit == 0 else "inpatient"
            client = self._cashier(place.pk)
            body = {"person": people[number + 1], "kind": kind, "department": department.code}
            started = time.perf_counter()
            answer = client.post(
                "/api/v1/encounters/",
                body,
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=secrets.token_hex(16),
            )
            elapsed = _ms(time.perf_counter() - started)
            if answer.status_code != 201:
                raise CommandError(f"admission answered {answer.status_code}: {answer.content!r}")
            return elapsed

        return self._repeat("admission (POST /api/v1/encounters/)", runs, once)

    def _settles(self, url: str, runs: int) -> Timing:
        with_charges = Charge.objects.filter(encounter=OuterRef("pk"))
        stays: list[UUID] = list(
            Encounter.objects.filter(status=Encounter.Status.OPEN)
            .filter(Exists(with_charges))
            .values_list("pk", flat=True)
        )
        if len(stays) < runs + 1:
            raise CommandError(f"only {len(stays)} open stays with charges to settle")
        picked = self.rng.sample(stays, runs + 1)

        def once(number: int) -> float:
            client = TimedInsurer(url)
            started = time.perf_counter()
            encounter_settle(
                actor=ACTOR, encounter_id=picked[number + 1], channel=Channel.WECHAT, client=client
            )
            return _ms(time.perf_counter() - started - client.waited)

        return self._repeat("settle (encounter_settle, insurer's wait excluded)", runs, once)

    def _bills(self, runs: int) -> Timing:
        stays = self._random_ids("settlement_encounter", runs)
        places = dict(Encounter.objects.filter(pk__in=stays).values_list("pk", "institution_id"))

        def once(number: int) -> float:
            stay = stays[number + 1]
            client = self._cashier(places[stay])
            started = time.perf_counter()
            answer = client.get(f"/api/v1/encounters/{stay}/bill/")
            elapsed = _ms(time.perf_counter() - started)
            if answer.status_code != 200:
                raise CommandError(f"bill answered {answer.status_code}")
            return elapsed

        return self._repeat("bill (GET /api/v1/encounters/{id}/bill/)", runs, once)

    def _partner_reads(self, runs: int) -> Timing:
        lines = self._random_ids("accounts_creditline", runs)
        owners = dict(
            Partner.objects.filter(credit_lines__pk__in=lines).values_list("credit_lines__pk", "pk")
        )
        keys = {}
        for partner in Partner.objects.filter(pk__in=set(owners.values())):
            key, secret = partner_key_issue(actor=ACTOR, partner=partner)
            keys[partner.pk] = (key.key_id, secret)
        client = Client()

        def once(number: int) -> float:
            line = lines[number + 1]
            key_id, secret = keys[owners[line]]
            path = f"/api/partner/v1/credit-lines/{line}/"
            stamp, nonce = str(int(timezone.now().timestamp())), secrets.token_hex(12)
            started = time.perf_counter()
            answer = client.get(
                path,
                HTTP_X_PARTNER_KEY=key_id,
                HTTP_X_TIMESTAMP=stamp,
                HTTP_X_NONCE=nonce,
                HTTP_X_SIGNATURE=signing.sign(secret, "GET", path, stamp, nonce, b""),
            )
            elapsed = _ms(time.perf_counter() - started)
            if answer.status_code != 200:
                raise CommandError(f"partner line read answered {answer.status_code}")
            return elapsed

        return self._repeat("partner line (GET /api/partner/v1/credit-lines/{id}/)", runs, once)

    def _patient_lists(self, runs: int) -> Timing:
        people = list(Person.objects.filter(pk__in=self._random_ids("accounts_person", runs)))
        self.rng.shuffle(people)
        tokens = [patient_token_issue(person=person, actor=ACTOR) for person in people]
        client = Client()

        def once(number: int) -> float:
            started = time.perf_counter()
            answer = client.get(
                "/api/patient/v1/encounters/", HTTP_AUTHORIZATION=f"Bearer {tokens[number + 1]}"
            )
            elapsed = _ms(time.perf_counter() - started)
            if answer.status_code != 200:
                raise CommandError(f"patient list answered {answer.status_code}")
            return elapsed

        return self._repeat("patient list (GET /api/patient/v1/encounters/)", runs, once)

    # --- figures --------------------------------------------------------------------------

    def _print(self, results: list[Timing]) -> None:
        self.stdout.write(
            f"\nscale_bench on {connection.vendor}: {Encounter.objects.count():,} encounters, "
            f"{Charge.objects.count():,} charge lines, {Transaction.objects.count():,} ledger "
            "transactions; times in ms"
        )
        self.stdout.write(f"{'':56} {'p50':>8} {'p99':>8} {'target p99':>11}  met")
        for row in results:
            p99 = row.percentile(0.99)
            self.stdout.write(
                f"{row.label:56} {statistics.median(row.times):>8.1f} {p99:>8.1f} "
                f"{TARGET_MS:>11.0f}  {'yes' if p99 <= TARGET_MS else 'NO'}"
            )

    def _verify(self) -> None:
        sealed = chain_seal()  # what the timed requests posted, as the beat task seals it
        self.stdout.write(f"chain_seal linked the {sealed} transactions the timed part posted")
        started = time.perf_counter()
        report = verify_ledger()
        seconds = time.perf_counter() - started
        self.stdout.write(
            f"verify_ledger: {report.transactions:,} transactions, {report.accounts:,} accounts, "
            f"{report.links:,} chain links in {seconds:.1f} s: "
            f"{'intact' if report.intact else 'PROBLEMS'}"
        )
        for problem in report.problems[:20]:
            self.stdout.write(f"  {problem}")
        if not report.intact:
            raise CommandError(f"verify_ledger found {len(report.problems)} problems")
