"""A ledger wired by its real composition root, on SQLite (a file) or the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from seatledger.auth import mint_token
from seatledger.config import Settings, load_settings
from seatledger.metrics import new_registry
from services.ledger.bootstrap import LedgerComponents, build_ledger, create_ledger_app
from tests.served import ServerThreads

SECRET = "integration-test-secret-0123456789abcdef"
T0 = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # 12:00 in Berlin

CLOUD_BODY: dict[str, Any] = {
    "name": "Acme GmbH",
    "owner_id": "owner-1",
    "billing_email": "billing@acme.example",
    "currency": "EUR",
    "seat_price": "31.00",
    "billing_period": "monthly",
    "term_start": "2026-01-31",
    "time_zone": "Europe/Berlin",
    "tax_rate": "19",
    "locale": "de",
    "seats": 3,
}


class Clock:
    """The instant the ledger believes it is; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Node:
    """One ledger process: components, app, test client."""

    components: LedgerComponents
    app: FastAPI
    client: TestClient
    settings: Settings
    clock: Clock
    registry: Any

    def headers(
        self, sub: str, *scopes: str, step_up: bool = False, **extra: Any
    ) -> dict[str, str]:
        token = mint_token(self.settings, subject=sub, scopes=scopes, step_up=step_up, **extra)
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.headers("admin-1", "billing:admin")

    @property
    def owner(self) -> dict[str, str]:
        return self.headers("owner-1", step_up=True)

    def open_cloud(self, **changes: Any) -> dict[str, Any]:
        response = self.client.post(
            "/v1/clouds", json={**CLOUD_BODY, **changes}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        return response.json()

    def event_count(self) -> int:
        return self.components.app.recorder.max_notification_id() or 0


@dataclass
class LedgerFactory:
    database_url: str
    data_dir: Any
    clock: Clock = field(default_factory=lambda: Clock(T0))
    nodes: list[Node] = field(default_factory=list)

    def __call__(self, **build_kwargs: Any) -> Node:
        settings = load_settings(
            database_url=self.database_url,
            data_dir=self.data_dir,
            jwt_secret=SECRET,
            kafka_bootstrap_servers=None,
        )
        registry = new_registry("ledger")
        components = build_ledger(settings, registry, clock=self.clock, **build_kwargs)
        app = create_ledger_app(components, registry)
        node = Node(components, app, TestClient(app), settings, self.clock, registry)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.components.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def ledgers(database_url: str, tmp_path: Any) -> Iterator[LedgerFactory]:
    factory = LedgerFactory(database_url, tmp_path / "data")
    yield factory
    factory.close()


@pytest.fixture
def ledger(ledgers: LedgerFactory) -> Node:
    return ledgers()


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    """Serve an app with uvicorn on 127.0.0.1 (a free port) in a thread; returns its URL."""
    servers = ServerThreads()

    def start(app: FastAPI) -> str:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        return f"http://127.0.0.1:{servers.start(config)}"

    yield start
    servers.stop()


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Start structlog JSON lines on the captured stderr (call it inside the test); returns a
    reader of what was logged since the last read. The default configuration is restored
    after, so later tests do not write to the captured (closed) stream."""

    def read() -> str:
        return capsys.readouterr().err

    yield read
    structlog.reset_defaults()
