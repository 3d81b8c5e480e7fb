"""Database connection helpers every app may use (Django only, no app)."""

from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")


def again_if_disconnected(work: Callable[[], T]) -> T:
    """Run ``work``; when it fails because the database connection died (PostgreSQL restarted,
    an administrator ended it), run it once more on a new connection.

    For work outside any transaction that is safe to run twice (a clean-up after a failure, a
    record that a first try may or may not have stored): inside a transaction, what it did went
    with the old connection, and the error stands. The connection counts as dead when it no
    longer answers or when Django dropped it as the work failed (a transaction, ``atomic``,
    that fails on a dead connection closes it as it ends).
    """
    if not connection.in_atomic_block:
        connection.ensure_connection()
    before = connection.connection
    try:
        return work()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        if connection.connection is before and before is not None and connection.is_usable():
            raise  # the connection it ran on still works: the failure was the work's own
        connection.close()
        return work()
