"""The invoicer's composition root: every adapter is built here, from settings and injected
collaborators, and nowhere else.

- ``seatledger run invoicer`` (Kafka): :meth:`Invoicer.workers` gives the tracked consumer of
  ``seatledger.ledger.v1`` (dead letters to ``seatledger.ledger.v1.dlq``), the outbox relay
  of the invoicer's own store to ``seatledger.invoices.v1`` and the lag sampler; run them
  under a :class:`seatledger.runtime.Supervisor`.
- ``seatledger serve`` (embedded): :meth:`Invoicer.follower` follows the ledger's
  notification log (source name ``ledger``) through the ledger's contract mapping, which the
  caller passes in (the invoicer never imports the ledger).
- HTTP: :meth:`Invoicer.router` (``/v1/clouds/{id}/invoices``, ``/v1/invoices/{id}``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.application import Application
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from seatledger.auth import Authenticator
from seatledger.config import Settings
from seatledger.consumer import (
    DEFAULT_RETRY,
    ConsumerMetrics,
    Handler,
    RetryPolicy,
    TrackedConsumer,
)
from seatledger.follower import (
    DeadLetterSink,
    JsonLinesDeadLetters,
    Mapper,
    NotificationLogFollower,
)
from seatledger.http import create_app
from seatledger.kafka import (
    INVOICES_TOPIC,
    LEDGER_TOPIC,
    consumer_config,
    dead_letter_topic,
    producer_config,
)
from seatledger.logging import get_logger
from seatledger.persistence import application_env, ensure_postgres_schema
from seatledger.relay import OutboxRelay
from seatledger.tracking import Position
from services.invoicer.api import build_router
from services.invoicer.application import InvoicerApplication, utc_now
from services.invoicer.contract import to_cloud_event
from services.invoicer.handlers import LedgerEventHandler
from services.invoicer.metrics import InvoicerMetrics

APP_NAME = "invoicer"
#: The consumer group of every invoicer instance.
CONSUMER_GROUP = "seatledger-invoicer"
#: The source name of the ledger's notification log in the embedded default.
LEDGER_SOURCE = "ledger"
#: The name of the invoicer's consumer (or follower) in metrics and readiness checks.
NAME = "invoicer"

Work = Callable[[threading.Event], None]

log = get_logger("services.invoicer")


@dataclass
class Invoicer:
    """The wired invoicer: its application, handler, metrics and the adapters around them."""

    settings: Settings
    app: InvoicerApplication
    registry: CollectorRegistry
    metrics: InvoicerMetrics
    handler: LedgerEventHandler
    #: How the consumer or follower retries a failing ledger message (see seatledger.consumer).
    retry: RetryPolicy = DEFAULT_RETRY
    _closers: list[Callable[[], object]] = field(default_factory=list)

    # -- inbound ------------------------------------------------------------------------------

    @property
    def ledger_topic(self) -> str:
        return self.settings.topic(LEDGER_TOPIC)

    @property
    def invoices_topic(self) -> str:
        return self.settings.topic(INVOICES_TOPIC)

    def record_skipped(self, position: Position) -> None:
        """Record the position of a message that was not handled (dead-lettered)."""
        self.app.save_tracked(position)

    def kafka_consumer(
        self,
        *,
        group_id: str | None = None,
        name: str = NAME,
        handler: Handler | None = None,
        **options: Any,
    ) -> TrackedConsumer:
        """A member of the invoicer's consumer group on the ledger topic (the topic prefix
        names a deployment; its consumer group is its own too)."""
        servers = self._kafka_servers()
        return TrackedConsumer(
            servers,
            group_id or self.settings.kafka_topic_prefix + CONSUMER_GROUP,
            [self.ledger_topic],
            handler or self.handler,
            self.app.position,
            on_skipped=self.record_skipped,
            name=name,
            client_id=f"{self.settings.kafka_client_id}-invoicer",
            registry=self.registry,
            **{"retry": self.retry, **options},
        )

    def follower(
        self,
        ledger_app: Application[Any],
        ledger_mapper: Mapper,
        *,
        dead_letters: DeadLetterSink | None = None,
        **options: Any,
    ) -> NotificationLogFollower:
        """Follows the ledger's notification log in-process (the embedded default)."""
        return NotificationLogFollower(
            ledger_app,
            LEDGER_SOURCE,
            ledger_mapper,
            self.handler,
            self.app.position,
            on_skipped=self.record_skipped,
            dead_letters=dead_letters,
            name=NAME,
            registry=self.registry,
            **{"retry": self.retry, **options},
        )

    def dead_letter_file(self) -> JsonLinesDeadLetters:
        """The embedded default's dead letters of the ledger's events:
        ``<data_dir>/dead-letters/invoicer.jsonl``."""
        return JsonLinesDeadLetters(self.settings.data_dir / "dead-letters" / f"{NAME}.jsonl")

    def consumer_healthy(self) -> bool:
        """False while the consumer (or follower) of the ledger's events is stuck: a message
        has been failing for longer than the retry policy's ``stuck_after_s``."""
        return ConsumerMetrics.of(self.registry).healthy(NAME)

    # -- outbound -----------------------------------------------------------------------------

    def relay(self, **options: Any) -> OutboxRelay:
        """Publishes the invoicer's events (``InvoiceIssued``) to ``seatledger.invoices.v1``."""
        servers = self._kafka_servers()
        relay = OutboxRelay(
            self.app,
            self.invoices_topic,
            to_cloud_event,
            producer_config(servers, f"{self.settings.kafka_client_id}-invoicer-relay"),
            registry=self.registry,
            **options,
        )
        self._closers.append(relay.close)
        return relay

    # -- observation --------------------------------------------------------------------------

    def sample_kafka_lag(self) -> dict[str, int]:
        """Messages of each ledger partition not processed yet (high watermark - position - 1),
        set on ``seatledger_invoicer_consumer_lag_messages``."""
        from confluent_kafka import Consumer, TopicPartition

        servers = self._kafka_servers()
        probe = Consumer(
            consumer_config(servers, f"{CONSUMER_GROUP}-lag-probe", "invoicer-lag-probe")
        )
        try:
            metadata = probe.list_topics(self.ledger_topic, timeout=10)
            topic = metadata.topics.get(self.ledger_topic)
            lags: dict[str, int] = {}
            if topic is None or topic.error is not None:
                return lags
            for partition in topic.partitions:
                low, high = probe.get_watermark_offsets(
                    TopicPartition(self.ledger_topic, partition), timeout=10, cached=False
                )
                source = f"{self.ledger_topic}:{partition}"
                stored = self.app.position(source)
                next_offset = low if stored is None else max(stored + 1, low)
                lags[source] = max(high - next_offset, 0)
                self.metrics.lag(source, lags[source])
            return lags
        finally:
            probe.close()

    def sample_follower_lag(self, ledger_app: Application[Any]) -> int:
        """Notifications of the ledger not processed yet (ids may have gaps: an upper bound)."""
        head = ledger_app.recorder.max_notification_id() or 0
        lag = max(head - (self.app.position(LEDGER_SOURCE) or 0), 0)
        self.metrics.lag(LEDGER_SOURCE, lag)
        return lag

    # -- running ------------------------------------------------------------------------------

    def workers(self, *, lag_interval_s: float = 15.0) -> dict[str, Work]:
        """The background work of ``seatledger run invoicer``: consume, relay, sample lag."""

        def consume(stop: threading.Event) -> None:
            self.kafka_consumer().run(stop)

        def publish(stop: threading.Event) -> None:
            self.relay().run(stop)

        def sample(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    self.sample_kafka_lag()
                except Exception as exc:
                    log.warning("lag_sampling_failed", error=repr(exc))
                stop.wait(lag_interval_s)

        return {"invoicer-consumer": consume, "invoicer-relay": publish, "invoicer-lag": sample}

    def embedded_workers(
        self,
        ledger_app: Application[Any],
        ledger_mapper: Mapper,
        *,
        lag_interval_s: float = 15.0,
        **follower_options: Any,
    ) -> dict[str, Work]:
        """The background work of the embedded default (``seatledger serve``): follow the
        ledger's notification log and sample the lag. Without a broker there is no relay:
        the notifier follows the invoicer's notification log the same way."""
        follower_options.setdefault("dead_letters", self.dead_letter_file())
        follower = self.follower(ledger_app, ledger_mapper, **follower_options)

        def sample(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    self.sample_follower_lag(ledger_app)
                except Exception as exc:
                    log.warning("lag_sampling_failed", error=repr(exc))
                stop.wait(lag_interval_s)

        return {"invoicer-follower": follower.run, "invoicer-lag": sample}

    def router(self) -> APIRouter:
        """The HTTP API's routes (see :mod:`services.invoicer.api`), for an app that serves
        several services (the embedded default)."""
        return build_router(self.app)

    def http_app(self, authenticator: Authenticator) -> FastAPI:
        """The invoicer's own HTTP app: its routes plus health, readiness and metrics."""
        return create_app(
            title="seatledger invoicer",
            routers=[self.router()],
            registry=self.registry,
            authenticator=authenticator,
            readiness_checks={
                "database": self._database_answers,
                f"consumer:{NAME}": self.consumer_healthy,
            },
            service="invoicer",
        )

    def _database_answers(self) -> bool:
        self.app.position(LEDGER_SOURCE)
        return True

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:
                log.warning("close_failed", error=repr(exc))
        self._closers.clear()
        self.app.close()

    def _kafka_servers(self) -> str:
        servers = self.settings.kafka_bootstrap_servers
        if not servers:
            raise RuntimeError(
                "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set: the invoicer follows the "
                "ledger's notification log instead (seatledger serve)"
            )
        return servers


def build_invoicer(
    settings: Settings,
    registry: CollectorRegistry,
    *,
    clock: Callable[[], datetime] = utc_now,
    env: dict[str, str] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Invoicer:
    """Wire the invoicer from ``settings``: its store (PostgreSQL schema ``invoicer`` or a
    SQLite file), the application, metrics and handler. ``env`` overrides eventsourcing
    settings (tests); ``retry`` is how a failing ledger message is retried and when it is
    dead-lettered (see :mod:`seatledger.consumer`)."""
    app_env = application_env(settings.database_url, APP_NAME, settings.data_dir)
    app_env.update(env or {})
    ensure_postgres_schema(app_env)
    app = InvoicerApplication(app_env, number_prefix=settings.invoice_number_prefix, clock=clock)
    metrics = InvoicerMetrics(registry)
    handler = LedgerEventHandler(app, metrics)
    return Invoicer(settings, app, registry, metrics, handler, retry)


def dead_letter_topic_of(settings: Settings) -> str:
    """The dead-letter topic of the ledger topic in this deployment."""
    return dead_letter_topic(settings.topic(LEDGER_TOPIC))
