"""``seatledger run notifier``: the notifier as its own process, on PostgreSQL and Kafka.

It consumes ``seatledger.invoices.v1``, sends, publishes the outcome events to
``seatledger.notifications.v1`` and serves ``/healthz``, ``/readyz`` and ``/metrics`` on
``SEATLEDGER_HTTP_HOST``:``SEATLEDGER_HTTP_PORT``. SIGTERM or SIGINT stops it cleanly: the HTTP
server stops, the attempts in hand finish and are recorded, the consumer finishes its message
and leaves the group, the relay flushes.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from seatledger.config import Settings, load_settings
from seatledger.logging import configure_logging, get_logger
from seatledger.metrics import new_registry
from seatledger.persistence import redact_url
from seatledger.runtime import Supervisor
from services.notifier.bootstrap import build_notifier
from services.notifier.http import create_http_app

log = get_logger("seatledger.notifier")


class NotifierConfigurationError(ValueError):
    """The settings cannot run the notifier as its own process."""


def run_notifier(settings: Settings, registry: CollectorRegistry | None = None) -> int:
    """Run until SIGTERM/SIGINT; the exit status."""
    if not settings.kafka_bootstrap_servers:
        raise NotifierConfigurationError(
            "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set: `run notifier` consumes Kafka "
            "(the embedded default is `seatledger serve`)"
        )
    registry = registry or new_registry("notifier")
    notifier = build_notifier(settings, registry)
    supervisor = Supervisor(registry=registry)
    for name, work in notifier.kafka_workers().items():
        supervisor.add(name, work)
    app = create_http_app(registry, notifier.readiness_checks(supervisor.alive))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
        )
    )
    log.info(
        "notifier.starting",
        database=redact_url(settings.database_url),
        smtp=settings.smtp_host or f"outbox {settings.data_dir / 'outbox'}",
        http=f"{settings.http_host}:{settings.http_port}",
    )
    supervisor.start()
    previous = _absorb_stop_signals()
    try:
        server.run()  # returns after SIGTERM/SIGINT
    finally:
        still_running = supervisor.stop()
        notifier.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("notifier.stopped", still_running=still_running)
    return 1 if still_running else 0


def _absorb_stop_signals() -> dict[int, Any]:
    """uvicorn turns SIGTERM/SIGINT into a graceful stop and then raises the signal again with
    the handler it found: install a quiet one, so the workers are stopped in order after it."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def note(signum: int, _frame: Any) -> None:
        log.info("notifier.stopping", signal=signal.Signals(signum).name)

    return {signum: signal.signal(signum, note) for signum in (signal.SIGTERM, signal.SIGINT)}


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        return run_notifier(settings)
    except NotifierConfigurationError as exc:
        log.error("notifier.configuration", error=str(exc))
        return 1
