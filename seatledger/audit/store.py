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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
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
# PostgreSQL
# --------------------------------------------------------------------------------------------


class PostgresEventStore:
    """An application's tables in its PostgreSQL schema."""

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

    def _table(self, name: str) -> Any:
        from psycopg import sql

        return sql.Identifier(self.schema, name)

    def _sql(self, text: str, **tables: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(**{k: self._table(v) for k, v in tables.items()})

    def _table_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{self.schema}"."{name}"',)
        ).fetchone()
        return bool(row and row[0])

    def check_exists(self) -> None:
        if not self._table_exists(self.events_table):
            raise StoreMissing(f"no {self.app} event store in {self.describe()}")

    def max_notification_id(self) -> int:
        row = self._conn.execute(
            self._sql("SELECT COALESCE(MAX(notification_id), 0) FROM {t}", t=self.events_table)
        ).fetchone()
        return int(row[0]) if row else 0

    def _stream(self, query: Any, params: Sequence[Any], batch: int) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` through a server-side cursor: ``batch`` rows in memory at a time."""
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

    def iter_events(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        limit: int | None = None,
        batch: int = 2000,
    ) -> Iterator[StoredRow]:
        query = (
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {t} WHERE notification_id > %s"
        )
        params: list[Any] = [after]
        if upto is not None:
            query += " AND notification_id <= %s"
            params.append(upto)
        query += " ORDER BY notification_id"
        rows: Iterable[tuple[Any, ...]]
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
            rows = self._conn.execute(self._sql(query, t=self.events_table), params).fetchall()
        else:
            rows = self._stream(self._sql(query, t=self.events_table), params, batch)
        for raw in rows:
            yield to_row(raw)

    def iter_raw(
        self, *, after: int = 0, upto: int | None = None, batch: int = 2000
    ) -> Iterator[tuple[Any, ...]]:
        query = (
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {t} WHERE notification_id > %s"
        )
        params: list[Any] = [after]
        if upto is not None:
            query += " AND notification_id <= %s"
            params.append(upto)
        query += " ORDER BY notification_id"
        return self._stream(self._sql(query, t=self.events_table), params, batch)

    def events_of(self, originator_id: str) -> list[StoredRow]:
        try:
            key: Any = UUID(originator_id)
            where = "originator_id = %s"  # the primary key's index
        except ValueError:
            key, where = originator_id, "originator_id::text = %s"
        cursor = self._conn.execute(
            self._sql(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {{t}} WHERE {where} ORDER BY originator_version",
                t=self.events_table,
            ),
            (key,),
        )
        return [
            StoredRow(int(n), canonical_id(o), int(v), t, _bytes(s)) for n, o, v, t, s in cursor
        ]

    def has_chain(self) -> bool:
        return self._table_exists(CHAIN_TABLE)

    def ensure_chain_tables(self) -> None:
        from psycopg import sql

        self._conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
        )
        self._conn.execute(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "notification_id bigint PRIMARY KEY, "
                "originator_id text NOT NULL, "
                "originator_version bigint NOT NULL, "
                "event_digest bytea NOT NULL, "
                "chain_hash bytea NOT NULL)",
                t=CHAIN_TABLE,
            )
        )
        self._conn.execute(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "position bigint NOT NULL, "
                "events bigint NOT NULL, "
                "head_hash text NOT NULL, "
                "created_at timestamptz NOT NULL)",
                t=CHECKPOINT_TABLE,
            )
        )

    def chain_head(self) -> tuple[ChainLink | None, int]:
        if not self.has_chain():
            return None, 0
        return self._head_at(None)

    def _head_at(self, position: int | None) -> tuple[ChainLink | None, int]:
        where = "" if position is None else " WHERE notification_id <= %s"
        params: tuple[Any, ...] = () if position is None else (position,)
        row = self._conn.execute(
            self._sql(
                "SELECT notification_id, originator_id, originator_version, event_digest, "
                "chain_hash FROM {t}" + where + " ORDER BY notification_id DESC LIMIT 1",
                t=CHAIN_TABLE,
            ),
            params,
        ).fetchone()
        if row is None:
            return None, 0
        count = self._conn.execute(
            self._sql("SELECT COUNT(*) FROM {t}" + where, t=CHAIN_TABLE), params
        ).fetchone()
        link = ChainLink(int(row[0]), row[1], int(row[2]), bytes(row[3]), bytes(row[4]))
        return link, int(count[0]) if count else 0

    def link_at_or_before(self, position: int) -> tuple[ChainLink | None, int]:
        if not self.has_chain():
            return None, 0
        return self._head_at(position)

    def append_links(self, expected_head: int, links: Sequence[ChainLink]) -> None:
        import psycopg

        if not links:
            return
        try:
            with self._conn.transaction():
                # One keeper at a time per chain; a second one waits, then sees the new head.
                self._conn.execute(
                    self._sql("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE", t=CHAIN_TABLE)
                )
                row = self._conn.execute(
                    self._sql("SELECT COALESCE(MAX(notification_id), 0) FROM {t}", t=CHAIN_TABLE)
                ).fetchone()
                if (int(row[0]) if row else 0) != expected_head:
                    raise ChainConflict("the chain head moved")
                with self._conn.cursor() as cursor:
                    cursor.executemany(
                        self._sql(
                            "INSERT INTO {t} (notification_id, originator_id, "
                            "originator_version, event_digest, chain_hash) "
                            "VALUES (%s, %s, %s, %s, %s)",
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
        except psycopg.errors.UniqueViolation as exc:
            raise ChainConflict(str(exc)) from exc

    def iter_links(self, *, upto: int | None = None, batch: int = 2000) -> Iterator[ChainLink]:
        if not self.has_chain():
            return
        query = (
            "SELECT notification_id, originator_id, originator_version, event_digest, "
            "chain_hash FROM {t}"
        )
        params: list[Any] = []
        if upto is not None:
            query += " WHERE notification_id <= %s"
            params.append(upto)
        query += " ORDER BY notification_id"
        for nid, oid, version, digest, chain_hash in self._stream(
            self._sql(query, t=CHAIN_TABLE), params, batch
        ):
            yield ChainLink(int(nid), oid, int(version), bytes(digest), bytes(chain_hash))

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._conn.execute(
            self._sql(
                "INSERT INTO {t} (position, events, head_hash, created_at) VALUES (%s, %s, %s, %s)",
                t=CHECKPOINT_TABLE,
            ),
            (checkpoint.position, checkpoint.events, checkpoint.head_hash, checkpoint.created_at),
        )

    def checkpoints(self) -> list[Checkpoint]:
        if not self._table_exists(CHECKPOINT_TABLE):
            return []
        rows = self._conn.execute(
            self._sql(
                "SELECT position, events, head_hash, created_at FROM {t} "
                "ORDER BY position, created_at",
                t=CHECKPOINT_TABLE,
            )
        ).fetchall()
        return [Checkpoint(self.app, int(p), int(n), h, c) for p, n, h, c in rows]

    def close(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


class SQLiteEventStore:
    """An application's SQLite file (``<data dir>/<app>.sqlite``)."""

    def __init__(self, path: Path, app: str) -> None:
        self.app = app
        self.path = path
        if not path.exists():
            raise StoreMissing(f"no {app} event store at {path}")
        try:
            self._conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def _table_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def check_exists(self) -> None:
        try:
            exists = self._table_exists(SQLITE_EVENTS_TABLE)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a SQLite event store: {exc}") from exc
        if not exists:
            raise StoreMissing(f"no {self.app} event store in {self.describe()}")

    def max_notification_id(self) -> int:
        row = self._conn.execute(
            f"SELECT COALESCE(MAX(rowid), 0) FROM {SQLITE_EVENTS_TABLE}"
        ).fetchone()
        return int(row[0]) if row else 0

    def _stream(self, query: str, params: Sequence[Any], batch: int) -> Iterator[tuple[Any, ...]]:
        # A connection of its own: a reader never holds the keeper's connection in a
        # transaction, and SQLite steps through the rows without loading them all.
        conn = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
        try:
            cursor = conn.execute(query, params)
            while rows := cursor.fetchmany(batch):
                yield from rows
        finally:
            conn.close()

    def iter_events(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        limit: int | None = None,
        batch: int = 2000,
    ) -> Iterator[StoredRow]:
        query = (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {SQLITE_EVENTS_TABLE} WHERE rowid > ?"
        )
        params: list[Any] = [after]
        if upto is not None:
            query += " AND rowid <= ?"
            params.append(upto)
        query += " ORDER BY rowid"
        rows: Iterable[tuple[Any, ...]]
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
            rows = self._conn.execute(query, params).fetchall()
        else:
            rows = self._stream(query, params, batch)
        for raw in rows:
            yield to_row(raw)

    def iter_raw(
        self, *, after: int = 0, upto: int | None = None, batch: int = 2000
    ) -> Iterator[tuple[Any, ...]]:
        query = (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {SQLITE_EVENTS_TABLE} WHERE rowid > ?"
        )
        params: list[Any] = [after]
        if upto is not None:
            query += " AND rowid <= ?"
            params.append(upto)
        query += " ORDER BY rowid"
        return self._stream(query, params, batch)

    def events_of(self, originator_id: str) -> list[StoredRow]:
        try:
            stored_id = UUID(originator_id).hex
        except ValueError:
            stored_id = originator_id
        cursor = self._conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {SQLITE_EVENTS_TABLE} WHERE originator_id = ? ORDER BY originator_version",
            (stored_id,),
        )
        return [
            StoredRow(int(n), canonical_id(o), int(v), t, _bytes(s)) for n, o, v, t, s in cursor
        ]

    def has_chain(self) -> bool:
        return self._table_exists(CHAIN_TABLE)

    def ensure_chain_tables(self) -> None:
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} ("
            "notification_id INTEGER PRIMARY KEY, "
            "originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "event_digest BLOB NOT NULL, "
            "chain_hash BLOB NOT NULL)"
        )
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} ("
            "position INTEGER NOT NULL, "
            "events INTEGER NOT NULL, "
            "head_hash TEXT NOT NULL, "
            "created_at TEXT NOT NULL)"
        )

    def _head_at(self, position: int | None) -> tuple[ChainLink | None, int]:
        where = "" if position is None else " WHERE notification_id <= ?"
        params: tuple[Any, ...] = () if position is None else (position,)
        row = self._conn.execute(
            "SELECT notification_id, originator_id, originator_version, event_digest, "
            f"chain_hash FROM {CHAIN_TABLE}{where} ORDER BY notification_id DESC LIMIT 1",
            params,
        ).fetchone()
        if row is None:
            return None, 0
        count = self._conn.execute(f"SELECT COUNT(*) FROM {CHAIN_TABLE}{where}", params).fetchone()
        link = ChainLink(int(row[0]), row[1], int(row[2]), bytes(row[3]), bytes(row[4]))
        return link, int(count[0]) if count else 0

    def chain_head(self) -> tuple[ChainLink | None, int]:
        if not self.has_chain():
            return None, 0
        return self._head_at(None)

    def link_at_or_before(self, position: int) -> tuple[ChainLink | None, int]:
        if not self.has_chain():
            return None, 0
        return self._head_at(position)

    def append_links(self, expected_head: int, links: Sequence[ChainLink]) -> None:
        if not links:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                f"SELECT COALESCE(MAX(notification_id), 0) FROM {CHAIN_TABLE}"
            ).fetchone()
            if (int(row[0]) if row else 0) != expected_head:
                raise ChainConflict("the chain head moved")
            self._conn.executemany(
                f"INSERT INTO {CHAIN_TABLE} VALUES (?, ?, ?, ?, ?)",
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
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def iter_links(self, *, upto: int | None = None, batch: int = 2000) -> Iterator[ChainLink]:
        if not self.has_chain():
            return
        query = (
            "SELECT notification_id, originator_id, originator_version, event_digest, "
            f"chain_hash FROM {CHAIN_TABLE}"
        )
        params: list[Any] = []
        if upto is not None:
            query += " WHERE notification_id <= ?"
            params.append(upto)
        query += " ORDER BY notification_id"
        for nid, oid, version, digest, chain_hash in self._stream(query, params, batch):
            yield ChainLink(int(nid), oid, int(version), bytes(digest), bytes(chain_hash))

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._conn.execute(
            f"INSERT INTO {CHECKPOINT_TABLE} VALUES (?, ?, ?, ?)",
            (
                checkpoint.position,
                checkpoint.events,
                checkpoint.head_hash,
                checkpoint.created_at.isoformat(),
            ),
        )

    def checkpoints(self) -> list[Checkpoint]:
        if not self._table_exists(CHECKPOINT_TABLE):
            return []
        rows = self._conn.execute(
            f"SELECT position, events, head_hash, created_at FROM {CHECKPOINT_TABLE} "
            "ORDER BY position, created_at"
        ).fetchall()
        return [
            Checkpoint(self.app, int(p), int(n), h, datetime.fromisoformat(c))
            for p, n, h, c in rows
        ]

    def close(self) -> None:
        self._conn.close()
