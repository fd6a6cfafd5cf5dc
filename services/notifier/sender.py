"""The sender: works the queue of unsent deliveries, one SMTP attempt per due delivery.

The queue is not a second source of truth: it is a projection of the notifier's own
notification log (every ``Requested``, ``AttemptStarted``, ``AttemptFailed``, ``Sent``,
``Failed``), rebuilt from the store on start and kept current by reading the log's tail. Every
notifier instance sharing one store sees every unsent delivery; the lease taken by
``AttemptStarted`` (optimistic concurrency on the delivery) lets exactly one of them send each
attempt.

Order of one attempt, and what a crash at each step does:

1. ``AttemptStarted`` is saved (the lease). A crash before this: nothing happened; the
   delivery is still due and is sent once.
2. The message is rendered and handed to the SMTP server.
3. ``Sent`` (or ``AttemptFailed`` / ``Failed``) is saved.

A crash (or a lost database connection) between the SMTP server's final ``250`` after ``DATA``
in step 2 and the commit of step 3 is the one window in which a message is sent twice: the
lease expires (``lease`` after step 1), the delivery is due again, and the same message is
sent again, with the same ``Message-ID`` (derived from the invoice id), so a receiving system
that keeps Message-IDs drops it. Only deliveries whose attempt was in flight at the crash are
affected; with ``workers = 1`` that is at most one message.

Temporary failures are rescheduled with exponential backoff and jitter; other deliveries keep
being sent meanwhile (the queue is ordered by due time, and a failing delivery goes back to
its place in it). Permanent failures are recorded once and never retried.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

from pydantic import ValidationError

from schemas.invoices import InvoiceIssued
from seatledger.logging import get_logger
from services.notifier.application import NotifierApplication
from services.notifier.domain import Delivery, RetryPolicy, delivery_event_name
from services.notifier.message import InvalidMessageInput, MessageBuilder
from services.notifier.transport import PermanentFailure, TemporaryFailure, Transport

Clock = Callable[[], datetime]

log = get_logger("seatledger.notifier.sender")


class Outcome(Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"  # not due any more, or another sender holds it


class SenderObserver(Protocol):
    """Hooks for metrics (kept out of the sender so it never imports a metrics library)."""

    def attempt_finished(self, outcome: str, reason: str | None, seconds: float) -> None: ...


class _NoObserver:
    def attempt_finished(self, outcome: str, reason: str | None, seconds: float) -> None:
        return None


@dataclass
class _Entry:
    issued_at: datetime
    due_at: datetime
    failed_attempts: int = 0


@dataclass
class DeliveryQueue:
    """Unsent deliveries, with when each is due: a projection of the notification log."""

    app: NotifierApplication
    batch_size: int = 500
    _entries: dict[UUID, _Entry] = field(default_factory=dict)
    _position: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def catch_up(self) -> int:
        """Apply the log's new events; return how many were read."""
        with self._lock:
            read = 0
            recorder = self.app.recorder
            while True:
                notifications = recorder.select_notifications(
                    self._position, self.batch_size, inclusive_of_start=False
                )
                for notification in notifications:
                    self._apply(self.app.mapper.to_domain_event(notification))
                    self._position = notification.id
                read += len(notifications)
                if len(notifications) < self.batch_size:
                    return read

    def _apply(self, domain_event: Any) -> None:
        delivery_id: UUID = domain_event.originator_id
        kind = delivery_event_name(domain_event)
        if kind == "Requested":
            self._entries[delivery_id] = _Entry(
                issued_at=domain_event.issued_at, due_at=domain_event.requested_at
            )
            return
        entry = self._entries.get(delivery_id)
        if entry is None:
            return
        if kind == "AttemptStarted":
            entry.due_at = domain_event.lease_until
        elif kind == "AttemptFailed":
            entry.due_at = domain_event.retry_at
            entry.failed_attempts += 1
        elif kind in ("Sent", "Failed"):
            del self._entries[delivery_id]

    def due(self, now: datetime, limit: int) -> list[UUID]:
        with self._lock:
            ready = sorted(
                (entry.due_at, delivery_id)
                for delivery_id, entry in self._entries.items()
                if entry.due_at <= now
            )
        return [delivery_id for _, delivery_id in ready[:limit]]

    def next_due_at(self) -> datetime | None:
        with self._lock:
            return min((entry.due_at for entry in self._entries.values()), default=None)

    def size(self) -> int:
        """Deliveries not yet sent (nor failed for good)."""
        with self._lock:
            return len(self._entries)

    def retrying(self) -> int:
        """Deliveries waiting for a retry after a temporary failure."""
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.failed_attempts > 0)

    def oldest_issued_at(self) -> datetime | None:
        with self._lock:
            return min((entry.issued_at for entry in self._entries.values()), default=None)


@dataclass
class Sender:
    """One pass over the due deliveries (:meth:`run_once`); a loop runs it repeatedly."""

    app: NotifierApplication
    queue: DeliveryQueue
    builder: MessageBuilder
    transport: Transport
    clock: Clock
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = timedelta(minutes=2)
    rng: random.Random = field(default_factory=random.Random)
    observer: SenderObserver = field(default_factory=_NoObserver)
    workers: int = 4
    batch_size: int = 100

    def run_once(self, stop: threading.Event | None = None) -> dict[Outcome, int]:
        """Send every delivery due now; return how many ended how. Once ``stop`` is set, the
        attempts in hand are finished and recorded, and no new one starts."""
        self.queue.catch_up()
        due = self.queue.due(self.clock(), self.batch_size)
        counts = {outcome: 0 for outcome in Outcome}
        if not due:
            return counts

        def attempt(delivery_id: UUID) -> Outcome:
            if stop is not None and stop.is_set():
                return Outcome.SKIPPED
            return self.process(delivery_id)

        if self.workers <= 1 or len(due) == 1:
            results = [attempt(delivery_id) for delivery_id in due]
        else:
            with ThreadPoolExecutor(
                max_workers=min(self.workers, len(due)), thread_name_prefix="notifier-send"
            ) as pool:
                results = list(pool.map(attempt, due))
        for outcome in results:
            counts[outcome] += 1
        self.queue.catch_up()
        return counts

    def process(self, delivery_id: UUID) -> Outcome:
        """Claim, send and record one delivery."""
        delivery = self.app.claim(delivery_id, self.clock(), self.lease)
        if delivery is None:
            return Outcome.SKIPPED
        bound = log.bind(
            delivery_id=str(delivery.id),
            invoice_number=delivery.invoice_number,
            cloud_id=str(delivery.cloud_id),
            attempt=delivery.attempts,
        )
        message_id = self.builder.message_id(delivery.invoice_id)
        try:
            invoice = InvoiceIssued.model_validate(delivery.invoice)
            message = self.builder.build(invoice, self.clock())
        except InvalidMessageInput as exc:
            return self._failed(delivery, exc.reason, str(exc), None, bound, 0.0)
        except ValidationError as exc:
            return self._failed(delivery, "invalid_invoice", str(exc)[:300], None, bound, 0.0)
        except Exception as exc:  # the renderer failed: retried, an operator sees it in logs
            bound.exception("notifier.render_failed")
            return self._retry(delivery, "render_error", type(exc).__name__, bound, 0.0)
        started = time.perf_counter()
        try:
            self.transport.send(message)
        except TemporaryFailure as exc:
            elapsed = time.perf_counter() - started
            return self._retry(delivery, exc.reason, exc.detail, bound, elapsed)
        except PermanentFailure as exc:
            elapsed = time.perf_counter() - started
            return self._failed(delivery, exc.reason, exc.detail, message_id, bound, elapsed)
        elapsed = time.perf_counter() - started
        if not self.app.record_sent(delivery, self.clock(), message_id):
            bound.warning("notifier.sent_not_recorded", reason="delivery changed meanwhile")
        bound.info("notifier.email_sent", message_id=message_id, seconds=round(elapsed, 4))
        self.observer.attempt_finished("sent", None, elapsed)
        return Outcome.SENT

    def _retry(
        self, delivery: Delivery, reason: str, detail: str, bound: Any, elapsed: float
    ) -> Outcome:
        now = self.clock()
        retry_at = self.retry_policy.next_attempt(
            delivery.requested_at, now, delivery.attempts, self.rng
        )
        if retry_at is None:
            detail = f"gave up after {delivery.attempts} attempts; last: {reason}: {detail}"
            return self._failed(delivery, "retries_exhausted", detail, None, bound, elapsed)
        self.app.record_retry(delivery, now, reason, detail, retry_at)
        bound.warning(
            "notifier.email_deferred", reason=reason, detail=detail, retry_at=retry_at.isoformat()
        )
        self.observer.attempt_finished("retry", reason, elapsed)
        return Outcome.RETRY

    def _failed(
        self,
        delivery: Delivery,
        reason: str,
        detail: str,
        message_id: str | None,
        bound: Any,
        elapsed: float,
    ) -> Outcome:
        self.app.record_failed(delivery, self.clock(), reason, detail, message_id)
        bound.error("notifier.email_failed", reason=reason, detail=detail)
        self.observer.attempt_finished("failed", reason, elapsed)
        return Outcome.FAILED


@dataclass
class SenderLoop:
    """Runs :meth:`Sender.run_once` until ``stop`` is set (a supervisor's worker);
    :meth:`wake` starts the next pass at once (called when a delivery was accepted)."""

    sender: Sender
    poll_interval_s: float = 1.0
    _wake: threading.Event = field(default_factory=threading.Event)
    passes: int = 0

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            try:
                self.sender.run_once(stop)
                self.passes += 1
                failures = 0
            except Exception:  # the store is unreachable: wait, then try again
                failures += 1
                log.exception("notifier.sender_pass_failed", consecutive=failures)
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            self._wait(stop, self._sleep_s())

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and not self._wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(remaining, 0.1))

    def _sleep_s(self) -> float:
        next_due = self.sender.queue.next_due_at()
        if next_due is None:
            return self.poll_interval_s
        until = (next_due - self.sender.clock()).total_seconds()
        return max(0.01, min(self.poll_interval_s, until))
