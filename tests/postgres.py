"""Acting on the test database's server as an administrator does: from a connection to another
database, so that ending the test database's connections leaves this one standing."""

import psycopg
from django.db import connection


def admin_connection() -> psycopg.Connection:
    """An autocommit connection to the ``postgres`` database of the test database's server."""
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


def end_connections(admin: psycopg.Connection, application_name: str | None = None) -> int:
    """End every connection to the test database (only the named application's, if given),
    as ``pg_terminate_backend`` does for an administrator or a restart; how many were ended."""
    query = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    params: list[str] = [connection.settings_dict["NAME"]]
    if application_name is not None:
        query += " AND application_name = %s"
        params.append(application_name)
    row = admin.execute(query, params).fetchone()
    return int(row[0]) if row else 0
