"""uvicorn servers a test runs in threads of its own, each on a free port of 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class ServerThreads:
    """Starts servers in daemon threads and stops every one it started."""

    def __init__(self) -> None:
        self._running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(self, config: uvicorn.Config) -> int:
        """Serve ``config`` on a free port of 127.0.0.1; returns the port once it serves
        (``RuntimeError`` if that takes longer than 10 s)."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self._running.append((server, thread))
        return port

    def stop(self) -> None:
        """Ask every server started to exit and wait for its thread (10 s each at most)."""
        for server, thread in self._running:
            server.should_exit = True
            thread.join(10)
