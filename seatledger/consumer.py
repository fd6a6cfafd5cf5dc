"""The tracked Kafka consumer shared by the invoicer and the notifier.

Delivery is at-least-once from the broker; processing is exactly-once because the consumer's
position lives in its own database, recorded in the same transaction as the state change it
caused (:meth:`seatledger.tracking.TrackedApplication.save_tracked`). Kafka's committed offsets
are a convenience for tooling (``kafka-consumer-groups``); the database is the truth.

The contract with a handler::

    def handle(cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        ...  # change state and record ``position`` in ONE transaction (save_tracked)

- It receives only messages that met the contract (a parsed envelope and its validated model).
- It raises :class:`PoisonMessage` for a message that can never be processed: the message goes
  to the dead-letter topic and the consumer moves on.
- An infrastructure outage (:func:`is_outage`: the database or the broker does not answer, a
  connection pool times out, a concurrency conflict) is retried after a backoff for as long
  as it takes, while the message's partition is paused (the other partitions go on). An outage
  never dead-letters a message: nothing acknowledged is ever lost. The rule is deliberately
  wide: every failure of the environment counts (any ``OSError``, any database error but a
  ``DataError``, broker errors), also those a deployment causes (a missing table or file),
  because such a failure hits every message alike: dead-lettering would empty the topic into
  the dead-letter topic, while stalling keeps the order and raises the stuck alarm below.
- Any other exception (a bug, a value the domain cannot compute with) is retried too, but at
  most :attr:`RetryPolicy.max_attempts` times in all; then the message is dead-lettered with
  the reason ``attempts_exhausted`` and the last error in its headers, its position is
  recorded, and the consumer moves on. One bad message never stops the others.
- A message that has been failing for longer than :attr:`RetryPolicy.stuck_after_s` makes the
  consumer *stuck*: ``seatledger_consumer_stuck{consumer=...}`` is 1 and
  :meth:`ConsumerMetrics.healthy` (wired into ``/readyz`` as ``consumer:<name>``) is False,
  until the message is processed or dead-lettered.
- A message it does not care about still has its position recorded (``save_tracked(position)``
  with no aggregates), so the stored position never lags behind.

Messages that never reach the handler (dead-lettered ones) are recorded through the
``on_skipped`` callback, typically ``lambda p: app.save_tracked(p)``.

On partition assignment the consumer seeks each partition to the stored position + 1 (or the
beginning when nothing is stored); a message at or below the position it already handled in
this assignment is a duplicate and is skipped.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from eventsourcing.persistence import DataError as PersistenceDataError
from eventsourcing.persistence import PersistenceError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas._base import EventData
from schemas.envelope import (
    DLQ_CONSUMER_GROUP_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    CloudEvent,
)
from schemas.registry import ContractViolation, parse_cloud_event
from seatledger.kafka import consumer_config, dead_letter_topic, producer_config
from seatledger.metrics import PerRegistry
from seatledger.tracking import ConcurrencyConflict, Position

__all__ = [
    "ATTEMPTS_EXHAUSTED_REASON",
    "ConsumerMetrics",
    "DeadLetter",
    "DeadLetterUnavailable",
    "Handler",
    "PoisonMessage",
    "PositionReader",
    "RetryPolicy",
    "SkipRecorder",
    "TrackedConsumer",
    "is_outage",
]

#: Processes one contract event and records its position (see the module documentation).
Handler = Callable[[CloudEvent, EventData, Position], None]
#: The stored position of a source (``"topic:partition"`` or an upstream application's name):
#: usually ``TrackedApplication.position``.
PositionReader = Callable[[str], "int | None"]
#: Records a position whose message was not handed to the handler (dead-lettered, or not a
#: contract event): usually ``lambda p: app.save_tracked(p)``.
SkipRecorder = Callable[[Position], object]

_log = structlog.get_logger("seatledger.consumer")

#: The reason of a message its handler refused with :class:`PoisonMessage`.
POISON_REASON = "poison"
#: The reason of a message that failed :attr:`RetryPolicy.max_attempts` times (not an outage).
ATTEMPTS_EXHAUSTED_REASON = "attempts_exhausted"


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be processed (it goes to the
    dead-letter topic at once). Everything else a handler raises is retried (see
    :func:`is_outage` for how often)."""


class DeadLetterUnavailable(ConnectionError):
    """The dead-letter destination did not acknowledge a message (an outage: retried)."""


#: Failures that say the infrastructure does not answer (or is contended), not the message.
_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # sockets, timeouts, connection refused (ConnectionError, TimeoutError)
    KafkaException,
    PersistenceError,  # eventsourcing's OperationalError, InterfaceError, IntegrityError, ...
    psycopg.Error,  # OperationalError, InterfaceError, psycopg_pool.PoolTimeout, ...
    sqlite3.Error,  # "database is locked", "unable to open database file", ...
    ConcurrencyConflict,
)
#: Database errors about the value itself: the same message fails the same way every time.
_DETERMINISTIC: tuple[type[BaseException], ...] = (
    PersistenceDataError,
    psycopg.DataError,
    sqlite3.DataError,
)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) says the database or the broker
    is unreachable or contended: such failures are retried without bound and never
    dead-letter a message. Anything else is a failure of the message (a bug, a value the
    domain cannot compute with) and is retried a bounded number of times."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGES) and not isinstance(current, _DETERMINISTIC):
            return True
        current = current.__cause__
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How failures are retried: exponential backoff (``initial_s``, times ``factor``, up to
    ``max_s``); a message failing for another reason than an outage is dead-lettered after
    ``max_attempts`` attempts; a message failing for longer than ``stuck_after_s`` makes the
    consumer stuck (readiness fails)."""

    initial_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0
    max_attempts: int = 5
    stuck_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts is at least 1")

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th consecutive failure (1-based)."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1)))


class FailureCount:
    """The failures of one message so far: outages (unbounded) and others (bounded)."""

    def __init__(self) -> None:
        self.failures = 0
        self.attempts = 0
        self.since = time.monotonic()
        self.last_error = ""

    def add(self, exc: BaseException) -> bool:
        """Count a failure; True when it is an outage (retried without bound)."""
        self.failures += 1
        self.last_error = repr(exc)
        if is_outage(exc):
            return True
        self.attempts += 1
        return False

    def exhausted(self, policy: RetryPolicy) -> bool:
        return self.attempts >= policy.max_attempts


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class DeadLetter:
    """A message that can never be processed, and why."""

    reason: str
    error: str
    position: Position
    key: bytes | None
    value: bytes | None


class ConsumerMetrics(PerRegistry):
    """The consumers' metrics, built once per registry (shared by every consumer and follower
    of a process; the ``consumer`` label names each), and whether each consumer is stuck."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._failing_lock = threading.Lock()
        #: Per consumer: since when (monotonic) its oldest failing message fails, and the
        #: threshold after which that makes it stuck.
        self._failing: dict[str, tuple[float, float]] = {}
        self.stuck = Gauge(
            "seatledger_consumer_stuck",
            "1 while a consumer's message has been failing for longer than its threshold",
            ["consumer"],
            registry=registry,
        )
        self.position = Gauge(
            "seatledger_consumer_position",
            "Last processed offset (Kafka) or notification id (notification log) per source",
            ["consumer", "source"],
            registry=registry,
        )
        self.messages = Counter(
            "seatledger_consumer_messages_total",
            "Messages seen by a consumer, by outcome",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "seatledger_consumer_dead_lettered_total",
            "Messages sent to the dead-letter destination, by reason",
            ["consumer", "reason"],
            registry=registry,
        )
        self.transient_errors = Counter(
            "seatledger_consumer_transient_errors_total",
            "Handler failures that were retried (never dead-lettered)",
            ["consumer"],
            registry=registry,
        )
        self.handle_seconds = Histogram(
            "seatledger_consumer_handle_duration_seconds",
            "Time a handler took to process one message",
            ["consumer"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def failing(self, consumer: str, since: float | None, stuck_after_s: float) -> None:
        """Report that ``consumer``'s oldest failing message fails since ``since`` (monotonic
        seconds); None: nothing fails."""
        with self._failing_lock:
            if since is None:
                self._failing.pop(consumer, None)
            else:
                self._failing[consumer] = (since, stuck_after_s)
        self.stuck.labels(consumer).set_function(lambda: 0.0 if self.healthy(consumer) else 1.0)

    def healthy(self, consumer: str) -> bool:
        """False while ``consumer`` is stuck: a message of it has been failing for longer than
        its threshold (a readiness check)."""
        with self._failing_lock:
            failing = self._failing.get(consumer)
        if failing is None:
            return True
        since, stuck_after_s = failing
        return time.monotonic() - since <= stuck_after_s


def sleep_unless_stopped(stop: threading.Event | None, seconds: float) -> None:
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


@dataclass
class _Held:
    """A message waiting for another attempt."""

    msg: Message
    position: Position
    count: FailureCount
    due: float


def _coordinates(msg: Message) -> tuple[str, int, int]:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a consumed message has a topic, partition and offset")
    return topic, partition, offset


class TrackedConsumer:
    """A Kafka consumer group member whose positions live in the consumer's own database.

    ``positions(source)`` returns the stored position of ``"topic:partition"``; ``handler``
    processes a message and records its position (see the module documentation).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        positions: PositionReader,
        *,
        on_skipped: SkipRecorder | None = None,
        name: str | None = None,
        client_id: str = "seatledger",
        registry: CollectorRegistry | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        dead_letter_topic_of: Callable[[str], str] = dead_letter_topic,
        consumer_overrides: dict[str, Any] | None = None,
        producer_overrides: dict[str, Any] | None = None,
        dead_letter_timeout_s: float = 30.0,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self.group_id = group_id
        self.topics = tuple(topics)
        self.name = name or group_id
        self._handler = handler
        self._positions = positions
        self._on_skipped = on_skipped
        self._retry = retry
        self._dead_letter_topic_of = dead_letter_topic_of
        self._dead_letter_timeout_s = dead_letter_timeout_s
        self._metrics = ConsumerMetrics.of(registry)
        config = consumer_config(
            bootstrap_servers, group_id, client_id, **(consumer_overrides or {})
        )
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._producer_config = producer_config(
            bootstrap_servers, f"{client_id}-dead-letters", **(producer_overrides or {})
        )
        self._producer: Producer | None = None
        #: Next offset to process per assigned (topic, partition); None: take whatever comes.
        self._next: dict[tuple[str, int], int | None] = {}
        #: Dead-lettered messages whose position is not recorded yet (recording failed).
        self._dead_lettered: set[tuple[str, int, int]] = set()
        #: Messages whose handling failed transiently, per paused partition.
        self._held: dict[tuple[str, int], _Held] = {}
        self._stop: threading.Event | None = None
        self._closed = False
        self._consumer = Consumer(config)
        self._consumer.subscribe(
            list(self.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    # -- group membership -------------------------------------------------------------------

    def _stored_position(self, source: str) -> int | None:
        failures = 0
        while True:
            try:
                return self._positions(source)
            except Exception as exc:
                failures += 1
                if failures >= 50 or (self._stop is not None and self._stop.is_set()):
                    raise
                delay = self._retry.delay(failures)
                _log.warning(
                    "position unreadable, retrying",
                    consumer=self.name,
                    source=source,
                    error=repr(exc),
                    retry_in_s=delay,
                )
                sleep_unless_stopped(self._stop, delay)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        starts: dict[tuple[str, int], int | None] = {}
        for tp in partitions:
            source = f"{tp.topic}:{tp.partition}"
            stored = self._stored_position(source)
            if stored is None:
                tp.offset = OFFSET_BEGINNING
                starts[(tp.topic, tp.partition)] = None
            else:
                tp.offset = stored + 1
                starts[(tp.topic, tp.partition)] = stored + 1
                self._metrics.position.labels(self.name, source).set(stored)
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        with contextlib.suppress(KafkaException):
            consumer.resume(partitions)  # a partition paused in an earlier assignment
        self._next.update(starts)
        _log.info(
            "partitions assigned",
            consumer=self.name,
            partitions=[f"{tp.topic}:{tp.partition}@{tp.offset}" for tp in partitions],
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)
            self._held.pop((tp.topic, tp.partition), None)
        self._report_failing()
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        _log.info(
            "partitions revoked",
            consumer=self.name,
            partitions=[f"{tp.topic}:{tp.partition}" for tp in partitions],
        )

    @property
    def assignment(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs this member holds now."""
        return sorted(self._next)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process messages until ``stop`` is set, then leave the group."""
        self._stop = stop
        try:
            while not stop.is_set():
                self.poll_once(timeout_s=0.5)
        finally:
            self.close()

    def poll_once(self, timeout_s: float = 1.0) -> bool:
        """Retry a held message whose backoff is over, else wait up to ``timeout_s`` for one
        message and process it. True if a message was handled (processed, skipped as a
        duplicate, or dead-lettered)."""
        if self._held:
            now = time.monotonic()
            key, held = min(self._held.items(), key=lambda item: item[1].due)
            if held.due <= now:
                return self._retry_held(key, held)
            timeout_s = min(timeout_s, held.due - now)
        msg = self._consumer.poll(timeout_s)
        if msg is None:
            return False
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return False
            if error.fatal():
                raise KafkaException(error)
            _log.warning("consumer error", consumer=self.name, error=str(error))
            return False
        return self._process(msg)

    def _process(self, msg: Message) -> bool:
        topic, partition, offset = _coordinates(msg)
        key = (topic, partition)
        if key not in self._next:
            # A message of a partition revoked meanwhile: its new owner processes it.
            return False
        if key in self._held:
            # Fetched before the partition was paused: delivered again after the held one.
            return False
        expected = self._next[key]
        if expected is not None and offset < expected:
            self._metrics.messages.labels(self.name, "duplicate").inc()
            return True
        position = Position.kafka(topic, partition, offset)
        try:
            outcome = self._deliver(msg, position)
        except Exception as exc:
            held = _Held(msg, position, FailureCount(), due=0.0)
            if not self._failed(key, held, exc):
                return False
            outcome = "dead_lettered"
        self._done(key, position, outcome)
        return True

    def _failed(self, key: tuple[str, int], held: _Held, exc: Exception) -> bool:
        """A failed attempt. An outage, or a failure with attempts left: keep the message,
        pause its partition (the others go on) and try again after a backoff; False. A
        failure that exhausted its attempts: dead-letter the message; True (then the caller
        moves on)."""
        outage = held.count.add(exc)
        if not outage and held.count.exhausted(self._retry):
            try:
                self._dead_letter(
                    held.msg,
                    held.position,
                    ATTEMPTS_EXHAUSTED_REASON,
                    f"{held.count.attempts} attempts failed, the last with {held.count.last_error}",
                )
            except Exception as dead_letter_error:
                # The broker or the database does not answer: an outage, retried as such.
                held.count.add(DeadLetterUnavailable(repr(dead_letter_error)))
            else:
                self._report_failing()
                return True
        delay = self._retry.delay(held.count.failures)
        held.due = time.monotonic() + delay
        self._metrics.transient_errors.labels(self.name).inc()
        _log.warning(
            "message processing failed, retrying",
            consumer=self.name,
            source=held.position.source,
            offset=held.position.offset,
            attempt=held.count.failures,
            outage=outage,
            attempts_left=None if outage else self._retry.max_attempts - held.count.attempts,
            error=repr(exc),
            retry_in_s=delay,
        )
        if key not in self._held:
            self._held[key] = held
            try:
                self._consumer.pause([TopicPartition(key[0], key[1])])
            except KafkaException as exc2:
                _log.info("pause failed", consumer=self.name, error=str(exc2))
        self._report_failing()
        return False

    def _report_failing(self) -> None:
        since = min((held.count.since for held in self._held.values()), default=None)
        self._metrics.failing(self.name, since, self._retry.stuck_after_s)

    @property
    def stuck(self) -> bool:
        """True while a message has been failing for longer than the policy's threshold."""
        return not self._metrics.healthy(self.name)

    def _retry_held(self, key: tuple[str, int], held: _Held) -> bool:
        try:
            outcome = self._deliver(held.msg, held.position)
        except Exception as exc:
            if not self._failed(key, held, exc):
                return False
            outcome = "dead_lettered"
        self._held.pop(key, None)
        self._report_failing()
        self._done(key, held.position, outcome)
        # What was fetched after the held message was dropped: fetch it again.
        tp = TopicPartition(key[0], key[1], held.position.offset + 1)
        try:
            self._consumer.seek(tp)
            self._consumer.resume([TopicPartition(key[0], key[1])])
        except KafkaException as exc:
            # The partition was revoked meanwhile: its next owner starts from the database.
            _log.info("resume skipped", consumer=self.name, error=str(exc))
        return True

    def _done(self, key: tuple[str, int], position: Position, outcome: str) -> None:
        offset = position.offset
        self._next[key] = offset + 1
        self._metrics.messages.labels(self.name, outcome).inc()
        self._metrics.position.labels(self.name, position.source).set(offset)
        try:
            self._consumer.commit(
                offsets=[TopicPartition(key[0], key[1], offset + 1)], asynchronous=True
            )
        except KafkaException as exc:  # a convenience only: the database is the truth
            _log.debug("offset commit failed", consumer=self.name, error=str(exc))

    def _deliver(self, msg: Message, position: Position) -> str:
        topic, partition, offset = _coordinates(msg)
        pending = (topic, partition, offset)
        if pending in self._dead_lettered:
            self._record_skipped(position)
            self._dead_lettered.discard(pending)
            return "dead_lettered"
        try:
            parsed = parse_cloud_event(msg.value())
        except ContractViolation as exc:
            self._dead_letter(msg, position, exc.reason, str(exc))
            return "dead_lettered"
        structlog.contextvars.bind_contextvars(
            event_id=parsed.cloud_event.id, event_type=parsed.cloud_event.type
        )
        started = time.perf_counter()
        try:
            self._handler(parsed.cloud_event, parsed.data, position)
        except PoisonMessage as exc:
            self._dead_letter(msg, position, POISON_REASON, str(exc) or type(exc).__name__)
            return "dead_lettered"
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type")
        self._metrics.handle_seconds.labels(self.name).observe(time.perf_counter() - started)
        return "processed"

    # -- dead letters ------------------------------------------------------------------------

    def _dead_letter(self, msg: Message, position: Position, reason: str, error: str) -> None:
        topic, partition, offset = _coordinates(msg)
        target = self._dead_letter_topic_of(topic)
        original = msg.headers() or []
        headers: list[tuple[str, str | bytes | None]] = list(
            original.items() if isinstance(original, dict) else original
        )
        headers += [
            (DLQ_REASON_HEADER, reason),
            (DLQ_ERROR_HEADER, error[:2000]),
            (DLQ_SOURCE_TOPIC_HEADER, topic),
            (DLQ_SOURCE_PARTITION_HEADER, str(partition)),
            (DLQ_SOURCE_OFFSET_HEADER, str(offset)),
            (DLQ_CONSUMER_GROUP_HEADER, self.group_id),
        ]
        delivered: list[KafkaError | None] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            delivered.append(err)

        if self._producer is None:
            self._producer = Producer(self._producer_config)
        self._producer.produce(
            target, key=msg.key(), value=msg.value(), headers=headers, on_delivery=on_delivery
        )
        self._producer.flush(self._dead_letter_timeout_s)
        if not delivered or delivered[0] is not None:
            raise DeadLetterUnavailable(f"dead-letter to {target} not acknowledged: {delivered}")
        self._dead_lettered.add((topic, partition, offset))
        self._metrics.dead_lettered.labels(self.name, reason).inc()
        _log.error(
            "message dead-lettered",
            consumer=self.name,
            reason=reason,
            error=error[:500],
            source=position.source,
            offset=offset,
            dead_letter_topic=target,
        )
        self._record_skipped(position)
        self._dead_lettered.discard((topic, partition, offset))

    def _record_skipped(self, position: Position) -> None:
        if self._on_skipped is not None:
            self._on_skipped(position)

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Leave the group (its partitions move to the other members) and release clients."""
        if self._closed:
            return
        self._closed = True
        self._held.clear()
        self._report_failing()
        try:
            self._consumer.close()
        finally:
            if self._producer is not None:
                self._producer.flush(self._dead_letter_timeout_s)
                self._producer = None
