"""One measured run of django-hordak's ``Account.transfer_to``, printed as one JSON line.

``python -m tests.ledger.peer_hordak.run --transfers N --clients C`` (with
``HORDAK_PEER_DATABASE_URL`` set) migrates hordak's database if needed, creates a run's
accounts like ``ledger_bench`` does (200 accounts drawn from, one house account), runs
``ANALYZE``, lets each of C threads post a warm-up, then times N transfers, each
``transfer_to`` in its own database transaction, as a posting of ours is. hordak keeps no
limits, idempotency keys or hash chain, so this is the cheaper work of the two.
"""

import argparse
import json
import os
import queue
import random
import secrets
import sys
import threading
import time
from decimal import Decimal

import django

LINES = 200
WARMUP = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transfers", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.ledger.peer_hordak.settings"
    django.setup()

    from django.core.management import call_command
    from django.db import connection, transaction
    from djmoney.money import Money
    from hordak.models import Account, AccountType

    call_command("migrate", verbosity=0)
    prefix = secrets.token_hex(3)
    house = Account.objects.create(
        name=f"house {prefix}", type=AccountType.income, currencies=["CNY"]
    )
    lines = [
        Account.objects.create(
            name=f"line {prefix} {number}", type=AccountType.liability, currencies=["CNY"]
        )
        for number in range(LINES)
    ]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()

    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for number in range(args.transfers):
        work.put(number)
    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(args.clients + 1)

    def transfer(rng: random.Random) -> None:
        amount = Money(Decimal(rng.randint(1, 10**6)) / 100, "CNY")
        with transaction.atomic():
            rng.choice(lines).transfer_to(house, amount)

    def client() -> None:
        rng = random.Random()  # noqa: S311 - picks benchmark accounts and amounts
        try:
            for _ in range(WARMUP):
                transfer(rng)
            barrier.wait()
            while not errors:
                try:
                    work.get_nowait()
                except queue.Empty:
                    break
                started = time.perf_counter()
                transfer(rng)
                latencies.append(time.perf_counter() - started)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise SystemExit(f"hordak peer failed: {errors[0]!r}")
    json.dump({"seconds": seconds, "latencies": latencies}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
