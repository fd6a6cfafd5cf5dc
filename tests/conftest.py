"""Fixtures shared by every tier.

Integration and e2e tests run against the real servers that ``make up`` starts (or any others
named by ``SEATLEDGER_TEST_DATABASE_URL`` and ``SEATLEDGER_TEST_KAFKA_BOOTSTRAP_SERVERS``).
When a server does not answer, the test fails with the cause: it is never skipped.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

DEFAULT_DATABASE_URL = "postgresql://seatledger:seatledger@127.0.0.1:5432/seatledger"
DEFAULT_KAFKA = "127.0.0.1:9092"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A URL of the PostgreSQL server whose role may create databases."""
    url = os.environ.get("SEATLEDGER_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {url!r} does not answer (run `make up`): {exc}")
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards.

    The drop is retried: an autovacuum worker (a superuser process) may briefly hold the
    database, and ``DROP ... WITH (FORCE)`` may not terminate it."""
    name = f"sl_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(postgres_admin_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for attempt in range(20):
        try:
            with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
                conn.execute(drop)
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The bootstrap servers of the real broker."""
    from confluent_kafka.admin import AdminClient

    servers = os.environ.get("SEATLEDGER_TEST_KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA)
    admin = AdminClient({"bootstrap.servers": servers})
    try:
        metadata = admin.list_topics(timeout=15)
    except Exception as exc:
        pytest.fail(f"Kafka at {servers} does not answer (run `make up`): {exc}")
    if not metadata.brokers:
        pytest.fail(f"Kafka at {servers} reports no brokers")
    return servers


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create topics with unique names for one test; deleted afterwards."""
    from confluent_kafka.admin import AdminClient

    from seatledger.kafka import TopicSpec, ensure_topics

    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 3) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        ensure_topics(kafka_bootstrap, [TopicSpec(name, partitions)])
        created.append(name)
        return name

    yield make
    if created:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result()


@pytest.fixture
def group_id() -> str:
    """A consumer group of this test alone."""
    return f"test-group-{uuid.uuid4().hex[:12]}"
