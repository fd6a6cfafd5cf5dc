"""The outbox relay: an application's notification log, published to its Kafka topic.

The notification log of an ``eventsourcing`` application is the outbox. The relay reads it by
position in batches, maps each domain event to its contract event (the service's
``contract.to_cloud_event``; None means "not published"), and produces it with an idempotent
producer: key = the cloud id (``subject``), value = the structured-mode CloudEvent JSON,
headers = the event id, type and content type.

The relay's position is a tracking record in the service's own database (the application's
tracking table, under the name ``relay:<topic>``), written only after the broker acknowledged
every message up to it. So:

- a crash loses nothing: the next run re-publishes at most the unacknowledged tail, with the
  same event ids (consumers dedupe by event id / position);
- nothing is skipped: a batch whose delivery failed is re-published from the recorded
  position, in order;
- gaps in notification ids are harmless: the relay asks for ids after its position;
- a stored event that cannot be mapped to its contract (its mapping raises something that is
  not an outage, see :func:`seatledger.consumer.is_outage`) is retried with the batch, at most
  ``max_mapping_attempts`` times; then it goes to the topic's dead-letter topic (reason
  ``unpublishable``, the error and the notification id in the headers, the stored event as
  the value), acknowledged before the position passes it, and the events behind it are
  published: one bad event never stops the topic.

Throughput comes from batching and pipelining: while the broker acknowledges one batch the
relay reads and produces the next (at most ``max_in_flight`` batches in flight), and records
its position once per acknowledged batch. After a full batch the next one is read ahead on a
second thread while the current one is mapped and produced (read-ahead only moves where the
next read starts; the recorded position still follows the acknowledgements, and a failure
discards what was read ahead and starts again from the recorded position).

A mapper may be a :class:`~schemas.envelope.ContractMapper` (built from a function returning
the envelope's parts: data, id, subject, time): it stays a plain mapper for every other caller,
and the relay then serializes each event's data once, straight into the message bytes
(:func:`schemas.envelope.envelope_json`, byte for byte what ``CloudEvent.of(...)`` gives),
instead of building and validating an envelope object per event.

Latency comes from waking on PostgreSQL's LISTEN/NOTIFY (the recorder notifies its channel on
every insert); on SQLite the relay polls every ``idle_poll_s``.

Every node of a service may run a relay: on PostgreSQL, :meth:`OutboxRelay.run` publishes only
while it holds the store's advisory lock (one per store and topic); the others stand by and take
over within ``standby_poll_s`` when the publishing one stops or dies. (Were two to publish at
once, consumers would only see duplicates: a position update that is not ahead is refused.)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Notification, Tracking, TrackingRecorder
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas._base import EventData
from schemas.envelope import (
    CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    CloudEvent,
    ContractMapper,
    EnvelopeParts,
    envelope_json,
)
from schemas.registry import check_cloud_event, event_models, model_for, parse_cloud_event
from seatledger.consumer import DeadLetterUnavailable, FailureCount, RetryPolicy, is_outage
from seatledger.kafka import dead_letter_topic
from seatledger.metrics import PerRegistry

__all__ = [
    "ContractMapper",
    "EnvelopeParts",
    "Mapper",
    "OutboxRelay",
    "PublishError",
    "RelayMetrics",
]

#: Maps a domain event to its contract event, or None when it is not published.
Mapper = Callable[[Any], "CloudEvent | None"]

_log = structlog.get_logger("seatledger.relay")


class PublishError(Exception):
    """The broker did not acknowledge a message; the batch is published again."""


#: The dead-letter reason of a stored event that cannot be mapped to its contract.
UNPUBLISHABLE_REASON = "unpublishable"
#: The header naming the notification id of an unpublishable stored event.
DLQ_NOTIFICATION_ID_HEADER = "dlq_notification_id"


class UnpublishableNotification(Exception):
    """A stored event whose mapping to its contract event failed (not an outage)."""

    def __init__(self, notification: Notification, error: BaseException) -> None:
        super().__init__(f"notification {getattr(notification, 'id', '?')}: {error!r}")
        self.notification = notification
        self.error = error


class RelayMetrics(PerRegistry):
    """The relays' metrics, built once per registry (label ``relay`` = the topic)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.position = Gauge(
            "seatledger_relay_position",
            "Notification id up to which every event is acknowledged by the broker",
            ["relay"],
            registry=registry,
        )
        self.head = Gauge(
            "seatledger_relay_store_head",
            "Highest notification id in the store when the relay last looked",
            ["relay"],
            registry=registry,
        )
        self.lag = Gauge(
            "seatledger_relay_lag_notifications",
            "Notification ids between the store's head and the relay's position",
            ["relay"],
            registry=registry,
        )
        self.published = Counter(
            "seatledger_relay_published_total",
            "Messages acknowledged by the broker",
            ["relay"],
            registry=registry,
        )
        self.errors = Counter(
            "seatledger_relay_publish_errors_total",
            "Failed publications (the batch is published again)",
            ["relay"],
            registry=registry,
        )
        self.publishing = Gauge(
            "seatledger_relay_publishing",
            "1 while this relay publishes its store, 0 while it stands by",
            ["relay"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "seatledger_relay_dead_lettered_total",
            "Stored events that could not be mapped to their contract and went to the "
            "dead-letter topic",
            ["relay"],
            registry=registry,
        )
        self.ack_age = Histogram(
            "seatledger_relay_event_age_at_ack_seconds",
            "Time from an event's creation to the broker's acknowledgement",
            ["relay"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )


class _RelayGauges:
    """One relay's children of the shared metrics."""

    def __init__(self, metrics: RelayMetrics, relay: str) -> None:
        self.position = metrics.position.labels(relay)
        self.head = metrics.head.labels(relay)
        self.lag = metrics.lag.labels(relay)
        self.published = metrics.published.labels(relay)
        self.errors = metrics.errors.labels(relay)
        self.publishing = metrics.publishing.labels(relay)
        self.ack_age = metrics.ack_age.labels(relay)
        self.dead_lettered = metrics.dead_lettered.labels(relay)


@dataclass
class _Batch:
    """Messages produced from one read of the log, waiting for the broker's acks."""

    last_id: int
    expected: int = 0
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    newest_created: float | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.acked += 1
        else:
            self.errors.append(str(err))

    @property
    def done(self) -> bool:
        return self.acked + len(self.errors) >= self.expected


#: One message ready to produce: key, value, headers.
Mapped = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]

_CONTENT_TYPE_PAIR: tuple[str, str | bytes | None] = (CONTENT_TYPE_HEADER, CONTENT_TYPE)


def map_notifications(
    domain_mapper: Any,
    mapper: Mapper,
    validate: bool,
    notifications: Sequence[Notification],
    skip: frozenset[int] = frozenset(),
) -> tuple[list[Mapped], float | None]:
    """Turn stored events into messages (skipping those the mapper does not publish, and the
    ids in ``skip``), and the creation time (epoch s) of the last one published, if known.
    Raises :class:`UnpublishableNotification` for a stored event that cannot be mapped."""
    if skip:
        notifications = [n for n in notifications if n.id not in skip]
    try:
        return _map(domain_mapper, mapper, validate, notifications)
    except UnpublishableNotification:
        raise
    except Exception as exc:
        if is_outage(exc):
            raise
        # Find the stored event that fails, one by one (rare: only after a failure).
        for notification in notifications:
            try:
                _map(domain_mapper, mapper, validate, [notification])
            except Exception as single:
                if is_outage(single):
                    raise
                raise UnpublishableNotification(notification, single) from single
        raise


def _map(
    domain_mapper: Any, mapper: Mapper, validate: bool, notifications: Sequence[Notification]
) -> tuple[list[Mapped], float | None]:
    if isinstance(mapper, ContractMapper):
        return _map_parts(domain_mapper, mapper.parts, validate, notifications)
    to_domain_event = domain_mapper.to_domain_event
    known_types = event_models()
    mapped: list[Mapped] = []
    append = mapped.append
    last_published: Any = None
    for notification in notifications:
        domain_event = to_domain_event(notification)
        cloud_event = mapper(domain_event)
        if cloud_event is None:
            continue
        event_type = cloud_event.type
        if validate:
            check_cloud_event(cloud_event)
        elif event_type not in known_types:
            model_for(event_type)  # raises: an unknown type is never published
        append(
            (
                cloud_event.subject.encode(),
                cloud_event.to_json_bytes(),
                [
                    (EVENT_ID_HEADER, cloud_event.id),
                    (EVENT_TYPE_HEADER, event_type),
                    _CONTENT_TYPE_PAIR,
                ],
            )
        )
        last_published = domain_event
    timestamp = getattr(last_published, "timestamp", None)
    return mapped, timestamp.timestamp() if timestamp is not None else None


def _map_parts(
    domain_mapper: Any,
    parts_of: Callable[[Any], EnvelopeParts | None],
    validate: bool,
    notifications: Sequence[Notification],
) -> tuple[list[Mapped], float | None]:
    """:func:`map_notifications` for a :class:`ContractMapper`: no envelope object is built."""
    to_domain_event = domain_mapper.to_domain_event
    known_types = event_models()
    types: dict[type[EventData], str] = {}
    mapped: list[Mapped] = []
    append = mapped.append
    last_published: Any = None
    for notification in notifications:
        domain_event = to_domain_event(notification)
        parts = parts_of(domain_event)
        if parts is None:
            continue
        data, event_id, subject, time = parts
        model = type(data)
        event_type = types.get(model)
        if event_type is None:
            event_type = types[model] = model.event_type()
        value = envelope_json(data, id=event_id, subject=subject, time=time)
        if validate:
            parse_cloud_event(value)
        elif event_type not in known_types:
            model_for(event_type)  # raises: an unknown type is never published
        append(
            (
                subject.encode(),
                value,
                [(EVENT_ID_HEADER, event_id), (EVENT_TYPE_HEADER, event_type), _CONTENT_TYPE_PAIR],
            )
        )
        last_published = domain_event
    timestamp = getattr(last_published, "timestamp", None)
    return mapped, timestamp.timestamp() if timestamp is not None else None


def _pause(halted: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not halted() and time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


class OutboxRelay:
    """Publishes ``app``'s events to ``topic``; see the module documentation."""

    def __init__(
        self,
        app: Application[Any],
        topic: str,
        mapper: Mapper,
        producer_config: dict[str, Any],
        *,
        name: str | None = None,
        batch_size: int = 1000,
        max_in_flight: int = 4,
        idle_poll_s: float = 0.05,
        listen_fallback_s: float = 1.0,
        validate: bool = False,
        registry: CollectorRegistry | None = None,
        tracking_recorder: TrackingRecorder | None = None,
        ack_timeout_s: float = 60.0,
        standby_poll_s: float = 2.0,
        max_mapping_attempts: int = RetryPolicy.max_attempts,
        dead_letter_topic_of: Callable[[str], str] = dead_letter_topic,
    ) -> None:
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be at least 1")
        self.app = app
        self.topic = topic
        self.name = name or f"relay:{topic}"
        self._mapper = mapper
        self._producer_config = dict(producer_config)
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._idle_poll_s = idle_poll_s
        self._listen_fallback_s = listen_fallback_s
        self._validate = validate
        self._ack_timeout_s = ack_timeout_s
        self._metrics = _RelayGauges(RelayMetrics.of(registry), topic)
        self._tracking = tracking_recorder or app.factory.tracking_recorder()
        self._producer: Producer | None = None
        self._in_flight: deque[_Batch] = deque()
        #: Up to here every event is acknowledged and recorded.
        self._acked: int | None = None
        #: Up to here every event has been read and handed to the producer.
        self._read: int | None = None
        self._loaded = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._leader = threading.Event()
        self._standby_poll_s = standby_poll_s
        self._listens = hasattr(app.recorder, "channel_name") and hasattr(app.recorder, "datastore")
        self._mapping_policy = RetryPolicy(max_attempts=max_mapping_attempts)
        self._dead_letter_topic = dead_letter_topic_of(topic)
        #: Failed mappings per notification id; ids already dead-lettered.
        self._unmappable: dict[int, FailureCount] = {}
        self._dead_lettered: set[int] = set()
        self._dead_letter_producer: Producer | None = None

    # -- position ---------------------------------------------------------------------------

    @property
    def position(self) -> int | None:
        """The notification id up to which every event is acknowledged and recorded."""
        if not self._loaded:
            self._load_position()
        return self._acked

    def _load_position(self) -> None:
        self._acked = self._tracking.max_tracking_id(self.name)
        self._read = self._acked
        self._loaded = True
        if self._acked is not None:
            self._metrics.position.set(self._acked)

    def _record(self, notification_id: int) -> None:
        try:
            self._tracking.insert_tracking(Tracking(self.name, notification_id))
        except IntegrityError:
            stored = self._tracking.max_tracking_id(self.name)
            if stored is None or stored < notification_id:
                raise
            _log.warning(
                "relay position already further: another relay publishes this store",
                relay=self.name,
                stored=stored,
                acked=notification_id,
            )
            notification_id = stored
        self._acked = notification_id
        self._metrics.position.set(notification_id)

    # -- publishing -------------------------------------------------------------------------

    def publish_pending(self) -> int:
        """Publish everything recorded so far and wait for its acknowledgement; the number of
        notifications handled. Raises :class:`PublishError` (nothing recorded for the failed
        batch) when the broker refuses or does not acknowledge."""
        if not self._loaded:
            self._load_position()
        handled = 0
        reader: ThreadPoolExecutor | None = None
        try:
            notifications = self._read_batch(self._read)
            while notifications:
                last_id = notifications[-1].id
                self._read = last_id
                ahead: Future[Sequence[Notification]] | None = None
                if len(notifications) >= self._batch_size:
                    # More may follow: read the next batch while this one is mapped and
                    # produced (the driver releases the GIL while it waits on the server).
                    if reader is None:
                        reader = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-read")
                    ahead = reader.submit(self._read_batch, last_id)
                mapped, newest_created = self._map_or_dead_letter(notifications)
                self._produce(last_id, mapped, newest_created)
                handled += len(notifications)
                self._settle(block=len(self._in_flight) >= self._max_in_flight)
                if ahead is None:
                    break
                notifications = ahead.result()
            self._settle(block=True, drain=True)
        except BaseException:
            self._reset()
            raise
        finally:
            if reader is not None:
                reader.shutdown(wait=True, cancel_futures=True)
        self._observe_head()
        return handled

    def _map_or_dead_letter(
        self, notifications: Sequence[Notification]
    ) -> tuple[list[Mapped], float | None]:
        """Map a batch; a stored event that failed to map ``max_mapping_attempts`` times goes
        to the dead-letter topic instead (see the module documentation)."""
        while True:
            try:
                return map_notifications(
                    self.app.mapper,
                    self._mapper,
                    self._validate,
                    notifications,
                    frozenset(self._dead_lettered),
                )
            except UnpublishableNotification as exc:
                notification = exc.notification
                count = self._unmappable.setdefault(notification.id, FailureCount())
                count.add(exc.error)
                if not count.exhausted(self._mapping_policy):
                    raise
                self._dead_letter(notification, count)

    def _dead_letter(self, notification: Notification, count: FailureCount) -> None:
        error = f"{count.attempts} attempts to map it failed, the last with {count.last_error}"
        headers: list[tuple[str, str | bytes | None]] = [
            (DLQ_REASON_HEADER, UNPUBLISHABLE_REASON),
            (DLQ_ERROR_HEADER, error[:2000]),
            (DLQ_SOURCE_TOPIC_HEADER, self.topic),
            (DLQ_NOTIFICATION_ID_HEADER, str(notification.id)),
        ]
        delivered: list[KafkaError | None] = []
        if self._dead_letter_producer is None:
            self._dead_letter_producer = Producer(self._producer_config)
        self._dead_letter_producer.produce(
            self._dead_letter_topic,
            key=str(notification.originator_id).encode(),
            value=bytes(notification.state),
            headers=headers,
            on_delivery=lambda err, _msg: delivered.append(err),
        )
        self._dead_letter_producer.flush(self._ack_timeout_s)
        if not delivered or delivered[0] is not None:
            raise DeadLetterUnavailable(
                f"dead-letter to {self._dead_letter_topic} not acknowledged: {delivered}"
            )
        self._dead_lettered.add(notification.id)
        self._unmappable.pop(notification.id, None)
        self._metrics.dead_lettered.inc()
        _log.error(
            "stored event dead-lettered",
            relay=self.name,
            reason=UNPUBLISHABLE_REASON,
            error=error[:500],
            notification_id=notification.id,
            dead_letter_topic=self._dead_letter_topic,
        )

    def _read_batch(self, after: int | None) -> Sequence[Notification]:
        """Up to ``batch_size`` notifications with ids above ``after`` (gaps are skipped)."""
        return self.app.recorder.select_notifications(
            start=after or 0, limit=self._batch_size, inclusive_of_start=False
        )

    def _produce(
        self, last_id: int, mapped: Sequence[Mapped], newest_created: float | None
    ) -> None:
        producer = self._get_producer()
        batch = _Batch(last_id=last_id, expected=len(mapped), newest_created=newest_created)
        produce = producer.produce
        topic = self.topic
        on_delivery = batch.on_delivery
        for key, value, headers in mapped:
            try:
                produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            except BufferError:
                while True:
                    producer.poll(0.05)
                    try:
                        produce(
                            topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                        )
                        break
                    except BufferError:
                        pass
        self._in_flight.append(batch)
        producer.poll(0)

    def _settle(self, *, block: bool, drain: bool = False) -> None:
        """Record the position of the acknowledged batches at the front; with ``block``, wait
        until the front batch (with ``drain``, every batch) is acknowledged."""
        producer = self._get_producer()
        deadline = time.monotonic() + self._ack_timeout_s
        while True:
            producer.poll(0)
            done: _Batch | None = None
            while self._in_flight and self._in_flight[0].done:
                batch = self._in_flight.popleft()
                if batch.errors:
                    self._metrics.errors.inc()
                    raise PublishError(
                        f"{len(batch.errors)} message(s) not acknowledged: {batch.errors[0]}"
                    )
                done = batch
                self._metrics.published.inc(batch.acked)
            if done is not None:
                self._record(done.last_id)
                if done.newest_created is not None:
                    self._metrics.ack_age.observe(max(0.0, time.time() - done.newest_created))
            if not self._in_flight:
                return
            if not block:
                return
            if not drain and len(self._in_flight) < self._max_in_flight:
                return
            if time.monotonic() > deadline:
                self._metrics.errors.inc()
                raise PublishError(f"no acknowledgement within {self._ack_timeout_s}s")
            producer.poll(0.01)

    def _reset(self) -> None:
        """After a failure: forget what is in flight and re-read from the recorded position."""
        self._in_flight.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.purge()
                producer.flush(1)
            except KafkaException:
                pass
        self._loaded = False

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._producer_config)
        return self._producer

    def _observe_head(self) -> None:
        head = self.app.recorder.max_notification_id()
        if head is None:
            return
        self._metrics.head.set(head)
        self._metrics.lag.set(max(0, head - (self._acked or 0)))

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Publish until ``stop`` (or :meth:`stop`) is set; failures are retried with backoff."""
        stop = stop or self._stop
        finished = threading.Event()

        def halted() -> bool:
            return stop.is_set() or self._stop.is_set() or finished.is_set()

        if not self._listens:
            self._set_leader(True)
        else:
            self._listener = threading.Thread(
                target=self._listen, args=(halted,), name=f"{self.name}-listen", daemon=True
            )
            self._listener.start()
        failures = 0
        wait_s = self._listen_fallback_s if self._listens else self._idle_poll_s
        try:
            while not stop.is_set() and not self._stop.is_set():
                self._wake.clear()
                if not self._leader.is_set():
                    self._idle(stop, self._standby_poll_s)  # another relay publishes
                    continue
                try:
                    self.publish_pending()
                except Exception as exc:
                    failures += 1
                    delay = min(5.0, 0.1 * 2 ** (failures - 1))
                    _log.warning(
                        "relay publication failed, retrying",
                        relay=self.name,
                        position=self._acked,
                        error=repr(exc),
                        retry_in_s=delay,
                    )
                    stop.wait(delay)
                    continue
                failures = 0
                self._idle(stop, wait_s)
        finally:
            # Restartable: a supervisor may call run() again on the same relay.
            finished.set()
            self._wake.set()
            if self._listener is not None:
                self._listener.join(timeout=5)
                self._listener = None
            self._set_leader(False)
            self.close()

    def _idle(self, stop: threading.Event, seconds: float) -> None:
        """Wait for a NOTIFY (or ``seconds``), looking at ``stop`` every 0.1 s."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(0.1, remaining)):
                return

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _set_leader(self, leader: bool) -> None:
        if leader:
            self._leader.set()
        else:
            self._leader.clear()
        self._metrics.publishing.set(1 if leader else 0)

    @property
    def is_leader(self) -> bool:
        """True when this relay is the one publishing its store (always, on SQLite)."""
        return self._leader.is_set()

    def _lock_key(self) -> int:
        recorder: Any = self.app.recorder
        ident = f"seatledger-relay:{recorder.datastore.schema}:{self.name}".encode()
        return int.from_bytes(hashlib.sha256(ident).digest()[:8], "big", signed=True)

    def _listen(self, halted: Callable[[], bool]) -> None:
        """PostgreSQL: become the store's only publishing relay (a session advisory lock), then
        set the wake-up event on every NOTIFY of the recorder's channel."""
        from psycopg import sql

        recorder: Any = self.app.recorder
        key = self._lock_key()
        while not halted():
            try:
                with recorder.datastore.get_connection() as conn:
                    try:
                        while not halted():
                            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,))
                            if row.fetchone()["ok"]:
                                break
                            _pause(halted, self._standby_poll_s)
                        else:
                            return
                        conn.execute(
                            sql.SQL("LISTEN {0}").format(sql.Identifier(recorder.channel_name))
                        )
                        self._set_leader(True)
                        _log.info("relay publishing", relay=self.name)
                        self._wake.set()  # anything committed before LISTEN took effect
                        while not halted():
                            for _ in conn.notifies(timeout=0.2, stop_after=1):
                                self._wake.set()
                    finally:
                        self._set_leader(False)
                        if not conn.closed:
                            conn.execute("UNLISTEN *")
                            conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception as exc:
                _log.warning(
                    "relay listener failed, reconnecting", relay=self.name, error=repr(exc)
                )
                _pause(halted, 1.0)

    def close(self) -> None:
        """Wait briefly for what is in flight (its position is recorded next run if not now)."""
        self._dead_letter_producer = None  # flushed on every dead letter: nothing in flight
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(5)
