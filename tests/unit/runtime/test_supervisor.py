from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from seatledger.runtime import Supervisor, polling


def test_a_crashed_worker_is_restarted_and_counted() -> None:
    registry = CollectorRegistry()
    runs: list[int] = []

    def flaky(stop: threading.Event) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("database went away")
        stop.wait()

    supervisor = Supervisor(registry=registry, max_backoff_s=0.01)
    supervisor.add("flaky", flaky)
    supervisor.start()
    deadline = time.monotonic() + 10
    while len(runs) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(runs) == 3
    assert registry.get_sample_value("seatledger_worker_restarts_total", {"worker": "flaky"}) == 2
    assert supervisor.stop(timeout_s=5) == []


def test_polling_worker_calls_again_at_once_while_busy_and_stops_when_asked() -> None:
    calls: list[float] = []

    def step() -> bool:
        calls.append(time.monotonic())
        return len(calls) < 5  # busy for four calls, then idle

    supervisor = Supervisor()
    supervisor.add("poller", polling(step, idle_s=60))
    supervisor.start()
    deadline = time.monotonic() + 5
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert supervisor.stop(timeout_s=5) == []
    assert time.monotonic() - started < 2  # the idle wait is interrupted by stop
    assert len(calls) == 5
    assert calls[4] - calls[0] < 1


def test_worker_names_are_unique() -> None:
    supervisor = Supervisor()
    supervisor.add("relay", lambda stop: None)
    with pytest.raises(ValueError, match="relay"):
        supervisor.add("relay", lambda stop: None)
