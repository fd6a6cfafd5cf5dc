"""Background workers of a service process: relays, consumers, followers, schedulers.

Each worker is a function ``work(stop)`` that returns when ``stop`` is set. The
:class:`Supervisor` runs each in a thread of its own, restarts one that crashed (after a
growing pause, so a broken database is not hammered), and stops them all in order. Workers
resume from their stored positions, so a restart never loses or repeats acknowledged work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from seatledger.logging import get_logger

Work = Callable[[threading.Event], None]

log = get_logger("seatledger.runtime")


def polling(step: Callable[[], bool], idle_s: float = 0.2) -> Work:
    """A worker that calls ``step`` until stopped; ``step`` returns True when it did work
    (then it is called again at once) and False when idle (then the worker waits ``idle_s``)."""

    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            if not step():
                stop.wait(idle_s)

    return work


@dataclass
class _Worker:
    name: str
    work: Work
    thread: threading.Thread | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Runs workers in threads; restarts crashed ones with backoff (at most ``max_backoff_s``)."""

    registry: CollectorRegistry | None = None
    max_backoff_s: float = 30.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    _workers: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._restarts: Counter | None = None
        self._running: Gauge | None = None
        if self.registry is not None:
            self._restarts = Counter(
                "seatledger_worker_restarts_total",
                "Background workers restarted after a crash",
                ["worker"],
                registry=self.registry,
            )
            self._running = Gauge(
                "seatledger_worker_running",
                "1 while a background worker runs",
                ["worker"],
                registry=self.registry,
            )

    def add(self, name: str, work: Work) -> None:
        if any(worker.name == name for worker in self._workers):
            raise ValueError(f"a worker named {name!r} exists already")
        self._workers.append(_Worker(name, work))

    def start(self) -> None:
        for worker in self._workers:
            worker.thread = threading.Thread(
                target=self._guard, args=(worker,), name=f"seatledger-{worker.name}", daemon=True
            )
            worker.thread.start()

    def _guard(self, worker: _Worker) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            if self._running is not None:
                self._running.labels(worker.name).set(1)
            started = time.monotonic()
            try:
                worker.work(self.stop_event)
            except Exception:
                log.exception("worker_crashed", worker=worker.name, restart_in_s=backoff)
                worker.restarts += 1
                if self._restarts is not None:
                    self._restarts.labels(worker.name).inc()
            else:
                break  # returned normally: it saw the stop event
            finally:
                if self._running is not None:
                    self._running.labels(worker.name).set(0)
            if time.monotonic() - started > 60:
                backoff = 0.5  # it ran well for a while: start the backoff afresh
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def alive(self) -> dict[str, bool]:
        return {
            worker.name: worker.thread is not None and worker.thread.is_alive()
            for worker in self._workers
        }

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        """Ask every worker to stop and wait; returns the names of those still running."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(max(deadline - time.monotonic(), 0.0))
        return [name for name, alive in self.alive().items() if alive]
