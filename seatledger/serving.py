"""Running an HTTP app and a process's background workers until SIGTERM or Ctrl-C.

Order on start: the workers, then the HTTP server. On SIGTERM/SIGINT the HTTP server stops
accepting requests and finishes those in flight, then every worker finishes the message in
hand, records its position and closes its consumer or producer, then the stores close.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from seatledger.logging import get_logger
from seatledger.runtime import Supervisor

log = get_logger("seatledger.serving")


def serve_until_stopped(
    app: FastAPI,
    *,
    host: str,
    port: int,
    supervisor: Supervisor,
    on_start: Callable[[], None] = lambda: None,
    on_ready: Callable[[uvicorn.Server], None] = lambda server: None,
    on_stop: Callable[[], None] = lambda: None,
) -> int:
    """Serve until stopped; the exit status (1 when a worker did not stop in time)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
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
