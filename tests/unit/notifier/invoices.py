"""A clock for the notifier's tests (sample invoices: :func:`tests.samples.make_invoice`)."""

from __future__ import annotations

from datetime import UTC, datetime


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now += timedelta(**delta)
