"""Shared steps of the invoicer's integration tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta

from schemas.envelope import CloudEvent
from seatledger.consumer import TrackedConsumer
from services.invoicer.bootstrap import Invoicer
from tests.unit.invoicer.ledger_events import (
    envelope,
    license_assigned,
    period_renewed,
    seats_increased,
)


def ledger_history(
    clouds: int, purchases_per_cloud: int, *, renewals: bool = True
) -> list[CloudEvent]:
    """Purchases (and a renewal and a licence assignment per cloud): each invoice-relevant."""
    events: list[CloudEvent] = []
    for _ in range(clouds):
        cloud = uuid.uuid4()
        events.append(envelope(license_assigned(cloud)))
        for n in range(purchases_per_cloud):
            day = date(2026, 10, 31) + timedelta(days=n % 30)
            events.append(envelope(seats_increased(day, cloud_id=cloud, added=1 + n % 3)))
        if renewals:
            events.append(envelope(period_renewed(10, cloud_id=cloud)))
    return events


def invoice_count(events: list[CloudEvent]) -> int:
    return sum(1 for e in events if e.type.split(".")[2] in ("SeatsIncreased", "PeriodRenewed"))


def run_in_thread(consumer: TrackedConsumer) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(0.1)


def all_numbers(invoicer: Invoicer, year: int = 2026) -> list[str]:
    """Every invoice number issued, read from the invoices themselves (not the series)."""
    numbers = []
    app = invoicer.app
    for notification in app.recorder.select_notifications(start=1, limit=1_000_000):
        event = app.mapper.to_domain_event(notification)
        if type(event).__qualname__ == "Invoice.Issued":
            numbers.append(getattr(event, "number"))  # noqa: B009
    return numbers


def assert_gapless(numbers: list[str], expected: int, prefix: str = "SL", year: int = 2026) -> None:
    assert len(numbers) == expected, f"{len(numbers)} invoices, expected {expected}"
    assert len(set(numbers)) == len(numbers), "duplicate invoice numbers"
    assert sorted(numbers) == [f"{prefix}-{year}-{n:06d}" for n in range(1, expected + 1)]
