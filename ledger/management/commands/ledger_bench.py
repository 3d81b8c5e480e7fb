"""Posting throughput of ``ledger.services`` next to hand-written SQL and to django-hordak.

``manage.py ledger_bench --transfers N --clients C[,C...] [--batch B] [--runs R]
[--peer hordak]`` posts N two-leg transfers from C threads through ``ledger.services``, then
through plain psycopg statements doing the same work (and, with ``--peer hordak``, through
django-hordak's ``transfer_to`` in a subprocess on a database of its own), R times in
alternation, and prints the medians and their ratios in one table.

Each run gets accounts of its own on the "credit" ledger: credit lines with
``debits_must_not_exceed_credits``, each funded with a grant large enough that the limit is
checked by every posting and never reached, and a hot house account with several balance
slots; then ``ANALYZE``. A transfer debits a random credit line, credits the house account and
has a key of its own. With ``--batch 1`` each transfer is posted by itself (``transfer``, one
database transaction each); with ``--batch B`` the services post B transfers with one
``transfers_post`` call (linked) and the SQL script posts B per database transaction, and a
run of single postings through the services is added to show what batching gains. A batch
posts in account order, as a careful caller would; a batch that still deadlocks is retried
and counted.

The bench writes ledger rows into the database it runs on, so it refuses one whose name
contains neither "bench" nor "test" unless ``--i-know`` is given.

Postings queue themselves for the hash chain and the beat task seals the queue; after each run
the bench seals what the run queued (not timed into the run) and prints how fast that went, so
the sealer's pace can be compared with the posting rate. ``manage.py verify_ledger`` finds the
ledger intact afterwards.
"""

import functools
import hashlib
import json
import math
import os
import queue
import random
import secrets
import statistics
import subprocess  # noqa: S404 - runs the peer bench in our own interpreter
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict

from core.bench import as_in_production
from ledger import services
from ledger.ids import uuid7
from ledger.models import Account, Ledger, Side, Transaction

LINES = 200
HOT_SLOTS = 16
GRANT = 10**12  # fen per credit line, far beyond what a run spends
WARMUP = 10  # transfers per client before the clock starts
SINGLE = "services one by one"
BENCH_NAMES = ("bench", "test")  # a database named with one of these may take bench rows

_CLAIM = (
    "INSERT INTO ledger_idempotencyrecord (key, request_hash, result_type, result_id, created_at)"
    " VALUES (%s, %s, 'transaction', %s, %s) ON CONFLICT (key) DO NOTHING RETURNING key"
)
_DEBIT_LIMITED = (
    "UPDATE ledger_balanceslot SET debits_posted = debits_posted + %(amount)s"
    " WHERE account_id = %(account)s AND slot = %(slot)s"
    " AND debits_posted + debits_pending + %(amount)s <= credits_posted"
)
_CREDIT = (
    "UPDATE ledger_balanceslot SET credits_posted = credits_posted + %(amount)s"
    " WHERE account_id = %(account)s AND slot = %(slot)s"
)
_INSERT_TRANSACTION = (
    "INSERT INTO ledger_transaction (id, ledger, kind, reference, description, created_at, legs)"
    " VALUES (%s, %s, 'transfer', '', '', %s, 2)"
)
_INSERT_ENTRIES = (
    "INSERT INTO ledger_entry (transaction_id, account_id, amount, ledger, leg, legs)"
    " VALUES (%s, %s, %s, %s, 0, 2), (%s, %s, %s, %s, 1, 2)"
)
_QUEUE = "INSERT INTO ledger_chainqueue (transaction_id, ledger, created_at) VALUES (%s, %s, %s)"


@dataclass(frozen=True)
class Transfer:
    key: str
    line: Account
    amount: int


class ServicesPoster:
    """Posts a transfer with ``transfer`` or a batch with one linked ``transfers_post`` call."""

    def __init__(self, hot: Account) -> None:
        self.hot = hot

    def post(self, batch: list[Transfer]) -> None:
        if len(batch) == 1:  # one posting commits by itself, as a lone caller's does
            item = batch[0]
            services.transfer(key=item.key, debit=item.line, credit=self.hot, amount=item.amount)
            return
        results = services.transfers_post(
            [
                services.TransferRequest(
                    key=item.key, debit=item.line, credit=self.hot, amount=item.amount
                )
                for item in batch
            ],
            linked=True,
        )
        if len(results) != len(batch):
            raise CommandError("transfers_post returned a result per transfer")

    def close(self) -> None:
        """The client thread closes its Django connection itself."""


class SqlPoster:
    """Posts a batch with prepared hand-written statements on a psycopg connection of its own."""

    def __init__(self, hot: Account, params: dict[str, Any]) -> None:
        self.hot = hot
        # Fixed per connection, as services._slot_for.
        self.slot = random.randrange(1 << 30) % hot.balance_slots  # noqa: S311 - load spreading
        self.conn = psycopg.connect(**params)

    def post(self, batch: list[Transfer]) -> None:
        try:
            with self.conn.cursor() as cursor:
                for item in batch:
                    self._transfer(cursor, item)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def _transfer(self, cursor: psycopg.Cursor[Any], item: Transfer) -> None:
        line, hot, amount = item.line, self.hot, item.amount
        legs = sorted([(line.pk, amount), (hot.pk, -amount)])
        request = {"op": "transaction_post", "legs": legs, "reference": "", "description": ""}
        payload = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
        txn_id, now = uuid7(), timezone.now()
        claim = (item.key, hashlib.sha256(payload).hexdigest(), txn_id, now)
        cursor.execute(_CLAIM, claim, prepare=True)
        if cursor.fetchone() is None:
            raise CommandError(f"key {item.key} was used before")
        updates = [  # in account order, as services._apply_balances
            (line.pk, _DEBIT_LIMITED, {"amount": amount, "account": line.pk, "slot": 0}),
            (hot.pk, _CREDIT, {"amount": amount, "account": hot.pk, "slot": self.slot}),
        ]
        for _, sql, params in sorted(updates, key=lambda update: update[0]):
            if cursor.execute(sql, params, prepare=True).rowcount != 1:
                raise CommandError(f"the limit of {line.code} is reached")
        cursor.execute(_INSERT_TRANSACTION, (txn_id, line.ledger, now), prepare=True)
        entries = (txn_id, line.pk, amount, line.ledger, txn_id, hot.pk, -amount, line.ledger)
        cursor.execute(_INSERT_ENTRIES, entries, prepare=True)
        cursor.execute(_QUEUE, (txn_id, line.ledger, now), prepare=True)

    def close(self) -> None:
        self.conn.close()


Poster = ServicesPoster | SqlPoster


def _deadlocked(exc: BaseException) -> bool:
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    return isinstance(cause, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def _percentile(values: list[float], percent: int) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * percent / 100) - 1)]


@dataclass
class Run:
    """One measured run; its client threads share it."""

    label: str
    prefix: str
    hot: Account
    lines: list[Account]
    poster: Callable[[Account], Poster]
    transfers: int
    batch: int
    work: "queue.SimpleQueue[int]" = field(default_factory=queue.SimpleQueue)
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    done: int = 0
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds: float = 0.0

    def make_batch(self, rng: random.Random, name: str, first: int, size: int) -> list[Transfer]:
        batch = [
            Transfer(
                f"{self.prefix}:{name}:{first + i}", rng.choice(self.lines), rng.randint(1, 10**6)
            )
            for i in range(size)
        ]
        # Account order: concurrent batches then lock rows in one order and do not deadlock.
        return sorted(batch, key=lambda item: item.line.pk)

    def post(self, poster: Poster, batch: list[Transfer]) -> int:
        """Post a batch, again after a deadlock (its keys were rolled back); return the retries."""
        for retries in range(100):
            try:
                poster.post(batch)
            except Exception as exc:
                if not _deadlocked(exc):
                    raise
            else:
                return retries
        raise CommandError(f"{self.label}: a batch deadlocked 100 times")

    def record(self, latency: float, size: int, retries: int) -> int | None:
        """Count a posted batch; return the transfers done when that crosses a tenth of all."""
        with self.lock:
            self.latencies.append(latency)
            self.retries += retries
            before, self.done = self.done, self.done + size
            if self.done * 10 // self.transfers > before * 10 // self.transfers:
                return self.done
        return None


@dataclass(frozen=True)
class Result:
    """What one run measured: its wall time and batch latencies in milliseconds."""

    seconds: float
    p50: float
    p99: float
    retries: int

    @classmethod
    def of(cls, seconds: float, run: "Run") -> "Result":
        return cls(
            seconds,
            _percentile(run.latencies, 50) * 1000,
            _percentile(run.latencies, 99) * 1000,
            run.retries,
        )

    def rate(self, transfers: int) -> float:
        return transfers / self.seconds


def _median(results: list[Result]) -> Result:
    """The run of median wall time (an odd count gives a run that happened)."""
    ordered = sorted(results, key=lambda result: result.seconds)
    middle = ordered[(len(ordered) - 1) // 2]
    return Result(
        statistics.median(result.seconds for result in results),
        middle.p50,
        middle.p99,
        middle.retries,
    )


def _client_counts(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CommandError(f"--clients takes numbers separated by commas, not {text!r}") from exc


def _analyze() -> None:
    """Fresh planner statistics after set-up, as a long-running database would have."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _peer_database_url() -> str:
    """This database's server and credentials, with ``_hordak`` appended to its name."""
    db = connection.settings_dict
    password = f":{quote(str(db['PASSWORD']), safe='')}" if db["PASSWORD"] else ""
    user = quote(str(db["USER"] or ""), safe="")
    host = db["HOST"] or "localhost"
    port = db["PORT"] or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}_hordak"


def _create_database(database_url: str) -> None:
    """Create the peer's database on the same server if it does not exist yet."""
    info = conninfo_to_dict(database_url)
    name = str(info["dbname"])
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))


class Command(BaseCommand):
    help = (
        "Post N two-leg transfers on PostgreSQL through ledger.services and through plain SQL "
        "doing the same work (and, with --peer hordak, through django-hordak's transfer_to); "
        "print transfers/s and p50/p99 batch latency of each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--transfers", type=int, default=5000, help="Measured transfers.")
        parser.add_argument(
            "--clients", default=None, help="Client threads, or a comma list such as 1,4."
        )
        parser.add_argument("--batch", type=int, default=1, help="Transfers per transaction.")
        parser.add_argument(
            "--runs", type=int, default=None, help="Alternating runs of each; medians are shown."
        )
        parser.add_argument(
            "--peer",
            choices=["hordak"],
            default=None,
            help="Also run django-hordak 2.x transfer_to in a subprocess on its own database.",
        )
        parser.add_argument(
            "--i-know",
            action="store_true",
            help="Run even on a database not named for benches or tests (it writes ledger rows).",
        )
        parser.add_argument(
            "--peer-database-url",
            default=None,
            help="The peer's database (default: this database's name with _hordak appended).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                f"ledger_bench measures PostgreSQL, but the default database is "
                f"{connection.vendor}. Set DATABASE_URL to a PostgreSQL database."
            )
        name = str(connection.settings_dict["NAME"])
        if not options["i_know"] and not any(word in name.lower() for word in BENCH_NAMES):
            raise CommandError(
                f"ledger_bench writes accounts, transfers and chain links straight into the "
                f"ledger of the database it runs on, and {name!r} is not named as a bench or "
                f"test database. Run it on a database whose name contains "
                f"{' or '.join(repr(word) for word in BENCH_NAMES)}, or pass --i-know."
            )
        peer = options["peer"]
        transfers, batch = options["transfers"], options["batch"]
        clients_list = _client_counts(options["clients"] or ("1,4" if peer else "4"))
        runs = options["runs"] or (3 if peer else 1)
        if min(transfers, batch, runs, *clients_list) < 1:
            raise CommandError("--transfers, --clients, --batch and --runs must be at least 1.")
        # Plain psycopg: without Django's cursor class, adapters and client-side binding.
        params = {
            name: value
            for name, value in connection.get_connection_params().items()
            if name not in {"cursor_factory", "context", "prepare_threshold"}
        }
        peer_url = None
        if peer:
            peer_url = options["peer_database_url"] or _peer_database_url()
        prefix = f"bench:{timezone.now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        self.stdout.write(f"setting up {prefix}: {LINES} credit lines per run")
        posters: list[tuple[str, str, Callable[[Account], Poster], int]] = [
            ("django services", "svc", ServicesPoster, batch),
            ("sql only", "sql", functools.partial(SqlPoster, params=params), batch),
        ]
        if batch > 1:  # what the batch call gains over posting one by one
            posters.append((SINGLE, "one", ServicesPoster, 1))
        rows = []
        for clients in clients_list:
            results: dict[str, list[Result]] = {}
            for number in range(runs):
                for label, tag, poster, size in posters:
                    run_prefix = f"{prefix}:{tag}:c{clients}:r{number}"
                    hot, lines = self._accounts(run_prefix)
                    _analyze()
                    run = Run(label, run_prefix, hot, lines, poster, transfers, size)
                    with as_in_production():
                        self._measure(run, clients)
                    results.setdefault(label, []).append(Result.of(run.seconds, run))
                    self._print(results[label][-1], label, transfers, clients, size)
                    self._seal(transfers)
                if peer_url is not None:
                    result = self._peer(peer_url, transfers, clients)
                    results.setdefault("hordak", []).append(result)
                    self._print(result, "django-hordak", transfers, clients, 1)
            rows.append((clients, {label: _median(items) for label, items in results.items()}))
        self._table(rows, transfers, batch, runs)

    def _seal(self, transfers: int) -> None:
        """Seal what the run queued, as the beat task would, and say how fast (not timed in)."""
        started = time.perf_counter()
        sealed = services.chain_seal()
        seconds = time.perf_counter() - started
        self.stdout.write(
            f"  sealed {sealed} transactions in {seconds:.2f} s"
            f" ({sealed / max(seconds, 1e-9):,.0f}/s) after {transfers} postings"
        )

    def _print(
        self, result: "Result", label: str, transfers: int, clients: int, batch: int
    ) -> None:
        self.stdout.write(
            f"{label:<17} N={transfers} C={clients} B={batch}  {result.rate(transfers):8.1f}"
            f" transfers/s  p50 {result.p50:.1f} ms  p99 {result.p99:.1f} ms"
            + (f"  ({result.retries} deadlocks retried)" if result.retries else "")
        )

    def _table(
        self, rows: list[tuple[int, dict[str, "Result"]]], transfers: int, batch: int, runs: int
    ) -> None:
        """One table: the medians of each client count, ours beside the peers, and the ratios."""
        self.stdout.write(f"\nmedians of {runs} alternating runs, {transfers} transfers each")
        peer = any("hordak" in results for _, results in rows)
        header = "| clients | batch | services /s | p50 / p99 ms | sql only /s | services/sql |"
        if batch > 1:
            header += " one by one /s | batch/one |"
        if peer:
            header += " hordak /s | services/hordak |"
        self.stdout.write(header)
        self.stdout.write("|" + " --- |" * (header.count("|") - 1))
        for clients, results in rows:
            ours, sql = results["django services"], results["sql only"]
            rate = ours.rate(transfers)
            line = (
                f"| {clients} | {batch} | {rate:,.0f} | {ours.p50:.1f} / {ours.p99:.1f} |"
                f" {sql.rate(transfers):,.0f} | {rate / sql.rate(transfers):.2f} |"
            )
            if batch > 1:
                single = results[SINGLE].rate(transfers)
                line += f" {single:,.0f} | {rate / single:.2f} |"
            if peer:
                hordak = results["hordak"]
                line += f" {hordak.rate(transfers):,.0f} | {rate / hordak.rate(transfers):.2f} |"
            self.stdout.write(line)

    def _peer(self, database_url: str, transfers: int, clients: int) -> "Result":
        """One django-hordak run in a subprocess of its own (hordak is not in our settings).

        hordak has no batch call: it posts one ``transfer_to`` per database transaction.
        """
        _create_database(database_url)
        env = {**os.environ, "HORDAK_PEER_DATABASE_URL": database_url}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        command = [sys.executable, "-m", "tests.ledger.peer_hordak.run"]
        command += ["--transfers", str(transfers), "--clients", str(clients)]
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            command,
            env=env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise CommandError(f"the hordak peer failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        latencies = [float(value) for value in report["latencies"]]
        return Result(
            float(report["seconds"]),
            _percentile(latencies, 50) * 1000,
            _percentile(latencies, 99) * 1000,
            0,
        )

    def _accounts(self, prefix: str) -> tuple[Account, list[Account]]:
        """Create a run's house account and credit lines and fund the lines (not measured)."""

        def create(name: str, side: str, **options: Any) -> Account:
            code = f"{prefix}:{name}"
            return services.account_create(
                code=code, ledger=Ledger.CREDIT, normal_side=side, **options
            )

        grantor = create("grantor", Side.DEBIT)
        hot = create("house", Side.CREDIT, balance_slots=HOT_SLOTS)
        lines = [
            create(f"line:{number}", Side.CREDIT, debits_must_not_exceed_credits=True)
            for number in range(LINES)
        ]
        with transaction.atomic():
            for line in lines:
                services.transfer(
                    key=f"{prefix}:grant:{line.pk}", debit=grantor, credit=line, amount=GRANT
                )
        return hot, lines

    def _measure(self, run: Run, clients: int) -> None:
        existing = Transaction.objects.filter(ledger=Ledger.CREDIT).count()
        self.stdout.write(f"  {run.label}: the credit ledger holds {existing} transactions")
        for first in range(0, run.transfers, run.batch):
            run.work.put(first)
        barrier = threading.Barrier(clients + 1)
        threads = [
            threading.Thread(target=self._client, args=(run, barrier, number), daemon=True)
            for number in range(clients)
        ]
        for thread in threads:
            thread.start()
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # a client failed while warming up; its error is raised below
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        run.seconds = time.perf_counter() - started
        errors = [exc for exc in run.errors if not isinstance(exc, threading.BrokenBarrierError)]
        if errors:
            raise CommandError(f"{run.label}: {errors[0]!r}") from errors[0]

    def _client(self, run: Run, barrier: threading.Barrier, number: int) -> None:
        """One client thread: its own connection, a warm-up, then batches until none are left."""
        rng = random.Random()  # noqa: S311 - picks benchmark accounts and amounts
        poster: Poster | None = None
        try:
            poster = run.poster(run.hot)
            for first in range(0, WARMUP, run.batch):
                size = min(run.batch, WARMUP - first)
                run.post(poster, run.make_batch(rng, f"warm{number}", first, size))
            barrier.wait()
            while not run.errors:
                try:
                    first = run.work.get_nowait()
                except queue.Empty:
                    break
                batch = run.make_batch(rng, "t", first, min(run.batch, run.transfers - first))
                started = time.perf_counter()
                retries = run.post(poster, batch)
                done = run.record(time.perf_counter() - started, len(batch), retries)
                if done is not None:
                    self.stdout.write(f"  {run.label}: {done}/{run.transfers} transfers")
        except BaseException as exc:
            run.errors.append(exc)
            barrier.abort()
        finally:
            if poster is not None:
                poster.close()
            connection.close()
