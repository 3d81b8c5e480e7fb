"""Shared test set-up.

Tests marked ``postgres`` need PostgreSQL (triggers, row locks, real concurrency). Without
``DATABASE_URL`` the suite runs on SQLite and they skip, saying why; with
``REQUIRE_POSTGRES=1`` (set by ``.ci/run``) such a skip is a failure instead.
"""

import os

import pytest
from django.db import connection

pytest_plugins = ["tests.factories"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") is None or connection.vendor == "postgresql":
        return
    reason = "needs PostgreSQL: set DATABASE_URL=postgres://... to run it"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (REQUIRE_POSTGRES=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _forget_house_accounts():
    """Each test starts with the process's memory of house accounts empty: a test's database
    is rolled back or flushed after it, and an account remembered from it would be gone."""
    from settlement.services.house import forget_house_accounts

    forget_house_accounts()
