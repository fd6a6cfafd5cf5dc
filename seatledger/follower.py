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
- What the mapper or the handler raises otherwise follows the consumer's rule
  (:mod:`seatledger.consumer`): an infrastructure outage (:func:`~seatledger.consumer.is_outage`)
  is retried with backoff for as long as it takes and never skips anything; any other failure
  is retried at most :attr:`~seatledger.consumer.RetryPolicy.max_attempts` times, then the
  notification goes to the ``dead_letters`` sink with the reason ``attempts_exhausted`` (its
  stored event as the value, since it may not map to a contract event at all) and the follower
  moves on. A notification failing for longer than ``stuck_after_s`` makes the follower stuck
  (``seatledger_consumer_stuck``, readiness check ``consumer:<name>``).
- :class:`JsonLinesDeadLetters` is a sink that keeps each dead letter as one JSON line in a
  file (the embedded default writes ``<data_dir>/dead-letters/<consumer>.jsonl``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.application import Application
from prometheus_client import CollectorRegistry

from schemas.envelope import CloudEvent
from schemas.registry import ContractViolation, check_cloud_event
from seatledger.consumer import (
    ATTEMPTS_EXHAUSTED_REASON,
    DEFAULT_RETRY,
    POISON_REASON,
    ConsumerMetrics,
    DeadLetter,
    FailureCount,
    Handler,
    PoisonMessage,
    PositionReader,
    RetryPolicy,
    SkipRecorder,
    sleep_unless_stopped,
)
from seatledger.tracking import Position

__all__ = ["DeadLetterSink", "JsonLinesDeadLetters", "Mapper", "NotificationLogFollower"]

#: Maps an upstream domain event to its contract event, or None when it is not published.
Mapper = Callable[[Any], "CloudEvent | None"]
#: Receives what can never be processed.
DeadLetterSink = Callable[[DeadLetter], object]

_log = structlog.get_logger("seatledger.follower")


class JsonLinesDeadLetters:
    """A dead-letter sink appending one JSON object per dead letter to ``path``: reason, error,
    source, position, when, and the key and value (UTF-8 text when they are, else base64)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, letter: DeadLetter) -> None:
        record = {
            "reason": letter.reason,
            "error": letter.error,
            "source": letter.position.source,
            "position": letter.position.offset,
            "dead_lettered_at": datetime.now(UTC).isoformat(),
            **_encoded("key", letter.key),
            **_encoded("value", letter.value),
        }
        line = json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="ascii") as file:
                file.write(line)
                file.flush()

    def read(self) -> list[dict[str, Any]]:
        """Every dead letter recorded so far (oldest first)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="ascii").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def _encoded(name: str, raw: bytes | None) -> dict[str, str | None]:
    if raw is None:
        return {name: None}
    try:
        return {name: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(raw).decode("ascii")}


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
        #: The failures of the notification that fails now (None: nothing fails).
        self._failing: tuple[int, FailureCount] | None = None
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
                if not self._failed(exc, notification, position):
                    # Re-read the stored position: the handler may or may not have recorded it.
                    self._loaded = False
                    return handled
                outcome = "dead_lettered"
            self._failures = 0
            self._recovered()
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
        self._send_dead_letter(letter, event_id=cloud_event.id)

    def _send_dead_letter(self, letter: DeadLetter, *, event_id: str | None) -> None:
        if self._dead_letters is not None:
            self._dead_letters(letter)
        _log.error(
            "event dead-lettered",
            consumer=self.name,
            reason=letter.reason,
            error=letter.error[:500],
            source=letter.position.source,
            notification_id=letter.position.offset,
            event_id=event_id,
        )
        self._metrics.dead_lettered.labels(self.name, letter.reason).inc()
        self._record_skipped(letter.position)

    def _record_skipped(self, position: Position) -> None:
        if self._on_skipped is not None:
            self._on_skipped(position)

    @property
    def stuck(self) -> bool:
        """True while a notification has been failing for longer than the policy's threshold."""
        return not self._metrics.healthy(self.name)

    def _failed(self, exc: Exception, notification: Any, position: Position) -> bool:
        """A failed notification: True when it exhausted its attempts and was dead-lettered
        (the follower moves on), False when it is retried after a backoff."""
        if self._failing is None or self._failing[0] != notification.id:
            self._failing = (notification.id, FailureCount())
            self._metrics.failing(self.name, self._failing[1].since, self._retry.stuck_after_s)
        count = self._failing[1]
        if not count.add(exc) and count.exhausted(self._retry):
            letter = DeadLetter(
                reason=ATTEMPTS_EXHAUSTED_REASON,
                error=f"{count.attempts} attempts failed, the last with {count.last_error}",
                position=position,
                key=str(notification.originator_id).encode(),
                value=bytes(notification.state),
            )
            try:
                self._send_dead_letter(letter, event_id=None)
            except Exception as dead_letter_error:
                self._transient(dead_letter_error, position)
                return False
            return True
        self._transient(exc, position)
        return False

    def _recovered(self) -> None:
        if self._failing is not None:
            self._failing = None
            self._metrics.failing(self.name, None, self._retry.stuck_after_s)

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
