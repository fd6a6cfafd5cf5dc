"""A process serving with ``serve_until_stopped`` bounds its requests as its settings say."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import uvicorn

from seatledger.auth import mint_token
from seatledger.config import load_settings
from seatledger.metrics import new_registry
from seatledger.runtime import Supervisor
from seatledger.serving import bound_port, serve_until_stopped
from tests.integration.http.conftest import SECRET, Recorder, build_app, raw_exchange


def test_the_settings_bound_the_requests_of_a_served_process():
    settings = load_settings(
        jwt_secret=SECRET,
        database_url=None,
        kafka_bootstrap_servers=None,
        http_port=0,
        http_max_body_bytes=2048,
        http_header_timeout_s=1.0,
    )
    recorder = Recorder()
    app = build_app(settings, recorder, None)
    servers: list[uvicorn.Server] = []
    thread = threading.Thread(
        target=serve_until_stopped,
        kwargs={
            "app": app,
            "host": "127.0.0.1",
            "port": 0,
            "supervisor": Supervisor(registry=new_registry("serving")),
            "on_ready": servers.append,
            "settings": settings,
        },
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not servers and time.monotonic() < deadline:
        time.sleep(0.02)
    (server,) = servers
    try:
        port = bound_port(server)
        assert port is not None
        token = mint_token(settings, subject="owner-1")
        body = json.dumps({"blob": "x" * 3000}).encode()
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/things",
            content=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 413
        assert recorder.calls == []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert sock.recv(1024) == b""
            assert time.monotonic() - started < 3.0
        assert raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200"
        )
    finally:
        server.should_exit = True
        thread.join(15)
