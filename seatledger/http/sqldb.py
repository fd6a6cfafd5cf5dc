"""A small SQL gateway beside a service's event store, for records that are not events
(idempotency keys, quotes). It lives in the service's own database: the same PostgreSQL schema
as the application's tables, or the same SQLite file.

Statements are written with ``?`` placeholders and ``ON CONFLICT`` clauses, which both
PostgreSQL and SQLite understand; each call runs in its own (auto-committed) transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal


class SqlDatabase:
    """Run single statements against the database named by an ``eventsourcing`` env."""

    def __init__(self, env: Mapping[str, str], *, app_name: str = "", pool_size: int = 4) -> None:
        module = _get(env, app_name, "PERSISTENCE_MODULE")
        self._lock = threading.Lock()
        self.closed = False
        self._pool: Any = None
        self._sqlite: sqlite3.Connection | None = None
        self.dialect: Literal["postgres", "sqlite"]
        if module == "eventsourcing.postgres":
            from psycopg_pool import ConnectionPool

            self.dialect = "postgres"
            self.schema = _get(env, app_name, "POSTGRES_SCHEMA") or "public"
            connect_timeout = int(_get(env, app_name, "POSTGRES_CONNECT_TIMEOUT") or 5)
            self._pool = ConnectionPool(
                kwargs={
                    "dbname": _get(env, app_name, "POSTGRES_DBNAME"),
                    "host": _get(env, app_name, "POSTGRES_HOST"),
                    "port": _get(env, app_name, "POSTGRES_PORT") or "5432",
                    "user": _get(env, app_name, "POSTGRES_USER"),
                    "password": _get(env, app_name, "POSTGRES_PASSWORD"),
                    "connect_timeout": connect_timeout,
                    "autocommit": True,
                },
                min_size=1,
                max_size=pool_size,
                # A statement waits at most this long for a connection (then PoolTimeout: the
                # request is answered 503), as the event store's pool does.
                timeout=connect_timeout,
                open=True,
                name=f"{app_name or 'service'}-sql",
            )
        elif module == "eventsourcing.sqlite":
            self.dialect = "sqlite"
            self.schema = ""
            self._sqlite = sqlite3.connect(
                _get(env, app_name, "SQLITE_DBNAME"),
                timeout=float(_get(env, app_name, "SQLITE_LOCK_TIMEOUT") or 10),
                isolation_level=None,
                check_same_thread=False,
            )
            self._sqlite.execute("PRAGMA journal_mode=WAL")
        else:
            raise ValueError(f"no SQL database for persistence module {module!r}")

    def table(self, name: str) -> str:
        """The qualified name of one of the service's tables."""
        return f'"{self.schema}"."{name}"' if self.dialect == "postgres" else f'"{name}"'

    @property
    def clock_sql(self) -> str:
        """An SQL expression of the database's clock, in seconds since the Unix epoch.

        Times that processes on several hosts write and compare (heartbeats, claims) use it
        instead of each host's own clock, so that a node whose clock is off is judged right.
        """
        if self.dialect == "postgres":
            return "extract(epoch from clock_timestamp())::double precision"
        return "((julianday('now') - 2440587.5) * 86400.0)"

    def now(self) -> float:
        """The database's clock, in seconds since the Unix epoch."""
        rows, _ = self.execute(f"SELECT {self.clock_sql}")
        return float(rows[0][0])

    def add_column(self, table: str, column: str, definition: str) -> None:
        """Add a column to one of the service's tables unless it has it (idempotent). On
        PostgreSQL the catalogue is asked first: ``ALTER TABLE`` takes an exclusive lock even
        when the column exists, so a process starting while others read the table would
        queue behind them (and they behind it)."""
        if self.dialect == "postgres":
            rows, _ = self.execute(
                "SELECT 1 FROM information_schema.columns"
                " WHERE table_schema = ? AND table_name = ? AND column_name = ?",
                (self.schema, table, column),
            )
            if not rows:
                self.execute(
                    f"ALTER TABLE {self.table(table)}"
                    f' ADD COLUMN IF NOT EXISTS "{column}" {definition}'
                )
            return
        rows, _ = self.execute(f"PRAGMA table_info({self.table(table)})")
        if all(row[1] != column for row in rows):
            self.execute(f'ALTER TABLE {self.table(table)} ADD COLUMN "{column}" {definition}')

    def execute(
        self, statement: str, params: Sequence[Any] = ()
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement; returns the rows it produced and the affected row count."""
        if self._pool is not None:
            with self._pool.connection() as conn:
                cur = conn.execute(statement.replace("?", "%s"), tuple(params))
                rows = cur.fetchall() if cur.description is not None else []
                return rows, cur.rowcount
        assert self._sqlite is not None
        with self._lock:
            cur = self._sqlite.execute(statement, tuple(params))
            rows = cur.fetchall() if cur.description is not None else []
            return rows, cur.rowcount

    def ping(self) -> bool:
        try:
            self.execute("SELECT 1")
        except Exception:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        if self._pool is not None:
            self._pool.close()
        if self._sqlite is not None:
            self._sqlite.close()


def _get(env: Mapping[str, str], app_name: str, key: str) -> str:
    prefixed = f"{app_name.upper()}_{key}" if app_name else key
    return env.get(prefixed) or env.get(key) or ""
