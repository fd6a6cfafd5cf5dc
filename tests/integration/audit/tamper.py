"""Changing a store behind the services' backs, as someone holding the database would."""

from __future__ import annotations

import sqlite3
from typing import Any

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
