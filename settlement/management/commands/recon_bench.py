"""Reconciliation throughput of a bank statement next to PostgreSQL matching the same data alone.

``manage.py recon_bench --lines N`` reconciles a CSV statement of N lines against N ledger items
of a bank, in this process, and prints the lines per second and the peak memory; then it loads
the same file into PostgreSQL with ``COPY`` and matches it with one hash join, and prints the
ratio of the two times. Each side is timed ``--runs`` times (3 by default; each reconciliation
a new upload of the file, its batch deleted after) and the ratio is of the medians, so that a
hiccup of the machine on either side does not decide it. The target is a ratio of at most 3.

Each run makes a bank partner of its own (named after the run) with one real credit draw,
created through the services: a patient, a credit line, an outpatient encounter with one charge,
settled while the insurer is unreachable so the whole bill is drawn on credit. The N items are
benchmark rows bulk-inserted with ``COPY``, all pointing at that draw's receivable; they and the
batch are deleted at the end, while the partner, the real draw and their ledger transactions
stay, so ``manage.py verify_ledger`` still finds the ledger intact.

The items' references are scattered, as real draws' references are random (sequential ones
would make every index insert land on the same page). The statement is generated from
``--seed``: about 98% of its lines pay an item exactly, 1% pay
an item the wrong amount, 1% carry a reference nobody knows, and a few pay an item a second
time. The batch's counts are checked against what was generated.

The reconciliation is timed from the upload (``statement_batch_create``: storing the file in
the database, the hash and the check of every line) to the end of ``batch_run`` (staging the
lines in the database, then matching them, writing the results, the missing items and the
totals), called here rather than by a worker, and with Django's query log off even when
``DEBUG`` is on, as in a production worker. Memory is the process's maximum resident set
size after those passes. Tracing Python allocations slows them several times over, so the
peak of Python allocations is taken by one more pass under ``tracemalloc``, against the same
items (``--no-tracemalloc`` skips it).
"""

import contextlib
import random
import resource
import secrets
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction
from django.test.utils import override_settings
from django.utils import timezone
from stdnum.cn import ric

from accounts.exceptions import PersonExists
from accounts.models import Department, Institution, Partner
from accounts.services.credit_lines import credit_line_grant
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create
from accounts.services.persons import person_create
from core.money import fen_to_yuan
from settlement.exceptions import SettlementInputError
from settlement.insurer.client import InsurerClient
from settlement.models import CreditMovement, Encounter, Receivable
from settlement.reconciliation.batches import batch_run, statement_batch_create
from settlement.reconciliation.models import ReconBatch, ReconItem
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.settle import encounter_settle

ACTOR = "command:recon_bench"
INSTITUTION = "RECONBENCH"  # the benchmark's hospital: its statement, its items
INSURER_DOWN = "http://127.0.0.1:9"  # nothing listens: the bill is all self-pay, on credit
DRAW = 10_000  # fen, the one real draw
TARGET = 3.0
BORN = (date(1950, 1, 1), date(2000, 1, 1))  # the made-up patient's birth date

_COPY_ITEMS = (
    "COPY settlement_creditmovement"
    " (reference, partner_id, institution_id, receivable_id, kind, amount, business_date,"
    " created_at)"
    " FROM STDIN"
)
_STATEMENT_TABLE = (
    "CREATE TEMP TABLE recon_bench_stmt"
    " (bank_txn_id text, value_date date, amount numeric(17, 2), reference text)"
)
# The file's bytes as they are: COPY parses the CSV, the dates and the yuan amounts itself.
_COPY_STATEMENT = "COPY recon_bench_stmt FROM STDIN (FORMAT csv, HEADER true)"
# One pass over each side: PostgreSQL plans a hash join (checked with EXPLAIN and printed),
# hashing one side and probing it with the other.
_JOIN = (
    "SELECT count(*) FILTER (WHERE m.amount = s.amount * 100),"
    " count(*) FILTER (WHERE m.amount <> s.amount * 100),"
    " count(*) FILTER (WHERE m.reference IS NULL)"
    " FROM recon_bench_stmt s LEFT JOIN settlement_creditmovement m"
    " ON m.reference = s.reference AND m.partner_id = %s AND m.institution_id = %s"
)


@dataclass
class Statement:
    """A generated statement file and the counts its batch should end with."""

    path: Path
    lines: int
    expected: dict[str, int] = field(default_factory=dict)


@dataclass
class Measured:
    """What one reconciliation of the statement took."""

    create: float
    run: float
    rss_before: int
    rss_max: int
    counts: dict[str, int]
    peak_python: int | None = None

    @property
    def seconds(self) -> float:
        return self.create + self.run


def _max_rss() -> int:
    """Return the largest resident set size of this process so far, in bytes (Linux: KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _scattered(number: int) -> str:
    """The item number as ten digits in no particular order, like the random references of
    real draws (``DR`` + part of a UUID): a bijection on 32 bits, so never twice the same."""
    return f"{number * 2654435761 % 2**32:010d}"


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


class Command(BaseCommand):
    help = (
        "Reconcile a generated bank statement of N lines against N bulk-inserted ledger items "
        "on PostgreSQL; print lines/s and peak memory next to the time PostgreSQL needs for a "
        "COPY and a hash join of the same data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--lines", type=int, default=100_000, help="Statement lines.")
        parser.add_argument("--seed", type=int, default=1, help="Seed of the generated data.")
        parser.add_argument(
            "--runs",
            type=int,
            default=3,
            help="Timed runs of each side, an odd number; the ratio is of their medians (3).",
        )
        parser.add_argument(
            "--no-tracemalloc",
            action="store_true",
            help="Do not trace Python allocations (faster, no peak Python figure).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                f"recon_bench measures PostgreSQL, but the default database is "
                f"{connection.vendor}. Set DATABASE_URL to a PostgreSQL database."
            )
        lines, seed, runs = options["lines"], options["seed"], options["runs"]
        if lines < 100:
            raise CommandError("--lines must be at least 100.")
        if runs < 1 or runs % 2 == 0:
            raise CommandError("--runs must be an odd number (its median is one of the runs).")
        run = secrets.token_hex(3).upper()
        self.stdout.write(f"run {run}: setting up a bank partner with one real credit draw")
        partner, receivable = self._setup(run)
        prefix = f"BX{run}"
        try:
            with TemporaryDirectory(prefix="recon_bench-") as folder:
                statement = self._generate(
                    Statement(Path(folder) / f"statement-{run}.csv", lines),
                    partner,
                    receivable,
                    prefix,
                    seed,
                )
                # With DEBUG on, Django keeps the text of every query (the last 9000): some
                # 170 MB at a million lines, that a production worker (DEBUG off) never holds.
                with override_settings(DEBUG=False):
                    passes = []
                    for _ in range(runs):  # each a new upload of the file: a new batch
                        passes.append(self._reconcile(statement, partner, trace=False))
                        self._forget_batches(partner)
                    traced = None
                    if not options["no_tracemalloc"]:
                        traced = self._reconcile(statement, partner, trace=True)
                baselines = [self._postgres(statement, partner) for _ in range(runs)]
        finally:
            self._forget_batches(partner)
            self._forget_items(partner, prefix)
        measured = sorted(passes, key=lambda result: result.seconds)[runs // 2]  # the median
        baseline, pg_counts, plan = sorted(baselines)[runs // 2]
        peak = "n/a" if traced is None else _megabytes(traced.peak_python or 0)
        self.stdout.write(
            f"reconcile  N={lines}  {_seconds(measured.seconds)}  "
            f"{lines / measured.seconds:.0f} lines/s  peak python {peak}  "
            f"max rss {measured.rss_max / 2**20:.0f} MB  counts {measured.counts}"
        )
        self.stdout.write(
            f"           upload (store, hash, check) {_seconds(measured.create)}, "
            f"batch_run {_seconds(measured.run)}; max rss before reconciling "
            f"{measured.rss_before / 2**20:.0f} MB"
        )
        self.stdout.write(
            f"           median of {runs}: "
            + ", ".join(_seconds(result.seconds) for result in passes)
        )
        if traced is not None:
            self.stdout.write(
                f"           the pass under tracemalloc took {_seconds(traced.seconds)}"
            )
        self.stdout.write(f"postgres   N={lines}  COPY+hash join {_seconds(baseline)}  {pg_counts}")
        self.stdout.write(
            f"           median of {runs}: "
            + ", ".join(_seconds(seconds) for seconds, *_ in baselines)
        )
        self.stdout.write(f"           plan: {plan}")
        ratio = measured.seconds / baseline
        self.stdout.write(f"ratio reconcile/postgres: {ratio:.1f} (target ≤ {TARGET:g})")
        for result in (*passes, traced):
            if result is not None and result.counts != statement.expected:
                raise CommandError(
                    f"the batch counted {result.counts}, but the statement was generated to "
                    f"give {statement.expected}"
                )

    # --- set-up -----------------------------------------------------------------------------

    def _setup(self, run: str) -> tuple[Partner, Receivable]:
        """Create the run's bank and one real credit draw on it through the services."""
        partner, _, _ = partner_create(actor=ACTOR, name=f"recon_bench {run}")
        institution = institution_ensure(actor=ACTOR, code=INSTITUTION, name="recon_bench hospital")
        department = department_ensure(
            actor=ACTOR, institution=institution, code="RB", name="recon_bench"
        )
        Department.objects.filter(pk=department.pk).update(default_deposit=0)
        department.refresh_from_db()
        person, id_number = None, ""
        rng = random.Random()  # noqa: S311 - a made-up patient, not a secret
        for _ in range(50):  # an ID number nobody has yet
            birth = date.fromordinal(rng.randrange(BORN[0].toordinal(), BORN[1].toordinal()))
            base = f"350203{birth:%Y%m%d}{rng.randrange(1, 1000):03d}"
            id_number = base + ric.calc_check_digit(base + "0")
            try:
                person = person_create(actor=ACTOR, name="对账压测", id_number=id_number)
            except PersonExists:
                continue
            break
        if person is None:
            raise CommandError("could not find an unused ID number for the benchmark patient")
        credit_line_grant(
            actor=ACTOR,
            partner=partner,
            id_number=id_number,
            name=person.name,
            score=650,
            score_provider="recon_bench",
        )
        encounter = encounter_admit(
            actor=ACTOR, person=person, department=department, kind="outpatient"
        )
        charges_post(
            actor=ACTOR,
            encounter_id=encounter.pk,
            items=[ChargeItem("C1", "诊查", "exam", "C", Decimal(1), DRAW, timezone.localdate())],
            key=f"recon_bench:{encounter.pk}",
        )
        encounter_settle(
            actor=ACTOR,
            encounter_id=encounter.pk,
            client=InsurerClient(base_url=INSURER_DOWN, timeout=1),
        )
        receivable = Receivable.objects.filter(encounter=encounter).first()
        if receivable is None:
            raise CommandError("the benchmark encounter was not settled on credit")
        return partner, receivable

    def _generate(
        self, statement: Statement, partner: Partner, receivable: Receivable, prefix: str, seed: int
    ) -> Statement:
        """Insert the N items with COPY and write the statement, in one pass, from ``seed``."""
        lines = statement.lines
        institution = Encounter.objects.get(pk=receivable.encounter_id).institution_id
        self.stdout.write(
            f"inserting {lines} benchmark items (bulk COPY, not posted through the services) "
            f"and writing {statement.path.name}"
        )
        rng = random.Random(seed)  # noqa: S311 - reproducible benchmark data
        repeats = set(rng.sample(range(1, lines), max(2, lines // 10_000)))
        expected = dict.fromkeys(ReconItem.Kind.values, 0)
        expected[ReconItem.Kind.MISSING] = 1  # the real draw: not on the statement
        today, now = timezone.localdate(), timezone.now()
        paid_exactly: tuple[str, int] | None = None
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(_COPY_ITEMS) as copy,
            statement.path.open("w", encoding="utf-8", newline="") as out,
        ):
            out.write("bank_txn_id,value_date,amount,reference\n")
            for number in range(lines):
                reference, amount = f"{prefix}{_scattered(number)}", rng.randint(1, 100_000)
                copy.write_row(
                    (reference, partner.pk, institution, receivable.pk, "draw", amount, today, now)
                )
                draw = rng.random()
                if number in repeats and paid_exactly is not None:
                    (paid_reference, paid), kind = paid_exactly, ReconItem.Kind.DUPLICATE
                    expected[ReconItem.Kind.MISSING] += 1
                elif draw < 0.01:
                    paid_reference, paid = reference, amount + 1
                    kind = ReconItem.Kind.AMOUNT_MISMATCH
                elif draw < 0.02:
                    paid_reference, paid = f"BU{prefix[2:]}{number:09d}", amount
                    kind = ReconItem.Kind.UNKNOWN_REFERENCE
                    expected[ReconItem.Kind.MISSING] += 1
                else:
                    paid_reference, paid, kind = reference, amount, ReconItem.Kind.MATCHED
                    paid_exactly = (reference, amount)
                expected[kind] += 1
                out.write(
                    f"T{prefix[2:]}{number:09d},{today},{fen_to_yuan(paid)},{paid_reference}\n"
                )
                if (number + 1) * 10 // lines > number * 10 // lines:
                    self.stdout.write(f"  generated {number + 1}/{lines}")
        with connection.cursor() as cursor:
            # As a day's draws would be by the time a statement arrives: vacuumed (their hint
            # bits set, so the first scan does not dirty every page) and analysed. Then the
            # set-up's pages are written out, so that its checkpoint does not land in the
            # measured part (allowed to superusers and members of pg_checkpoint only).
            cursor.execute("VACUUM (ANALYZE) settlement_creditmovement")
            # The results of earlier runs, deleted at their end, leave dead rows that
            # autovacuum may not have reached yet.
            cursor.execute("VACUUM settlement_reconitem, settlement_reconpaid")
            with contextlib.suppress(DatabaseError), transaction.atomic():
                cursor.execute("CHECKPOINT")
        self.stdout.write(f"  done in {_seconds(time.perf_counter() - started)} (not measured)")
        statement.expected = expected
        return statement

    # --- measuring --------------------------------------------------------------------------

    def _reconcile(self, statement: Statement, partner: Partner, *, trace: bool) -> Measured:
        """Upload the statement and run its batch here, measuring time and memory."""
        rss_before = _max_rss()
        if trace:
            tracemalloc.start()
        self.stdout.write(
            f"reconciling{' under tracemalloc' if trace else ''}: upload (store, hash, check)"
        )
        started = time.perf_counter()
        # Not queued for a worker (it would race this process for the batch); batch_run is
        # called here, directly.
        try:
            with statement.path.open("rb") as stream:
                batch, created = statement_batch_create(
                    actor=ACTOR,
                    institution=Institution.objects.get(code=INSTITUTION),
                    partner=partner,
                    stream=stream,
                    file_name=statement.path.name,
                    enqueue=False,
                )
        except SettlementInputError as error:
            raise CommandError(f"the generated statement was refused: {error}") from None
        uploaded = time.perf_counter()
        if not created:
            raise CommandError("the upload did not make a new batch")
        self.stdout.write(f"  uploaded in {_seconds(uploaded - started)}; running batch {batch.pk}")
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(batch.pk, statement.lines, stop), daemon=True
        )
        watcher.start()
        try:
            batch = batch_run(batch.pk)
        finally:
            stop.set()
            watcher.join()
        finished = time.perf_counter()
        self.stdout.write(f"  batch {batch.status} in {_seconds(finished - uploaded)}")
        peak: int | None = None
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if batch.status != ReconBatch.Status.DONE:
            raise CommandError(f"the batch ended {batch.status}: {batch.error}")
        return Measured(
            create=uploaded - started,
            run=finished - uploaded,
            peak_python=peak,
            rss_before=rss_before,
            rss_max=_max_rss(),
            counts={kind: batch.counts.get(kind, 0) for kind in ReconItem.Kind.values},
        )

    def _watch(self, batch_id: UUID, total: int, stop: threading.Event) -> None:
        """Print the batch's progress at each tenth, read as a worker's progress bar would."""
        shown = 0
        try:
            while not stop.wait(0.5) and shown < 10:
                done = (
                    ReconBatch.objects.filter(pk=batch_id)
                    .values_list("progress_done", flat=True)
                    .first()
                ) or 0
                if done * 10 // total > shown:
                    shown = done * 10 // total
                    self.stdout.write(f"  staged {done}/{total} lines")
            if shown == 10 and not stop.wait(0.5):
                self.stdout.write("  matching every line, listing the missing items, totals")
        finally:
            connection.close()  # this thread's own connection

    def _postgres(self, statement: Statement, partner: Partner) -> tuple[float, str, str]:
        """Time PostgreSQL loading the same file and matching it with a hash join."""
        self.stdout.write("postgres: COPY of the same file and a hash join")
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS recon_bench_stmt")
            cursor.execute(_STATEMENT_TABLE)
            try:
                started = time.perf_counter()
                with (
                    cursor.cursor.copy(_COPY_STATEMENT) as copy,
                    statement.path.open("rb") as stream,
                ):
                    while data := stream.read(1 << 20):
                        copy.write(data)
                where = [partner.pk, Institution.objects.get(code=INSTITUTION).pk]
                cursor.execute(_JOIN, where)
                row = cursor.fetchone()
                seconds = time.perf_counter() - started
                cursor.execute("EXPLAIN " + _JOIN, where)
                plan = [line for (line,) in cursor.fetchall()]
            finally:
                cursor.execute("DROP TABLE IF EXISTS recon_bench_stmt")
        assert row is not None  # noqa: S101 - an aggregate always returns a row
        counts = f"matched {row[0]}, amount differs {row[1]}, unknown {row[2]}"
        joins = [
            line.strip().removeprefix("->").strip().split("  ")[0]
            for line in plan
            if "Join" in line or "Nested Loop" in line
        ]
        return seconds, counts, ", ".join(joins) or plan[0]

    # --- cleaning up ------------------------------------------------------------------------

    def _forget_batches(self, partner: Partner) -> None:
        """Delete the bank's batches, their results and their stored files."""
        batches = ReconBatch.objects.filter(partner=partner)
        ReconItem.objects.filter(batch__in=batches).delete()
        batches.delete()

    def _forget_items(self, partner: Partner, prefix: str) -> None:
        """Delete the benchmark items; the bank keeps its one real draw."""
        started = time.perf_counter()
        deleted, _ = CreditMovement.objects.filter(
            partner=partner, reference__startswith=prefix
        ).delete()
        self.stdout.write(
            f"cleaned up in {_seconds(time.perf_counter() - started)}: the batches and "
            f"{deleted} benchmark items deleted; bank {partner.name!r} keeps its one real draw"
        )
