"""Real outages of the test PostgreSQL server, for the tests of what an outage does."""

from __future__ import annotations

import psycopg


def set_connections(admin_url: str, dbname: str, *, allowed: bool) -> None:
    """Let the database ``dbname`` accept connections again, or refuse new ones and end the
    open ones (as a database that goes away would)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
