"""Running an HTTP app and a process's background workers until SIGTERM or Ctrl-C.

Order on start: the workers, then the HTTP server. On SIGTERM/SIGINT the HTTP server stops
accepting requests and finishes those in flight, then every worker finishes the message in
hand, records its position and closes its consumer or producer, then the stores close.

Every server is built by :func:`server_config`: a client must send its request headers within
``header_timeout_s`` of connecting (or of starting its next request on a kept-alive
connection), else the connection is closed; uvicorn's own log lines go through the process's
structured log (see :mod:`seatledger.logging`). Bodies and answers are bounded by the app
(:mod:`seatledger.http.limits`).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from seatledger.config import Settings
from seatledger.logging import get_logger
from seatledger.runtime import Supervisor

log = get_logger("seatledger.serving")

#: Seconds a client may take to send a request's headers.
DEFAULT_HEADER_TIMEOUT_S = 10.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers: armed when the
    connection opens and when a request begins, cleared when its headers are complete; a
    client that has not finished its headers by then is disconnected."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = float(
            getattr(config, "header_timeout_s", None) or DEFAULT_HEADER_TIMEOUT_S
        )
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout_s, self._headers_too_slow
            )

    def _clear_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            log.info("http.header_timeout", timeout_s=self.header_timeout_s)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._clear_header_deadline()
        super().on_headers_complete()


def server_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    **kwargs: Any,
) -> uvicorn.Config:
    """The uvicorn configuration every process serves HTTP with: the header deadline, no
    access log (the app logs one line per request), uvicorn's log records through the
    process's structured log (``log_config=None``). ``kwargs`` go to :class:`uvicorn.Config`."""
    kwargs.setdefault("log_config", None)
    kwargs.setdefault("access_log", False)
    config = uvicorn.Config(app, host=host, port=port, http=HeaderTimeoutProtocol, **kwargs)
    config.header_timeout_s = header_timeout_s  # type: ignore[attr-defined]
    return config


def serve_until_stopped(
    app: FastAPI,
    *,
    host: str,
    port: int,
    supervisor: Supervisor,
    on_start: Callable[[], None] = lambda: None,
    on_ready: Callable[[uvicorn.Server], None] = lambda server: None,
    on_stop: Callable[[], None] = lambda: None,
    settings: Settings | None = None,
) -> int:
    """Serve until stopped; the exit status (1 when a worker did not stop in time).

    ``settings`` give the bounds of requests (``SEATLEDGER_HTTP_*``); without them, the
    defaults."""
    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    if settings is not None:
        header_timeout_s = settings.http_header_timeout_s
        apply_request_limits(app, settings)
    server = uvicorn.Server(
        server_config(app, host=host, port=port, lifespan="on", header_timeout_s=header_timeout_s)
    )
    on_start()
    supervisor.start()
    previous = _quiet_stop_signals()
    watcher = threading.Thread(target=_announce, args=(server, on_ready), daemon=True)
    watcher.start()
    try:
        server.run()  # returns after SIGTERM/SIGINT (uvicorn handles both gracefully)
    finally:
        still_running = supervisor.stop()
        on_stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("process.stopped", still_running=still_running)
    if not server.started:
        return 1
    return 1 if still_running else 0


def apply_request_limits(app: FastAPI, settings: Settings) -> None:
    """Bound the requests of an app built by :func:`seatledger.http.create_app` as the
    settings say (before it serves its first request)."""
    limits = getattr(app.state, "request_limits", None)
    if limits is not None:
        limits.max_body_bytes = settings.http_max_body_bytes
        limits.body_timeout_s = settings.http_body_timeout_s
        limits.max_response_bytes = settings.http_max_response_bytes


def _announce(server: uvicorn.Server, on_ready: Callable[[uvicorn.Server], None]) -> None:
    while not server.started and not server.should_exit:
        threading.Event().wait(0.05)
    if server.started:
        on_ready(server)


def _quiet_stop_signals() -> dict[int, Any]:
    """uvicorn re-raises the stop signal with the handler it found when it exits: install a
    quiet one, so that the workers are stopped in order after the server."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def note(signum: int, _frame: Any) -> None:
        log.info("process.stopping", signal=signal.Signals(signum).name)

    return {signum: signal.signal(signum, note) for signum in (signal.SIGTERM, signal.SIGINT)}


def bound_port(server: uvicorn.Server) -> int | None:
    """The port the server listens on (useful with port 0)."""
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return None
