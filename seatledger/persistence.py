"""From ``SEATLEDGER_DATABASE_URL`` to the environment of an ``eventsourcing`` application.

``postgresql://user:password@host:port/dbname`` selects ``eventsourcing.postgres``;
``sqlite:///path/to/file.db`` selects ``eventsourcing.sqlite``; no URL means a SQLite file per
application in the data folder (the embedded default).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class DatabaseUrlError(ValueError):
    """The database URL cannot be used."""


def application_env(
    database_url: str | None,
    app_name: str,
    data_dir: Path,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
) -> dict[str, str]:
    """Return the ``eventsourcing`` settings for an application called ``app_name``.

    Each application gets its own tables: on PostgreSQL a schema named after the application
    in the shared database (the services own their data; none reads another's tables), on
    SQLite a file of its own.
    """
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return _sqlite_env(str(data_dir / f"{app_name}.sqlite"))
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("/") and parts.netloc == "":
            path = path[1:] if path.startswith("//") else path
        if not path or path == "/":
            raise DatabaseUrlError("a sqlite URL needs a file path: sqlite:///path/to/file.db")
        if path in (":memory:", "/:memory:"):
            raise DatabaseUrlError("in-memory SQLite loses every event on exit; give a file path")
        # One URL names a folder or a file; each application gets its own file beside it.
        target = Path(path)
        folder = target if target.suffix == "" else target.parent
        folder.mkdir(parents=True, exist_ok=True)
        return _sqlite_env(str(folder / f"{app_name}.sqlite"))
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        if not parts.hostname or not parts.path.strip("/"):
            raise DatabaseUrlError(
                "a PostgreSQL URL needs a host and a database: postgresql://user:pw@host:5432/db"
            )
        query = parse_qs(parts.query)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.strip("/")),
            "POSTGRES_HOST": parts.hostname,
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or ""),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", [app_name])[0],
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(max_overflow),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_LOCK_TIMEOUT": "5",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
            "CREATE_TABLE": "y",
        }
        return env
    raise DatabaseUrlError(
        f"unsupported database URL scheme {parts.scheme!r}: use postgresql://... or sqlite:///..."
    )


def _sqlite_env(dbname: str) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": dbname,
        "SQLITE_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y",
    }


def redact_url(database_url: str | None) -> str:
    """The URL without its password, for logs and banners."""
    if database_url is None:
        return "(embedded SQLite)"
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def ensure_postgres_schema(env: dict[str, str]) -> None:
    """Create the application's PostgreSQL schema if missing (``eventsourcing`` creates tables,
    not schemas). A no-op for SQLite."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "5")),
        autocommit=True,
    ) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(env["POSTGRES_SCHEMA"]))
        )
