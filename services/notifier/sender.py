"""The sender: works the queue of unsent deliveries, one SMTP attempt per due delivery.

The queue is not a second source of truth: it is a projection of the notifier's own
notification log (every ``Requested``, ``AttemptStarted``, ``LeaseRenewed``, ``AttemptFailed``,
``Sent``, ``Failed``), rebuilt from the store on start and kept current by reading the log's
tail. Every notifier instance sharing one store sees every unsent delivery; the lease taken by
``AttemptStarted`` (optimistic concurrency on the delivery) lets exactly one of them send each
attempt.

Order of one attempt, and what a crash at each step does:

1. ``AttemptStarted`` is saved (the lease, :data:`DEFAULT_LEASE` long). A crash before this:
   nothing happened; the delivery is still due and is sent once.
2. The message is rendered and handed to the SMTP server. Meanwhile a :class:`LeaseKeeper`
   renews the lease (``LeaseRenewed``) every fifth of it; a sender that cannot renew aborts
   the hand-over well before the lease ends (see :class:`LeaseKeeper`), so an attempt is never
   taken over while its sender still sends.
3. ``Sent`` (or ``AttemptFailed`` / ``Failed``) is saved.

A crash (or a lost database connection) between the SMTP server's final ``250`` after ``DATA``
in step 2 and the commit of step 3 is the one window in which a message is sent twice: the
lease expires (at most ``lease`` after its last renewal, so a restarted or another instance
resumes the delivery within ``lease`` plus one poll interval), the delivery is due again, and
the same message is sent again, with the same ``Message-ID`` (derived from the invoice id), so
a receiving system that keeps Message-IDs drops it. Only deliveries whose attempt was in flight
at the crash are affected; with ``workers = 1`` that is at most one message, with ``workers =
N`` at most N.

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
from services.notifier.domain import Delivery, DeliveryError, RetryPolicy, delivery_event_name
from services.notifier.message import InvalidMessageInput, MessageBuilder
from services.notifier.transport import LeaseLost, PermanentFailure, TemporaryFailure, Transport

Clock = Callable[[], datetime]

log = get_logger("seatledger.notifier.sender")

#: How long an attempt's lease lasts without renewal: after a sender dies, its attempt in
#: flight is due again at most this long after the lease's last renewal.
DEFAULT_LEASE = timedelta(seconds=10)


class Outcome(Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"  # not due any more, or another sender holds it


class SenderObserver(Protocol):
    """Hooks for metrics (kept out of the sender so it never imports a metrics library)."""

    def attempt_finished(self, outcome: str, reason: str | None, seconds: float) -> None: ...

    def lease_lost(self) -> None: ...


class _NoObserver:
    def attempt_finished(self, outcome: str, reason: str | None, seconds: float) -> None:
        return None

    def lease_lost(self) -> None:
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
        if kind in ("AttemptStarted", "LeaseRenewed"):
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


class LeaseKeeper:
    """Keeps the lease of one attempt while its message is rendered and handed over; the
    :class:`~services.notifier.transport.Fence` its transport checks.

    A thread renews the lease every ``lease / 5`` (``LeaseRenewed``, optimistic concurrency on
    the delivery). The lease is *lost*:

    - at once, when a renewal finds that the delivery changed meanwhile (another sender took
      the attempt over, or recorded its outcome);
    - when no renewal succeeded by ``lease_until - 2/5 x lease`` (the store is unreachable,
      or slow to answer): the sender gives up before any other sender may take the attempt
      over, which leaves a margin of ``2/5 x lease`` (4 s by default) for clock skew between
      instances and for the abort itself. A watchdog thread of its own keeps this deadline, so
      a renewal stuck in the store does not delay it.

    A lost lease aborts the hand-over in progress (the transport's registered abort cuts the
    SMTP connection), and :meth:`check` refuses to start one (the transport calls it before
    ``DATA``).
    """

    def __init__(
        self,
        app: NotifierApplication,
        delivery: Delivery,
        lease: timedelta,
        clock: Clock,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        if delivery.lease_until is None:
            raise ValueError("the delivery is not in an attempt")
        self.app = app
        self.delivery = delivery
        self.attempt = delivery.attempts
        self.lease = lease
        self.clock = clock
        self.renew_every = lease / 5
        self.margin = lease * 2 / 5
        self.lease_until: datetime = delivery.lease_until
        self.renewals = 0
        self.lost = False
        #: A renewal failed in the store: whether it was saved is unknown, so the delivery is
        #: loaded again before the next change.
        self.uncertain = False
        self._on_lost = on_lost
        self._aborts: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the fence ---------------------------------------------------------------------------

    def check(self) -> None:
        with self._lock:
            lost, lease_until = self.lost, self.lease_until
        if lost:
            raise LeaseLost(f"attempt {self.attempt}: the lease was lost")
        if self.clock() >= lease_until - self.margin:
            raise LeaseLost(f"attempt {self.attempt}: the lease could not be renewed in time")

    def on_lost(self, abort: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            lost = self.lost
            if not lost:
                self._aborts.append(abort)
        if lost:
            abort()

        def unregister() -> None:
            with self._lock:
                if abort in self._aborts:
                    self._aborts.remove(abort)

        return unregister

    # -- renewal -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One renewal (the keeper's thread calls it every ``lease / 5``)."""
        if self.lost:
            return
        now = self.clock()
        conflict = False
        try:
            if self.uncertain:
                fresh = self.app.find(self.delivery.id)
                if fresh is None or not fresh.in_attempt(self.attempt):
                    conflict = True
                else:
                    self.delivery, self.uncertain = fresh, False
            if not conflict:
                renewed = self.app.renew_lease(self.delivery, self.attempt, now, self.lease)
                conflict = not renewed
                if renewed:
                    with self._lock:
                        self.lease_until = now + self.lease
                    self.renewals += 1
                    return
        except DeliveryError:
            conflict = True
        except Exception as exc:  # the store is unreachable: try again until the margin
            self.uncertain = True
            log.warning(
                "notifier.lease_renewal_failed",
                delivery_id=str(self.delivery.id),
                attempt=self.attempt,
                error=type(exc).__name__,
            )
        if conflict or self.clock() >= self.lease_until - self.margin:
            self._lose("taken over" if conflict else "not renewed in time")

    def _lose(self, why: str) -> None:
        with self._lock:
            if self.lost:
                return
            self.lost = True
            aborts, self._aborts = self._aborts, []
        log.warning(
            "notifier.lease_lost", delivery_id=str(self.delivery.id), attempt=self.attempt, why=why
        )
        for abort in aborts:
            abort()
        if self._on_lost is not None:
            self._on_lost()

    def _renew(self) -> None:
        while not self.lost and not self._stop.wait(self.renew_every.total_seconds()):
            self.tick()

    def _watch(self) -> None:
        while not self.lost:
            with self._lock:
                deadline = self.lease_until - self.margin
            remaining = (deadline - self.clock()).total_seconds()
            if remaining <= 0:
                self._lose("not renewed in time")
                return
            if self._stop.wait(min(remaining, self.renew_every.total_seconds() / 2)):
                return

    def start(self) -> LeaseKeeper:
        for name, target in (("renew", self._renew), ("watch", self._watch)):
            thread = threading.Thread(
                target=target, name=f"notifier-lease-{name}-{self.delivery.id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def finish(self) -> Delivery | None:
        """Stop renewing; return the delivery to record the attempt's outcome on, or None when
        the attempt is no longer this sender's to record."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if not (self.lost or self.uncertain):
            return self.delivery
        try:  # the lease was lost, or its last renewal is unknown: ask the store
            fresh = self.app.find(self.delivery.id)
        except Exception:
            return None
        if fresh is None or not fresh.in_attempt(self.attempt):
            return None
        return fresh


@dataclass
class _Result:
    """What one attempt came to, before it is recorded."""

    outcome: Outcome
    reason: str | None = None
    detail: str = ""
    message_id: str | None = None
    elapsed: float = 0.0


@dataclass
class Sender:
    """One pass over the due deliveries (:meth:`run_once`); a loop runs it repeatedly."""

    app: NotifierApplication
    queue: DeliveryQueue
    builder: MessageBuilder
    transport: Transport
    clock: Clock
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = DEFAULT_LEASE
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
        claimed = self.app.claim(delivery_id, self.clock(), self.lease)
        if claimed is None:
            return Outcome.SKIPPED
        bound = log.bind(
            delivery_id=str(claimed.id),
            invoice_number=claimed.invoice_number,
            cloud_id=str(claimed.cloud_id),
            attempt=claimed.attempts,
        )
        keeper = LeaseKeeper(
            self.app, claimed, self.lease, self.clock, self.observer.lease_lost
        ).start()
        try:
            result = self._attempt(claimed, keeper, bound)
        finally:
            delivery = keeper.finish()
        if keeper.lost and result.outcome is Outcome.RETRY:
            result.reason, result.detail = "lease_lost", f"{result.reason}: {result.detail}"
        if delivery is None:
            # Another sender took the attempt over, or the store cannot be reached: the
            # outcome is not this sender's to record (a message handed over is the crash
            # window's one repeat).
            bound.warning(
                "notifier.outcome_not_recorded",
                outcome=result.outcome.value,
                reason=result.reason,
                lease_lost=keeper.lost,
            )
            return Outcome.SKIPPED
        if result.outcome is Outcome.SENT:
            assert result.message_id is not None
            if not self.app.record_sent(delivery, self.clock(), result.message_id):
                bound.warning("notifier.sent_not_recorded", reason="delivery changed meanwhile")
            bound.info(
                "notifier.email_sent",
                message_id=result.message_id,
                seconds=round(result.elapsed, 4),
                lease_renewals=keeper.renewals,
            )
            self.observer.attempt_finished("sent", None, result.elapsed)
            return Outcome.SENT
        if result.outcome is Outcome.RETRY:
            return self._retry(
                delivery, result.reason or "unknown", result.detail, bound, result.elapsed
            )
        return self._failed(
            delivery,
            result.reason or "unknown",
            result.detail,
            result.message_id,
            bound,
            result.elapsed,
        )

    def _attempt(self, delivery: Delivery, keeper: LeaseKeeper, bound: Any) -> _Result:
        """Render and hand over the message (nothing is recorded here)."""
        message_id = self.builder.message_id(delivery.invoice_id)
        try:
            invoice = InvoiceIssued.model_validate(delivery.invoice)
            message = self.builder.build(invoice, self.clock())
        except InvalidMessageInput as exc:
            return _Result(Outcome.FAILED, exc.reason, str(exc))
        except ValidationError as exc:
            return _Result(Outcome.FAILED, "invalid_invoice", str(exc)[:300])
        except Exception as exc:  # the renderer failed: retried, an operator sees it in logs
            bound.exception("notifier.render_failed")
            return _Result(Outcome.RETRY, "render_error", type(exc).__name__)
        started = time.perf_counter()
        try:
            self.transport.send(message, keeper)
        except TemporaryFailure as exc:
            elapsed = time.perf_counter() - started
            return _Result(Outcome.RETRY, exc.reason, exc.detail, None, elapsed)
        except PermanentFailure as exc:
            elapsed = time.perf_counter() - started
            return _Result(Outcome.FAILED, exc.reason, exc.detail, message_id, elapsed)
        return _Result(Outcome.SENT, None, "", message_id, time.perf_counter() - started)

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
