"""Which exceptions are an unavailable dependency (503 with Retry-After) and which a bug (500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from seatledger.http.problems import error_answer, is_outage


def _refused_connection() -> psycopg.OperationalError:
    try:
        psycopg.connect("postgresql://u:p@127.0.0.1:1/db", connect_timeout=2)
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("port 1 accepted a PostgreSQL connection")


def test_a_refused_database_connection_is_an_outage():
    status, body, headers = error_answer(_refused_connection())
    assert status == 503
    assert body["type"].endswith("/service-unavailable")
    assert int(headers["Retry-After"]) > 0


def _wrapped_outage() -> RuntimeError:
    try:
        try:
            raise _refused_connection()
        except psycopg.OperationalError as exc:
            raise RuntimeError("the command failed") from exc
    except RuntimeError as wrapped:
        return wrapped


def test_an_outage_wrapped_by_a_library_is_still_an_outage():
    assert is_outage(_wrapped_outage())
    assert is_outage(ExceptionGroup("tasks", [ValueError("x"), _refused_connection()]))


def test_a_locked_sqlite_file_is_an_outage(tmp_path: Path):
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0.05)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    holder.rollback()
    assert is_outage(locked.value)


def test_a_bug_is_a_500_without_retry_after(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "db.sqlite")
    with pytest.raises(sqlite3.OperationalError) as bug:
        db.execute("SELECT * FROM no_such_table")
    for exc in (bug.value, ValueError("bad"), KeyError("k")):
        status, _body, headers = error_answer(exc)
        assert status == 500
        assert headers == {}
        assert "Retry-After" not in headers
