"""The embedded default's consumer: follow an upstream application's notification log directly.

With no broker configured, the invoicer and the notifier run in the same process as the
application they consume and read its notification log by position instead of a topic. The
path of a message is otherwise the same as with Kafka: the upstream domain event is mapped by
the same contract mapping the relay uses (``services.<upstream>.contract.to_cloud_event``),
validated against the contract, and handed to the same handler with the same tracking — the
position is ``Position(upstream_name, notification_id)``.

- Notification ids may have gaps; the follower asks for ids after its position, never for
  ``position + 1`` exactly.
- An event the mapper returns None for (an internal event that is not published) still
  advances the position: the follower records it through ``on_skipped`` (typically
  ``lambda p: app.save_tracked(p)``), exactly as the Kafka consumer records a dead-lettered
  message.
- A mapped event that fails its contract, or that the handler refuses with
  :class:`~seatledger.consumer.PoisonMessage`, goes to the ``dead_letters`` sink (default: an
  error log line and the dead-letter metric; there is no dead-letter topic without a broker)
  and its position is recorded through ``on_skipped``.
- Anything else the mapper or handler raises is transient: retried with backoff, never skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from eventsourcing.application import Application
from prometheus_client import CollectorRegistry

from schemas.envelope import CloudEvent
from schemas.registry import ContractViolation, check_cloud_event
from seatledger.consumer import (
    DEFAULT_RETRY,
    POISON_REASON,
    ConsumerMetrics,
    DeadLetter,
    Handler,
    PoisonMessage,
    PositionReader,
    RetryPolicy,
    SkipRecorder,
    sleep_unless_stopped,
)
from seatledger.tracking import Position

__all__ = ["DeadLetterSink", "Mapper", "NotificationLogFollower"]

#: Maps an upstream domain event to its contract event, or None when it is not published.
Mapper = Callable[[Any], "CloudEvent | None"]
#: Receives what can never be processed.
DeadLetterSink = Callable[[DeadLetter], object]

_log = structlog.get_logger("seatledger.follower")


class NotificationLogFollower:
    """Reads ``upstream_app``'s notification log after the stored position, in batches."""

    def __init__(
        self,
        upstream_app: Application[Any],
        upstream_name: str,
        mapper: Mapper,
        handler: Handler,
        positions: PositionReader,
        *,
        on_skipped: SkipRecorder | None = None,
        dead_letters: DeadLetterSink | None = None,
        name: str | None = None,
        batch_size: int = 500,
        poll_interval_s: float = 0.1,
        registry: CollectorRegistry | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.upstream_name = upstream_name
        self.name = name or f"follower:{upstream_name}"
        self._app = upstream_app
        self._mapper = mapper
        self._handler = handler
        self._positions = positions
        self._on_skipped = on_skipped
        self._dead_letters = dead_letters
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._retry = retry
        self._metrics = ConsumerMetrics.of(registry)
        #: The last notification id handled; None until read from the database.
        self._position: int | None = None
        self._loaded = False
        self._failures = 0
        self._stop: threading.Event | None = None

    @property
    def position(self) -> int | None:
        """The last notification id this follower handled (None: nothing yet)."""
        return self._position

    def run(self, stop: threading.Event) -> None:
        """Follow the log until ``stop`` is set."""
        self._stop = stop
        while not stop.is_set():
            if self.poll_once() == 0:
                stop.wait(self._poll_interval_s)

    def catch_up(self, timeout_s: float = 30.0) -> int:
        """Process everything recorded so far (tests, CLI one-shots); the count handled."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while True:
            handled = self.poll_once()
            total += handled
            if handled == 0:
                head = self._app.recorder.max_notification_id()
                if head is None or (self._position is not None and self._position >= head):
                    return total
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not catch up within {timeout_s}s")

    def poll_once(self) -> int:
        """Process one batch after the position; the number of notifications handled."""
        try:
            if not self._loaded:
                self._position = self._positions(self.upstream_name)
                self._loaded = True
            notifications = self._app.recorder.select_notifications(
                start=self._position or 0, limit=self._batch_size, inclusive_of_start=False
            )
        except Exception as exc:
            self._transient(exc, None)
            return 0
        handled = 0
        for notification in notifications:
            position = Position(self.upstream_name, notification.id)
            try:
                outcome = self._deliver(notification, position)
            except Exception as exc:
                self._transient(exc, position)
                # Re-read the stored position: the handler may or may not have recorded it.
                self._loaded = False
                return handled
            self._failures = 0
            self._position = notification.id
            self._metrics.messages.labels(self.name, outcome).inc()
            self._metrics.position.labels(self.name, self.upstream_name).set(notification.id)
            handled += 1
        return handled

    def _deliver(self, notification: Any, position: Position) -> str:
        domain_event = self._app.mapper.to_domain_event(notification)
        cloud_event = self._mapper(domain_event)
        if cloud_event is None:
            self._record_skipped(position)
            return "not_published"
        try:
            parsed = check_cloud_event(cloud_event)
        except ContractViolation as exc:
            self._dead_letter(cloud_event, position, exc.reason, str(exc))
            return "dead_lettered"
        structlog.contextvars.bind_contextvars(event_id=cloud_event.id, event_type=cloud_event.type)
        started = time.perf_counter()
        try:
            self._handler(parsed.cloud_event, parsed.data, position)
        except PoisonMessage as exc:
            self._dead_letter(cloud_event, position, POISON_REASON, str(exc) or "poison")
            return "dead_lettered"
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type")
        self._metrics.handle_seconds.labels(self.name).observe(time.perf_counter() - started)
        return "processed"

    def _dead_letter(
        self, cloud_event: CloudEvent, position: Position, reason: str, error: str
    ) -> None:
        letter = DeadLetter(
            reason=reason,
            error=error,
            position=position,
            key=cloud_event.subject.encode(),
            value=cloud_event.to_json_bytes(),
        )
        if self._dead_letters is not None:
            self._dead_letters(letter)
        _log.error(
            "event dead-lettered",
            consumer=self.name,
            reason=reason,
            error=error[:500],
            source=position.source,
            notification_id=position.offset,
            event_id=cloud_event.id,
        )
        self._metrics.dead_lettered.labels(self.name, reason).inc()
        self._record_skipped(position)

    def _record_skipped(self, position: Position) -> None:
        if self._on_skipped is not None:
            self._on_skipped(position)

    def _transient(self, exc: Exception, position: Position | None) -> None:
        self._failures += 1
        delay = self._retry.delay(self._failures)
        self._metrics.transient_errors.labels(self.name).inc()
        _log.warning(
            "notification processing failed, retrying",
            consumer=self.name,
            source=self.upstream_name,
            notification_id=None if position is None else position.offset,
            error=repr(exc),
            retry_in_s=delay,
        )
        sleep_unless_stopped(self._stop, delay)
