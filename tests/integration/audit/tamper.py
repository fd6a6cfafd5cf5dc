"""Changing a store behind the services' backs, as someone holding the database would."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql


def execute(env: dict[str, str], app: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``statement`` on the store of ``app``.

    Write it for PostgreSQL with ``{events}``, ``{chain}`` and ``{checkpoints}`` for the tables
    and ``{id}`` for the notification id column; ``%s`` placeholders work on both backends.
    """
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        text = statement.format(
            events="stored_events", chain="audit_chain", checkpoints="audit_checkpoints", id="rowid"
        ).replace("%s", "?")
        lite = sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)
        try:
            lite.execute(text, params)
        finally:
            lite.close()
        return
    schema = env["POSTGRES_SCHEMA"]
    query = sql.SQL(statement).format(
        events=sql.Identifier(schema, f"{app}_events"),
        chain=sql.Identifier(schema, "audit_chain"),
        checkpoints=sql.Identifier(schema, "audit_checkpoints"),
        id=sql.Identifier("notification_id"),
    )
    with psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        autocommit=True,
    ) as conn:
        conn.execute(query, params)


def _state_of(env: dict[str, str], app: str, notification_id: int) -> tuple[Any, ...]:
    from seatledger.audit.store import open_store

    store = open_store(env, app)
    try:
        rows = list(store.iter_events(after=notification_id - 1, upto=notification_id))
    finally:
        store.close()
    assert len(rows) == 1, f"no event {notification_id} in {app}"
    row = rows[0]
    return row.originator_id, row.originator_version, row.topic, row.state


def rewrite_state(
    env: dict[str, str], app: str, notification_id: int, change: Any
) -> Callable[[], None]:
    """Rewrite one stored event's JSON state with ``change(state_dict)``; returns an undo."""
    _, _, _, original = _state_of(env, app, notification_id)
    state = json.loads(original)
    change(state)
    forged = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
    assert forged != original
    execute(env, app, "UPDATE {events} SET state = %s WHERE {id} = %s", (forged, notification_id))

    def undo() -> None:
        execute(
            env, app, "UPDATE {events} SET state = %s WHERE {id} = %s", (original, notification_id)
        )

    return undo


def _id_param(env: dict[str, str], originator_id: str) -> Any:
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        return UUID(originator_id).hex
    return UUID(originator_id)


def insert_event(
    env: dict[str, str],
    app: str,
    originator_id: str,
    version: int,
    topic: str,
    state: bytes,
    notification_id: int | None = None,
) -> Callable[[], None]:
    """Insert a stored event directly (at the end of the log, or at ``notification_id``);
    returns an undo."""
    if notification_id is None:
        execute(
            env,
            app,
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)",
            (_id_param(env, originator_id), version, topic, state),
        )
    else:
        execute(
            env,
            app,
            "INSERT INTO {events} ({id}, originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s, %s)",
            (notification_id, _id_param(env, originator_id), version, topic, state),
        )

    def undo() -> None:
        execute(
            env,
            app,
            "DELETE FROM {events} WHERE originator_id = %s AND originator_version = %s",
            (_id_param(env, originator_id), version),
        )

    return undo


def delete_event(env: dict[str, str], app: str, notification_id: int) -> Callable[[], None]:
    """Delete one stored event; returns an undo that puts it back under the same id."""
    originator_id, version, topic, state = _state_of(env, app, notification_id)
    execute(env, app, "DELETE FROM {events} WHERE {id} = %s", (notification_id,))

    def undo() -> None:
        insert_event(env, app, originator_id, version, topic, state, notification_id)

    return undo
