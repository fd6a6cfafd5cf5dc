"""A small app built by the shared app factory, with an idempotency store on SQLite (a file) or
the real PostgreSQL, served by a real uvicorn server configured as every process is."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request

from seatledger.auth import Authenticator, mint_token
from seatledger.config import Settings, load_settings
from seatledger.http import CurrentPrincipal, IdempotencyStore, SqlDatabase, create_app
from seatledger.metrics import new_registry
from seatledger.persistence import application_env, ensure_postgres_schema
from seatledger.serving import server_config
from tests.served import ServerThreads

SECRET = "http-plumbing-test-secret-0123456789abcdef"


@contextlib.contextmanager
def claiming_process(script: str, store_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Another process (``python -c script store_env_json``) that claims a key and prints the
    claim's outcome: yielded once it claimed it (outcome ``new``), killed (SIGKILL) after."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(store_env)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "new"
        yield child
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, str]:
    """The eventsourcing env of a service's database (where its idempotency keys live)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store/"
    else:
        url = request.getfixturevalue("postgres_url")
    env = application_env(url, "ledger", tmp_path / "data")
    ensure_postgres_schema(env)
    return env


@dataclass
class Recorder:
    """What the app's routes did: one entry per request they processed."""

    calls: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class Served:
    url: str
    port: int
    settings: Settings
    recorder: Recorder
    store: IdempotencyStore | None

    def token(self, subject: str = "owner-1") -> str:
        return mint_token(self.settings, subject=subject)


def build_app(
    settings: Settings, recorder: Recorder, store: IdempotencyStore | None, **limits: Any
) -> FastAPI:
    router = APIRouter()

    @router.post("/v1/things", status_code=201)
    async def create_thing(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
        body = await request.body()
        recorder.calls.append(("POST", principal.subject, body))
        return {"thing": len(recorder.calls), "by": principal.subject}

    @router.delete("/v1/things/{name}")
    def delete_thing(name: str, principal: CurrentPrincipal, mode: str = "plain") -> dict[str, str]:
        recorder.calls.append(("DELETE", principal.subject, f"{name}?{mode}".encode()))
        return {"deleted": name, "mode": mode}

    @router.get("/v1/fail")
    def fail() -> None:
        raise RuntimeError("a bug in a route\nwith a second line")

    @router.get("/v1/big")
    def big() -> dict[str, str]:
        return {"blob": "x" * 200_000}

    return create_app(
        title="plumbing",
        routers=[router],
        registry=new_registry("plumbing"),
        authenticator=Authenticator(settings),
        idempotency_stores={"/v1/things": store} if store is not None else None,
        **limits,
    )


@pytest.fixture
def serve(tmp_path: Any) -> Iterator[Callable[..., Served]]:
    """Serve the plumbing app on a free port with the header deadline every process has."""
    servers = ServerThreads()
    stores: list[IdempotencyStore] = []

    def start(
        env: dict[str, str] | None = None, *, header_timeout_s: float = 10.0, **limits: Any
    ) -> Served:
        settings = load_settings(jwt_secret=SECRET, database_url=None, kafka_bootstrap_servers=None)
        store = None
        if env is not None:
            store = IdempotencyStore(SqlDatabase(env))
            store.create_table()
            stores.append(store)
        recorder = Recorder()
        app = build_app(settings, recorder, store, **limits)
        port = servers.start(server_config(app, lifespan="off", header_timeout_s=header_timeout_s))
        return Served(f"http://127.0.0.1:{port}", port, settings, recorder, store)

    yield start
    servers.stop()
    for store in stores:
        store.stop()
        store.db.close()


def raw_exchange(port: int, data: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send bytes over a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
