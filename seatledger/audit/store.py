# Table names in the SQL below are module constants; every value is a bound parameter.
# ruff: noqa: S608
"""Direct, streaming access to one application's event store, for auditing.

The audit tools read the stored events of an ``eventsourcing`` application (the ledger, the
invoicer) straight from its tables, in notification order, with server-side cursors (on
PostgreSQL) so that memory stays flat whatever the size of the history. They never write to
the application's own tables: the only tables they write are the hash chain's
(``audit_chain``, ``audit_checkpoints``), created beside the application's events (same
PostgreSQL schema as ``<app>_events``, same SQLite file as ``stored_events``), and only
:class:`~seatledger.audit.chain.ChainKeeper` writes them.

:func:`open_store` takes the environment that :func:`seatledger.persistence.application_env`
returns for an application, so the auditor points at exactly the tables the service uses.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast
from uuid import UUID

CHAIN_TABLE = "audit_chain"
CHECKPOINT_TABLE = "audit_checkpoints"
SQLITE_EVENTS_TABLE = "stored_events"


class StoreError(Exception):
    """The store cannot be opened or read (missing, unreachable, not an event store)."""


class StoreMissing(StoreError):
    """The application has no store there (never started, or another database)."""


class ChainConflict(Exception):
    """Another keeper extended the chain first; nothing was written."""


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One stored event as the database holds it."""

    notification_id: int
    originator_id: str  # canonical UUID text when the id is a UUID
    originator_version: int
    topic: str
    state: bytes


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One row of the hash chain: the digest of one stored event and the chain head after it."""

    notification_id: int
    originator_id: str
    originator_version: int
    event_digest: bytes
    chain_hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain head at one moment: publishable outside the database."""

    app: str
    position: int  # notification id of the last chained event (0: empty chain)
    events: int  # number of chained events up to ``position``
    head_hash: str  # hex
    created_at: datetime


def canonical_id(value: Any) -> str:
    """An originator id as text: the canonical UUID form when it is a UUID (PostgreSQL stores
    ``uuid``, SQLite stores the hex digits), otherwise the text as stored."""
    if isinstance(value, UUID):
        return str(value)
    text = str(value)
    try:
        return str(UUID(text))
    except ValueError:
        return text


def _bytes(value: Any) -> bytes:
    """A state column as bytes (a row written behind the application's back may hold text)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value) if value is not None else b""


def to_row(raw: tuple[Any, ...]) -> StoredRow:
    """A row of :meth:`EventStore.iter_raw` as a :class:`StoredRow`."""
    nid, oid, version, topic, state = raw
    return StoredRow(int(nid), canonical_id(oid), int(version), topic, _bytes(state))


class EventStore(Protocol):
    """What the audit tools need from one application's store."""

    app: str

    def describe(self) -> str: ...

    def check_exists(self) -> None:
        """Raise :class:`StoreError` unless the application's events table exists."""

    def max_notification_id(self) -> int: ...

    def iter_events(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        limit: int | None = None,
        batch: int = 2000,
    ) -> Iterator[StoredRow]:
        """Stored events with ``after < notification_id <= upto`` in notification order
        (the first ``limit`` of them when given)."""

    def iter_raw(
        self, *, after: int = 0, upto: int | None = None, batch: int = 2000
    ) -> Iterator[tuple[Any, ...]]:
        """Like :meth:`iter_events`, but the rows as the database driver returns them
        (``notification_id, originator_id, version, topic, state``): for readers that look at
        the topic first and convert only the rows they need (:func:`to_row`)."""

    def events_of(self, originator_id: str) -> list[StoredRow]:
        """Every stored event of one aggregate, by version."""

    def has_chain(self) -> bool: ...

    def ensure_chain_tables(self) -> None: ...

    def chain_head(self) -> tuple[ChainLink | None, int]:
        """The last link and the number of links."""

    def append_links(self, expected_head: int, links: Sequence[ChainLink]) -> None:
        """Append links in one transaction; :class:`ChainConflict` if the head moved."""

    def iter_links(self, *, upto: int | None = None, batch: int = 2000) -> Iterator[ChainLink]: ...

    def link_at_or_before(self, position: int) -> tuple[ChainLink | None, int]:
        """The last link with ``notification_id <= position`` and the links up to it."""

    def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def checkpoints(self) -> list[Checkpoint]: ...

    def close(self) -> None: ...


def open_store(env: dict[str, str], app: str) -> EventStore:
    """Open the store of application ``app`` described by an ``application_env`` dict."""
    module = env.get("PERSISTENCE_MODULE")
    if module == "eventsourcing.postgres":
        return PostgresEventStore(env, app)
    if module == "eventsourcing.sqlite":
        return SQLiteEventStore(Path(env["SQLITE_DBNAME"]), app)
    raise StoreError(f"cannot audit a store of kind {module!r}")


# --------------------------------------------------------------------------------------------
# The queries and row handling, once for both backends
# --------------------------------------------------------------------------------------------

# Query templates: ``{t}`` is the table, ``{p}`` a bound parameter, ``{id}`` the events table's
# notification id column, ``{integer}``, ``{text}``, ``{blob}``, ``{timestamp}`` column types;
# each backend fills them in (:attr:`_SQLEventStore._DIALECT`, :meth:`_SQLEventStore._sql`).
_EVENT_COLUMNS = "{id}, originator_id, originator_version, topic, state"
_LINK_COLUMNS = "notification_id, originator_id, originator_version, event_digest, chain_hash"


class _Cursor(Protocol):
    """The part of a DB-API cursor the queries below read."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


def _to_link(raw: Sequence[Any]) -> ChainLink:
    nid, oid, version, digest, chain_hash = raw
    return ChainLink(int(nid), oid, int(version), bytes(digest), bytes(chain_hash))


class _SQLEventStore(ABC):
    """:class:`EventStore` over SQL tables: every query and row conversion; a backend supplies
    its SQL dialect, table names, connection, transactions and streaming cursor."""

    #: SQL fragments of the backend for the template fields other than ``{t}``.
    _DIALECT: ClassVar[Mapping[str, str]]

    app: str
    events_table: str

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def _sql(self, template: str, **tables: str) -> Any:
        """``template`` as a query of the backend, ``tables`` naming its table fields."""

    @abstractmethod
    def _execute(self, query: Any, params: Sequence[Any] = ()) -> _Cursor:
        """Run ``query`` on the store's own connection."""

    @abstractmethod
    def _executemany(self, query: Any, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _stream(self, query: Any, params: Sequence[Any], batch: int) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` from a cursor of their own, ``batch`` rows in memory at a time."""

    @abstractmethod
    def _table_exists(self, name: str) -> bool: ...

    @abstractmethod
    def _chain_write(self) -> AbstractContextManager[None]:
        """One transaction in which no other keeper can extend the chain."""

    @abstractmethod
    def _originator_match(self, originator_id: str) -> tuple[str, Any]:
        """The column expression to compare with an originator id, and the bound value."""

    @abstractmethod
    def _timestamp_param(self, value: datetime) -> Any:
        """A checkpoint time as the backend stores it."""

    @abstractmethod
    def _timestamp_value(self, stored: Any) -> datetime:
        """A checkpoint time as the backend returns it, back as a datetime."""

    @abstractmethod
    def close(self) -> None: ...

    def _scalar(self, query: Any, params: Sequence[Any] = ()) -> int:
        row = self._execute(query, params).fetchone()
        return int(row[0]) if row else 0

    def check_exists(self) -> None:
        if not self._table_exists(self.events_table):
            raise StoreMissing(f"no {self.app} event store in {self.describe()}")

    def max_notification_id(self) -> int:
        return self._scalar(
            self._sql("SELECT COALESCE(MAX({id}), 0) FROM {t}", t=self.events_table)
        )

    def _events_query(self, after: int, upto: int | None) -> tuple[str, list[Any]]:
        query = "SELECT " + _EVENT_COLUMNS + " FROM {t} WHERE {id} > {p}"
        params: list[Any] = [after]
        if upto is not None:
            query += " AND {id} <= {p}"
            params.append(upto)
        query += " ORDER BY {id}"
        return query, params

    def iter_events(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        limit: int | None = None,
        batch: int = 2000,
    ) -> Iterator[StoredRow]:
        query, params = self._events_query(after, upto)
        rows: Iterable[tuple[Any, ...]]
        if limit is not None:
            query += " LIMIT {p}"
            params.append(limit)
            rows = self._execute(self._sql(query, t=self.events_table), params).fetchall()
        else:
            rows = self._stream(self._sql(query, t=self.events_table), params, batch)
        for raw in rows:
            yield to_row(raw)

    def iter_raw(
        self, *, after: int = 0, upto: int | None = None, batch: int = 2000
    ) -> Iterator[tuple[Any, ...]]:
        query, params = self._events_query(after, upto)
        return self._stream(self._sql(query, t=self.events_table), params, batch)

    def events_of(self, originator_id: str) -> list[StoredRow]:
        column, key = self._originator_match(originator_id)
        cursor = self._execute(
            self._sql(
                "SELECT " + _EVENT_COLUMNS + " FROM {t} "
                "WHERE " + column + " = {p} ORDER BY originator_version",
                t=self.events_table,
            ),
            (key,),
        )
        return [to_row(raw) for raw in cursor]

    def has_chain(self) -> bool:
        return self._table_exists(CHAIN_TABLE)

    def ensure_chain_tables(self) -> None:
        self._execute(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "notification_id {integer} PRIMARY KEY, "
                "originator_id {text} NOT NULL, "
                "originator_version {integer} NOT NULL, "
                "event_digest {blob} NOT NULL, "
                "chain_hash {blob} NOT NULL)",
                t=CHAIN_TABLE,
            )
        )
        self._execute(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "position {integer} NOT NULL, "
                "events {integer} NOT NULL, "
                "head_hash {text} NOT NULL, "
                "created_at {timestamp} NOT NULL)",
                t=CHECKPOINT_TABLE,
            )
        )

    def chain_head(self) -> tuple[ChainLink | None, int]:
        if not self.has_chain():
            return None, 0
        return self._head_at(None)

    def link_at_or_before(self, position: int) -> tuple[ChainLink | None, int]:
        if not self.has_chain():
            return None, 0
        return self._head_at(position)

    def _head_at(self, position: int | None) -> tuple[ChainLink | None, int]:
        where = "" if position is None else " WHERE notification_id <= {p}"
        params: tuple[Any, ...] = () if position is None else (position,)
        query = "SELECT " + _LINK_COLUMNS + " FROM {t}" + where
        row = self._execute(
            self._sql(query + " ORDER BY notification_id DESC LIMIT 1", t=CHAIN_TABLE),
            params,
        ).fetchone()
        if row is None:
            return None, 0
        count = self._scalar(self._sql("SELECT COUNT(*) FROM {t}" + where, t=CHAIN_TABLE), params)
        return _to_link(row), count

    def append_links(self, expected_head: int, links: Sequence[ChainLink]) -> None:
        if not links:
            return
        with self._chain_write():
            head = self._scalar(
                self._sql("SELECT COALESCE(MAX(notification_id), 0) FROM {t}", t=CHAIN_TABLE)
            )
            if head != expected_head:
                raise ChainConflict("the chain head moved")
            self._executemany(
                self._sql(
                    "INSERT INTO {t} (" + _LINK_COLUMNS + ") VALUES ({p}, {p}, {p}, {p}, {p})",
                    t=CHAIN_TABLE,
                ),
                [
                    (
                        link.notification_id,
                        link.originator_id,
                        link.originator_version,
                        link.event_digest,
                        link.chain_hash,
                    )
                    for link in links
                ],
            )

    def iter_links(self, *, upto: int | None = None, batch: int = 2000) -> Iterator[ChainLink]:
        if not self.has_chain():
            return
        query = "SELECT " + _LINK_COLUMNS + " FROM {t}"
        params: list[Any] = []
        if upto is not None:
            query += " WHERE notification_id <= {p}"
            params.append(upto)
        query += " ORDER BY notification_id"
        for raw in self._stream(self._sql(query, t=CHAIN_TABLE), params, batch):
            yield _to_link(raw)

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._execute(
            self._sql(
                "INSERT INTO {t} (position, events, head_hash, created_at) "
                "VALUES ({p}, {p}, {p}, {p})",
                t=CHECKPOINT_TABLE,
            ),
            (
                checkpoint.position,
                checkpoint.events,
                checkpoint.head_hash,
                self._timestamp_param(checkpoint.created_at),
            ),
        )

    def checkpoints(self) -> list[Checkpoint]:
        if not self._table_exists(CHECKPOINT_TABLE):
            return []
        rows = self._execute(
            self._sql(
                "SELECT position, events, head_hash, created_at FROM {t} "
                "ORDER BY position, created_at",
                t=CHECKPOINT_TABLE,
            )
        ).fetchall()
        return [
            Checkpoint(self.app, int(p), int(n), h, self._timestamp_value(c)) for p, n, h, c in rows
        ]


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


class PostgresEventStore(_SQLEventStore):
    """An application's tables in its PostgreSQL schema."""

    _DIALECT: ClassVar[Mapping[str, str]] = {
        "p": "%s",
        "id": "notification_id",
        "integer": "bigint",
        "text": "text",
        "blob": "bytea",
        "timestamp": "timestamptz",
    }

    def __init__(self, env: dict[str, str], app: str) -> None:
        import psycopg

        self.app = app
        self.schema = env.get("POSTGRES_SCHEMA") or "public"
        # eventsourcing names the table after the application: ``<schema>.<app>_events``.
        self.events_table = f"{app.lower()}_events"
        self._dbname = env["POSTGRES_DBNAME"]
        self._host = env["POSTGRES_HOST"]
        try:
            self._conn = psycopg.connect(
                dbname=env["POSTGRES_DBNAME"],
                host=env["POSTGRES_HOST"],
                port=env.get("POSTGRES_PORT", "5432"),
                user=env.get("POSTGRES_USER", ""),
                password=env.get("POSTGRES_PASSWORD", ""),
                connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "5")),
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self._host}: {exc}") from exc
        self._counter = 0

    def describe(self) -> str:
        return f"PostgreSQL {self._host}/{self._dbname} schema {self.schema}"

    def _sql(self, template: str, **tables: str) -> Any:
        from psycopg import sql

        fields: dict[str, sql.Composable] = {k: sql.SQL(v) for k, v in self._DIALECT.items()}
        fields.update({k: sql.Identifier(self.schema, v) for k, v in tables.items()})
        return sql.SQL(template).format(**fields)

    def _execute(self, query: Any, params: Sequence[Any] = ()) -> _Cursor:
        return self._conn.execute(query, params)

    def _executemany(self, query: Any, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(query, rows)

    def _stream(self, query: Any, params: Sequence[Any], batch: int) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor on a connection of its own.
        import psycopg

        self._counter += 1
        conn = psycopg.connect(self._conn.info.dsn, password=self._conn.info.password)
        try:
            with conn.transaction(), conn.cursor(name=f"audit_{self._counter}") as cursor:
                cursor.itersize = batch
                cursor.execute(query, params)
                while rows := cursor.fetchmany(batch):
                    yield from rows
        finally:
            conn.close()

    def _table_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{self.schema}"."{name}"',)
        ).fetchone()
        return bool(row and row[0])

    @contextmanager
    def _chain_write(self) -> Iterator[None]:
        import psycopg

        try:
            with self._conn.transaction():
                # One keeper at a time per chain; a second one waits, then sees the new head.
                self._execute(
                    self._sql("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE", t=CHAIN_TABLE)
                )
                yield
        except psycopg.errors.UniqueViolation as exc:
            raise ChainConflict(str(exc)) from exc

    def _originator_match(self, originator_id: str) -> tuple[str, Any]:
        try:
            return "originator_id", UUID(originator_id)  # the primary key's index
        except ValueError:
            return "originator_id::text", originator_id

    def _timestamp_param(self, value: datetime) -> Any:
        return value

    def _timestamp_value(self, stored: Any) -> datetime:
        return cast(datetime, stored)  # timestamptz comes back as an aware datetime

    def ensure_chain_tables(self) -> None:
        from psycopg import sql

        self._execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        super().ensure_chain_tables()

    def close(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


class SQLiteEventStore(_SQLEventStore):
    """An application's SQLite file (``<data dir>/<app>.sqlite``)."""

    _DIALECT: ClassVar[Mapping[str, str]] = {
        "p": "?",
        "id": "rowid",
        "integer": "INTEGER",  # ``notification_id INTEGER PRIMARY KEY`` is the rowid
        "text": "TEXT",
        "blob": "BLOB",
        "timestamp": "TEXT",
    }

    def __init__(self, path: Path, app: str) -> None:
        self.app = app
        self.path = path
        self.events_table = SQLITE_EVENTS_TABLE
        if not path.exists():
            raise StoreMissing(f"no {app} event store at {path}")
        try:
            self._conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def _sql(self, template: str, **tables: str) -> str:
        # Table names are this module's constants, never input.
        return template.format(**self._DIALECT, **tables)

    def _execute(self, query: Any, params: Sequence[Any] = ()) -> _Cursor:
        return self._conn.execute(query, params)

    def _executemany(self, query: Any, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(query, rows)

    def _stream(self, query: Any, params: Sequence[Any], batch: int) -> Iterator[tuple[Any, ...]]:
        # A connection of its own: a reader never holds the keeper's connection in a
        # transaction, and SQLite steps through the rows without loading them all.
        conn = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
        try:
            cursor = conn.execute(query, params)
            while rows := cursor.fetchmany(batch):
                yield from rows
        finally:
            conn.close()

    def _table_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def check_exists(self) -> None:
        try:
            super().check_exists()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a SQLite event store: {exc}") from exc

    @contextmanager
    def _chain_write(self) -> Iterator[None]:
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def _originator_match(self, originator_id: str) -> tuple[str, Any]:
        try:
            return "originator_id", UUID(originator_id).hex  # stored as the hex digits
        except ValueError:
            return "originator_id", originator_id

    def _timestamp_param(self, value: datetime) -> Any:
        return value.isoformat()

    def _timestamp_value(self, stored: Any) -> datetime:
        return datetime.fromisoformat(stored)

    def close(self) -> None:
        self._conn.close()
