"""Database connection helpers every app may use (Django only, no app)."""

from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")


def again_if_disconnected(work: Callable[[], T]) -> T:
    """Run ``work``; when it fails because the database connection died (PostgreSQL restarted,
    an administrator ended it), run it once more on a new connection.

    For clean-up after a failure, outside any transaction: inside one, what the transaction did
    went with the old connection, and the error stands.
    """
    try:
        return work()
    except (OperationalError, InterfaceError):
        alive = connection.connection is not None and connection.is_usable()
        if connection.in_atomic_block or alive:
            raise
        connection.close()
        return work()
