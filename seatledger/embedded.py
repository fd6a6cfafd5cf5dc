"""The embedded default: ledger, invoicer and notifier in one process, without Kafka.

The invoicer follows the ledger's notification log and the notifier the invoicer's, through
the same contract mappings and the same tracking as over Kafka; with no SMTP server configured
the e-mails are written as ``.eml`` files to ``<data_dir>/outbox``. One HTTP app serves the
ledger's and the invoicer's APIs and the process's metrics.

An event a follower can never process (see :mod:`seatledger.consumer` for when that is
decided) is written to ``<data_dir>/dead-letters/<follower>.jsonl`` (``invoicer``,
``notifier``) and the follower goes on. ``/readyz`` fails with the check ``consumer:<name>``
while a follower's event has been failing for longer than the retry policy's threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from seatledger.audit.chain import ChainKeeper, JsonLinesPublisher
from seatledger.config import Settings
from seatledger.consumer import DEFAULT_RETRY, ConsumerMetrics, RetryPolicy
from seatledger.follower import JsonLinesDeadLetters
from seatledger.http import create_app
from seatledger.logging import get_logger
from seatledger.metrics import new_registry
from seatledger.persistence import application_env
from seatledger.runtime import Supervisor, polling
from services.invoicer.bootstrap import Invoicer, build_invoicer
from services.ledger.bootstrap import LedgerComponents, build_ledger
from services.ledger.contract import to_cloud_event as ledger_to_cloud_event
from services.ledger.fastpath import install_license_fast_path
from services.notifier.bootstrap import Notifier, build_notifier

log = get_logger("seatledger.embedded")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def chain_keeper_worker(
    settings: Settings, app_name: str, supervisor: Supervisor, *, interval_s: float = 1.0
) -> None:
    """Add a worker that keeps the tamper-evidence chain of ``app_name``'s store extended and
    publishes its checkpoints to ``<data_dir>/audit/<app>-checkpoints.jsonl``."""
    env = application_env(settings.database_url, app_name, settings.data_dir)
    checkpoints = Path(settings.data_dir) / "audit" / f"{app_name}-checkpoints.jsonl"
    checkpoints.parent.mkdir(parents=True, exist_ok=True)

    def run(stop: Any) -> None:
        # Opened in the worker's own thread: a SQLite connection belongs to its thread.
        keeper = ChainKeeper.open(env, app_name, publish=JsonLinesPublisher(checkpoints))
        try:
            polling(lambda: keeper.extend() > 0, idle_s=interval_s)(stop)
            keeper.checkpoint()
        finally:
            keeper.close()

    supervisor.add(f"{app_name}-chain", run)


@dataclass
class EmbeddedProduct:
    """The three services wired in one process (see the module documentation)."""

    settings: Settings
    registry: CollectorRegistry
    ledger: LedgerComponents
    invoicer: Invoicer
    notifier: Notifier
    supervisor: Supervisor
    http_app: FastAPI

    def start(self) -> None:
        self.ledger.start(scheduler=True)
        self.supervisor.start()

    def stop(self) -> list[str]:
        """Stop the workers (each finishes what it has in hand), then close the stores."""
        still_running = self.supervisor.stop()
        self.ledger.close()
        self.invoicer.close()
        self.notifier.close()
        return still_running


def build_embedded(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    *,
    clock: Clock = utc_now,
    scheduler_interval_s: float = 30.0,
    consumer_retry: RetryPolicy = DEFAULT_RETRY,
) -> EmbeddedProduct:
    """Wire the product; ``consumer_retry`` is how both followers retry a failing event and
    when they dead-letter it or report themselves stuck."""
    registry = registry or new_registry("seatledger")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ledger = build_ledger(
        settings, registry, clock=clock, scheduler_interval_s=scheduler_interval_s
    )
    invoicer = build_invoicer(settings, registry, clock=clock, retry=consumer_retry)
    notifier = build_notifier(settings, registry, clock=clock)
    supervisor = Supervisor(registry=registry)
    for name, work in invoicer.embedded_workers(ledger.app, ledger_to_cloud_event).items():
        supervisor.add(name, work)
    notifier_dead_letters = JsonLinesDeadLetters(
        settings.data_dir / "dead-letters" / "notifier.jsonl"
    )
    notifier_workers = notifier.embedded_workers(
        invoicer.app, dead_letters=notifier_dead_letters, retry=consumer_retry
    )
    for name, work in notifier_workers.items():
        supervisor.add(name, work)
    for app_name in ("ledger", "invoicer", "notifier"):
        chain_keeper_worker(settings, app_name, supervisor)

    def invoicer_store() -> bool:
        invoicer.app.position("ledger")
        return True

    readiness = {
        **ledger.readiness_checks,
        "invoicer_store": invoicer_store,
        "notifier_store": notifier.store_reachable,
        "workers": lambda: all(supervisor.alive().values()),
        "consumer:invoicer": invoicer.consumer_healthy,
        "consumer:notifier": lambda: ConsumerMetrics.of(registry).healthy("notifier"),
    }
    http_app = create_app(
        title="seatledger",
        routers=[*ledger.routers, invoicer.router()],
        registry=registry,
        authenticator=ledger.authenticator,
        readiness_checks=readiness,
        idempotency_stores=ledger.idempotency_stores,
        service="seatledger",
    )
    # License commands answered without FastAPI's per-request work (same answers).
    install_license_fast_path(http_app, ledger.service, ledger.authenticator)
    return EmbeddedProduct(
        settings=settings,
        registry=registry,
        ledger=ledger,
        invoicer=invoicer,
        notifier=notifier,
        supervisor=supervisor,
        http_app=http_app,
    )
