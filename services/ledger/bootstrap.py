"""The ledger's composition root: every adapter is built here, from settings, or passed in.

``build_ledger(settings, registry, clock=...)`` returns a :class:`LedgerComponents` with the
application, its router(s), the renewal scheduler, the idempotency store and readiness checks,
so that ``seatledger serve`` (ledger and invoicer in one app) and ``seatledger run ledger``
can compose it; :func:`create_ledger_app` and :func:`serve_ledger` are the small standalone
forms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from seatledger.auth import Authenticator
from seatledger.config import Settings
from seatledger.http import IdempotencyStore, ReadinessCheck, SqlDatabase, create_app
from seatledger.persistence import application_env, ensure_postgres_schema
from services.ledger.api import build_router
from services.ledger.application import (
    APP_NAME,
    Clock,
    CloudIndex,
    GroupCommitter,
    Ledger,
    LedgerService,
    QuoteStore,
)
from services.ledger.fastpath import install_license_fast_path
from services.ledger.metrics import PrometheusLedgerObserver
from services.ledger.scheduler import RenewalScheduler


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LedgerComponents:
    app: Ledger
    service: LedgerService
    committer: GroupCommitter
    scheduler: RenewalScheduler
    routers: list[APIRouter]
    idempotency: IdempotencyStore
    authenticator: Authenticator
    readiness_checks: dict[str, ReadinessCheck]
    #: Path prefix -> idempotency store, for ``create_app(idempotency_stores=...)``.
    idempotency_stores: dict[str, IdempotencyStore] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self, *, scheduler: bool = True) -> None:
        self.committer.start()
        if scheduler:
            self.scheduler.start()

    def close(self) -> None:
        self.scheduler.stop()
        self.committer.stop()
        for closer in self._closers:
            closer()
        self._closers.clear()


def build_ledger(
    settings: Settings,
    registry: CollectorRegistry,
    *,
    clock: Clock = utc_now,
    authenticator: Authenticator | None = None,
    scheduler_interval_s: float = 30.0,
    max_attempts: int = 8,
    command_timeout_s: float = 30.0,
    env_overrides: dict[str, str] | None = None,
) -> LedgerComponents:
    """Wire the ledger. Nothing runs until :meth:`LedgerComponents.start` (or the first
    command, which starts the group committer). ``command_timeout_s`` bounds how long a seat
    purchase or reduction waits for its command before answering 503."""
    env = application_env(settings.database_url, APP_NAME, settings.data_dir, pool_size=8)
    env.setdefault("AGGREGATE_CACHE_MAXSIZE", "10000")
    env.update(env_overrides or {})
    ensure_postgres_schema(env)
    app = Ledger(env=env)
    db = SqlDatabase(env)
    idempotency = IdempotencyStore(db, keep_answers_s=settings.idempotency_keep_answers_s)
    idempotency.create_table()
    quotes = QuoteStore(db)
    quotes.create_table()
    observer = PrometheusLedgerObserver(registry)
    committer = GroupCommitter(app, clock=clock, observer=observer, max_attempts=max_attempts)
    service = LedgerService(
        app,
        committer,
        quotes,
        CloudIndex(app),
        clock=clock,
        quote_ttl_s=settings.quote_ttl_s,
        command_timeout_s=command_timeout_s,
        licensed_rights_groups=settings.licensed_rights_groups,
    )
    auth = authenticator or Authenticator(settings)
    scheduler = RenewalScheduler(service, interval_s=scheduler_interval_s, observer=observer)

    def store_reachable() -> bool:
        try:
            app.recorder.max_notification_id()
        except Exception:
            return False
        return db.ping()

    def close_app() -> None:
        db.close()
        app.close() if hasattr(app, "close") else None

    return LedgerComponents(
        app=app,
        service=service,
        committer=committer,
        scheduler=scheduler,
        routers=[build_router(service, auth)],
        idempotency=idempotency,
        authenticator=auth,
        readiness_checks={"ledger_store": store_reachable},
        idempotency_stores={"/v1/clouds": idempotency},
        _closers=[close_app],
    )


def create_ledger_app(
    components: LedgerComponents, registry: CollectorRegistry, **kwargs: Any
) -> FastAPI:
    """A FastAPI app serving the ledger alone (the license commands through
    :mod:`services.ledger.fastpath`)."""
    api = create_app(
        title="seatledger ledger",
        routers=components.routers,
        registry=registry,
        authenticator=components.authenticator,
        readiness_checks=components.readiness_checks,
        idempotency_stores=components.idempotency_stores,
        service="ledger",
        on_shutdown=[components.close],
        **kwargs,
    )
    install_license_fast_path(api, components.service, components.authenticator)
    return api


def ledger_app_from_env() -> FastAPI:
    """An app factory for ``uvicorn --factory`` (one per worker process): settings from the
    environment, the group committer and the renewal scheduler started (schedulers on several
    workers or nodes are safe: a period is renewed once)."""
    from seatledger.config import load_settings
    from seatledger.logging import configure_logging
    from seatledger.metrics import new_registry

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, buffered=True)
    registry = new_registry("ledger")
    components = build_ledger(settings, registry)
    components.start()
    return create_ledger_app(components, registry)


def serve_ledger(settings: Settings, *, scheduler: bool = True, workers: int = 1) -> None:
    """Run the ledger's HTTP API (and its renewal scheduler) until interrupted. With
    ``workers > 1`` uvicorn runs that many processes, each built by
    :func:`ledger_app_from_env` from the environment (stateless nodes over one store)."""
    import uvicorn

    from seatledger.logging import configure_logging
    from seatledger.metrics import new_registry
    from seatledger.serving import HeaderTimeoutProtocol, server_config

    configure_logging(settings.log_level, settings.log_format, buffered=True)
    if workers > 1:
        # The header deadline is the protocol's default (10 s) in the worker processes.
        uvicorn.run(
            "services.ledger.bootstrap:ledger_app_from_env",
            factory=True,
            workers=workers,
            host=settings.http_host,
            port=settings.http_port,
            http=HeaderTimeoutProtocol,
            log_config=None,
            access_log=False,
        )
        return
    registry = new_registry("ledger")
    components = build_ledger(settings, registry)
    components.start(scheduler=scheduler)
    app = create_ledger_app(components, registry)
    config = server_config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        header_timeout_s=settings.http_header_timeout_s,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        components.close()
