"""Threads racing on PostgreSQL, each with its own database connection."""

import threading
from collections.abc import Callable

from django.db import connection

THREADS = 8


def run_threads(work: Callable[[int], object], threads: int = THREADS) -> list[object]:
    """Run ``work(i)`` in ``threads`` threads started together; return results or exceptions."""
    start = threading.Barrier(threads)
    results: list[object] = [None] * threads

    def target(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except Exception as error:  # collected and asserted on by the test
            results[i] = error
        finally:
            connection.close()

    pool = [threading.Thread(target=target, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not [thread for thread in pool if thread.is_alive()], "a thread is stuck"
    return results
