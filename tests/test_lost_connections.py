"""Kept database connections that PostgreSQL ends: the next requests must not fail.

gunicorn runs under production settings, keeping connections for 60 s (``CONN_MAX_AGE``, as in
production; the test settings keep none), against the test database. When PostgreSQL restarts
or an administrator ends the connections, each kept one is dead; without health checks every
one of them served its next request a 500. With ``CONN_HEALTH_CHECKS`` a dead connection is
replaced before a request uses it.
"""

from pathlib import Path

import psycopg
import pytest
from django.db import connection

from accounts.services.staff import staff_create
from tests.factories import home_institution
from tests.postgres import admin_connection, end_connections
from tests.test_deployment import HTTPS, Server, database_url, production_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WEB = "lost-connections-web"  # the server's application_name, to find its connections
THREADS = 4


def server_backends(admin: psycopg.Connection) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
        [connection.settings_dict["NAME"], WEB],
    ).fetchall()
    return [pid for (pid,) in rows]


def test_requests_after_postgresql_ends_every_kept_connection_all_succeed(tmp_path: Path):
    _, token = staff_create(
        actor="test", institution=home_institution(), username="night-cashier", role="cashier"
    )
    headers = {**HTTPS, "Authorization": f"Token {token}"}
    admin = admin_connection()
    server = Server(
        production_env(
            tmp_path,
            DATABASE_URL=f"{database_url()}?application_name={WEB}",
            DATABASE_CONN_MAX_AGE="60",
            # Several threads, each keeping a connection of its own (the command line's
            # --workers 1 stays).
            GUNICORN_CMD_ARGS=f"--threads {THREADS}",
        )
    )
    try:
        for _ in range(4 * THREADS):
            status, _, body = server.get("/api/v1/insurance/claims/", headers)
            assert status == 200, body
        kept = server_backends(admin)
        assert kept, "the server keeps no connection"

        # An administrator (or a restart) ends them all while the server is idle.
        assert end_connections(admin, WEB) == len(kept)

        answers = []
        for _ in range(60):
            status, _, body = server.get("/api/v1/insurance/claims/", headers)
            answers.append((status, body[:200]))
        assert [status for status, _ in answers] == [200] * 60, [
            answer for answer in answers if answer[0] != 200
        ]
        assert not set(server_backends(admin)) & set(kept)  # replaced, not revived
    finally:
        server.stop()
        admin.close()
