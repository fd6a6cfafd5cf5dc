"""The notifier's composition root: every adapter is built here, or passed in by a caller.

``build_notifier(settings, registry, clock=...)`` returns a :class:`Notifier` whose parts are
wired but idle. What feeds it depends on the deployment:

- ``seatledger run notifier``: a :class:`~seatledger.consumer.TrackedConsumer` on
  ``seatledger.invoices.v1`` (:meth:`Notifier.kafka_consumer`), the outbox relay of the
  outcome events to ``seatledger.notifications.v1`` (:meth:`Notifier.relay`), and the
  health/metrics HTTP surface (:func:`services.notifier.http.create_http_app`);
- ``seatledger serve`` (embedded): a :class:`~seatledger.follower.NotificationLogFollower` of
  the invoicer's notification log, application name ``invoicer``
  (:meth:`Notifier.invoicer_follower`).

Either way the same handler (:meth:`Notifier.handle`) records each ``InvoiceIssued`` with its
position, and the sender loop (:meth:`Notifier.workers`) sends.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from schemas._base import EventData
from schemas.envelope import CloudEvent
from schemas.invoices import InvoiceIssued
from seatledger.config import Settings
from seatledger.kafka import INVOICES_TOPIC, NOTIFICATIONS_TOPIC
from seatledger.logging import get_logger
from seatledger.persistence import application_env, ensure_postgres_schema
from seatledger.tracking import Position
from services.notifier.application import APPLICATION_NAME, Accepted, NotifierApplication
from services.notifier.contract import to_cloud_event
from services.notifier.domain import RetryPolicy
from services.notifier.message import MessageBuilder, PdfRenderer, Templates
from services.notifier.metrics import NotifierMetrics
from services.notifier.sender import DEFAULT_LEASE, Clock, DeliveryQueue, Sender, SenderLoop
from services.notifier.transport import OutboxTransport, SmtpTransport, Transport

log = get_logger("seatledger.notifier")

#: The consumer group of the notifier on ``seatledger.invoices.v1``.
CONSUMER_GROUP = "seatledger-notifier"
#: The upstream application the embedded notifier follows.
UPSTREAM_APPLICATION = "invoicer"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Notifier:
    """The wired notifier (see the module documentation)."""

    settings: Settings
    registry: CollectorRegistry
    app: NotifierApplication
    queue: DeliveryQueue
    sender: Sender
    loop: SenderLoop
    metrics: NotifierMetrics
    clock: Clock
    accepted: dict[Accepted, int] = field(default_factory=lambda: dict.fromkeys(Accepted, 0))

    # -- inbound (the handler of the consumer and of the follower) ---------------------------

    def handle(self, cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        """Record the delivery of an ``InvoiceIssued`` with its position (one transaction);
        any other event on the topic only advances the position."""
        if not isinstance(data, InvoiceIssued):
            self.app.skip(position)
            return
        outcome = self.app.accept(data, position, self.clock())
        self.accepted[outcome] += 1
        log.info(
            "notifier.invoice_accepted",
            outcome=outcome.value,
            invoice_number=data.invoice_number,
            cloud_id=str(data.cloud_id),
            event_id=cloud_event.id,
            source=position.source,
            position=position.offset,
        )
        if outcome in (Accepted.NEW, Accepted.REFUSED):
            self.loop.wake()

    def skip(self, position: Position) -> None:
        """Record a position whose message never reached :meth:`handle` (dead-lettered)."""
        self.app.skip(position)

    # -- sources and sinks -------------------------------------------------------------------

    def kafka_consumer(self, **overrides: Any) -> Any:
        """The tracked consumer of ``seatledger.invoices.v1`` (needs Kafka settings)."""
        from seatledger.consumer import TrackedConsumer

        bootstrap = self.settings.kafka_bootstrap_servers
        if not bootstrap:
            raise ValueError("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set")
        options: dict[str, Any] = {
            # The topic prefix names a deployment; its consumer group is its own too.
            "group_id": self.settings.kafka_topic_prefix + CONSUMER_GROUP,
            "topics": [self.settings.topic(INVOICES_TOPIC)],
            "name": "notifier",
            "client_id": f"{self.settings.kafka_client_id}-notifier",
            "registry": self.registry,
        }
        options.update(overrides)
        group_id = options.pop("group_id")
        topics = options.pop("topics")
        return TrackedConsumer(
            bootstrap,
            group_id,
            topics,
            self.handle,
            self.app.position,
            on_skipped=self.skip,
            **options,
        )

    def invoicer_follower(
        self, invoicer_app: Any, mapper: Callable[[Any], CloudEvent | None], **options: Any
    ) -> Any:
        """The embedded default's source: the invoicer's notification log, mapped by the
        invoicer's contract mapping (``services.invoicer.contract.to_cloud_event``)."""
        from seatledger.follower import NotificationLogFollower

        options.setdefault("name", "notifier")
        options.setdefault("registry", self.registry)
        return NotificationLogFollower(
            invoicer_app,
            UPSTREAM_APPLICATION,
            mapper,
            self.handle,
            self.app.position,
            on_skipped=self.skip,
            **options,
        )

    def relay(self, **options: Any) -> Any:
        """The outbox relay of ``EmailSent``/``EmailFailed`` to ``seatledger.notifications.v1``."""
        from seatledger.kafka import producer_config
        from seatledger.relay import OutboxRelay

        bootstrap = self.settings.kafka_bootstrap_servers
        if not bootstrap:
            raise ValueError("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set")
        options.setdefault("registry", self.registry)
        topic = options.pop("topic", self.settings.topic(NOTIFICATIONS_TOPIC))
        return OutboxRelay(
            self.app,
            topic,
            to_cloud_event,
            producer_config(bootstrap, f"{self.settings.kafka_client_id}-notifier-relay"),
            **options,
        )

    def workers(self) -> dict[str, Callable[[threading.Event], None]]:
        """The sender loop (for a :class:`~seatledger.runtime.Supervisor`)."""
        return {"notifier-sender": self.loop.run}

    def kafka_workers(self) -> dict[str, Callable[[threading.Event], None]]:
        """``seatledger run notifier``: the sender, the consumer of ``seatledger.invoices.v1``
        and the relay of the outcome events to ``seatledger.notifications.v1``."""

        def consume(stop: threading.Event) -> None:
            self.kafka_consumer().run(stop)

        def relay(stop: threading.Event) -> None:
            self.relay().run(stop)

        return {**self.workers(), "notifier-consumer": consume, "notifier-relay": relay}

    def embedded_workers(
        self, invoicer_app: Any, **follower_options: Any
    ) -> dict[str, Callable[[threading.Event], None]]:
        """``seatledger serve``: the sender and the follower of the invoicer's notification
        log, through the invoicer's own contract mapping (no relay: without a broker the
        outcome events stay in the notifier's store). ``follower_options`` go to the
        follower (its dead-letter sink, its retry policy)."""
        from services.invoicer.contract import to_cloud_event as invoicer_mapper

        follower = self.invoicer_follower(invoicer_app, invoicer_mapper, **follower_options)
        return {**self.workers(), "notifier-follower": follower.run}

    def readiness_checks(self, alive: Callable[[], dict[str, bool]]) -> dict[str, Any]:
        """``store``: the database answers; ``workers``: every background worker runs;
        ``consumer:notifier``: no message has been failing for too long (not stuck)."""
        from seatledger.consumer import ConsumerMetrics

        consumers = ConsumerMetrics.of(self.registry)
        return {
            "store": self.store_reachable,
            "workers": lambda: all(alive().values()),
            "consumer:notifier": lambda: consumers.healthy("notifier"),
        }

    # -- health ------------------------------------------------------------------------------

    def store_reachable(self) -> bool:
        try:
            self.app.recorder.max_notification_id()
        except Exception:
            return False
        return True

    def close(self) -> None:
        self.app.close()


def transport_from(settings: Settings) -> Transport:
    """SMTP when ``SEATLEDGER_SMTP_HOST`` is set, otherwise ``.eml`` files in
    ``<data_dir>/outbox``."""
    if not settings.smtp_host:
        return OutboxTransport(settings.data_dir / "outbox")
    return SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout_s=settings.smtp_timeout_s,
    )


def _default_renderer() -> PdfRenderer:
    from seatledger.rendering import render_invoice_pdf

    return render_invoice_pdf


def build_notifier(
    settings: Settings,
    registry: CollectorRegistry,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
    render_pdf: PdfRenderer | None = None,
    retry_policy: RetryPolicy | None = None,
    lease: timedelta | None = None,
    rng: random.Random | None = None,
    workers: int = 4,
    poll_interval_s: float = 1.0,
) -> Notifier:
    """Wire the notifier. Nothing runs until the caller starts its workers and sources."""
    env = application_env(settings.database_url, APPLICATION_NAME, settings.data_dir)
    ensure_postgres_schema(env)
    app = NotifierApplication(env=env)
    queue = DeliveryQueue(app)
    builder = MessageBuilder(
        mail_from=settings.mail_from,
        render_pdf=render_pdf or _default_renderer(),
        templates=Templates(),
    )
    metrics = NotifierMetrics(registry, queue, clock)
    sender = Sender(
        app=app,
        queue=queue,
        builder=builder,
        transport=transport or transport_from(settings),
        clock=clock,
        retry_policy=retry_policy or RetryPolicy(),
        # Short, and renewed while an attempt is in progress (however long the SMTP server
        # takes): a dead sender's attempt is due again soon after its last renewal.
        lease=lease or DEFAULT_LEASE,
        rng=rng or random.Random(),  # noqa: S311 (jitter, not cryptography)
        observer=metrics,
        workers=workers,
    )
    loop = SenderLoop(sender, poll_interval_s=poll_interval_s)
    return Notifier(
        settings=settings,
        registry=registry,
        app=app,
        queue=queue,
        sender=sender,
        loop=loop,
        metrics=metrics,
        clock=clock,
    )
