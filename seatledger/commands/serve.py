"""``seatledger serve`` (the embedded default) and ``seatledger run ledger|invoicer|notifier``
(one service per process, on PostgreSQL and Kafka)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn

from seatledger.auth import Authenticator, InsecureConfiguration
from seatledger.cli import CommandError
from seatledger.config import Settings, load_settings
from seatledger.logging import configure_logging, get_logger
from seatledger.persistence import DatabaseUrlError, application_env, redact_url

log = get_logger("seatledger.commands.serve")

SERVICES = ("ledger", "invoicer", "notifier")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run ledger, invoicer and notifier in one process (the embedded default)",
        description=(
            "Runs the whole billing flow in one process on SQLite files in the data folder, "
            "with no Kafka: the invoicer and the notifier follow the upstream event logs, and "
            "e-mails are written as .eml files to the data folder's outbox unless "
            "SEATLEDGER_SMTP_HOST is set."
        ),
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8000, SEATLEDGER_HTTP_PORT)")
    serve.add_argument("--data-dir", type=Path, help="data folder (default ./var)")
    serve.set_defaults(handler=run_serve)

    run = subparsers.add_parser(
        "run",
        help="run one service as its own process against PostgreSQL and Kafka",
        description=(
            "Runs one service against SEATLEDGER_DATABASE_URL (PostgreSQL) and "
            "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS, with its own HTTP port for health, metrics "
            "and (ledger, invoicer) its API. SIGTERM stops it cleanly."
        ),
    )
    run.add_argument("service", choices=SERVICES)
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="HTTP port (default SEATLEDGER_HTTP_PORT)")
    run.set_defaults(handler=run_service)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["http_host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    try:
        return load_settings(**overrides)
    except Exception as exc:
        raise CommandError(f"invalid settings: {exc}".splitlines()[0]) from exc


def run_serve(args: argparse.Namespace) -> int:
    from seatledger.embedded import build_embedded
    from seatledger.serving import bound_port, serve_until_stopped

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format, buffered=True)
    if settings.kafka_bootstrap_servers:
        log.warning("serve.kafka_ignored", reason="serve runs the embedded default")
    try:
        product = build_embedded(settings)
    except (InsecureConfiguration, DatabaseUrlError) as exc:
        raise CommandError(str(exc)) from exc

    def ready(server: uvicorn.Server) -> None:
        port = bound_port(server) or settings.http_port
        print(banner(settings, port), flush=True)

    return serve_until_stopped(
        product.http_app,
        host=settings.http_host,
        port=settings.http_port,
        supervisor=product.supervisor,
        on_start=lambda: product.ledger.start(scheduler=True),
        on_ready=ready,
        on_stop=lambda: _close(
            product.ledger.close, product.invoicer.close, product.notifier.close
        ),
        settings=settings,
    )


def banner(settings: Settings, port: int) -> str:
    data = settings.data_dir.resolve()
    base = f"http://{settings.http_host}:{port}"
    outbox = (
        f"SMTP {settings.smtp_host}:{settings.smtp_port}"
        if settings.smtp_host
        else str(data / "outbox")
    )
    return "\n".join(
        [
            "seatledger is running (embedded default: ledger, invoicer, notifier in one process)",
            f"  data folder  {data}  ({redact_url(settings.database_url)})",
            f"  e-mails      {outbox}",
            f"  API docs     {base}/docs   (OpenAPI: {base}/openapi.json)",
            f"  metrics      {base}/metrics",
            "  a token      seatledger token --sub <user> [--scope billing:admin] [--step-up]",
            "  stop         Ctrl-C (a restart continues where it stopped)",
        ]
    )


def _close(*closers: Any) -> None:
    for close in closers:
        try:
            close()
        except Exception as exc:
            log.warning("close_failed", error=repr(exc))


def run_service(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format, buffered=True)
    if not settings.kafka_bootstrap_servers:
        raise CommandError(
            "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set: `seatledger run` runs one service "
            "against Kafka (the embedded default is `seatledger serve`)"
        )
    if not settings.database_url:
        raise CommandError("SEATLEDGER_DATABASE_URL is not set (postgresql://user:pw@host/db)")
    try:
        application_env(settings.database_url, args.service, settings.data_dir)  # a usable URL?
        if args.service != "notifier":  # the notifier serves no authenticated route
            Authenticator(settings)  # refuses the development secret outside the embedded default
        return _run(args.service, settings)
    except (InsecureConfiguration, DatabaseUrlError) as exc:
        raise CommandError(str(exc)) from exc


def _run(service: str, settings: Settings) -> int:
    from seatledger.embedded import chain_keeper_worker
    from seatledger.kafka import (
        INVOICES_TOPIC,
        LEDGER_TOPIC,
        NOTIFICATIONS_TOPIC,
        ensure_topics,
        producer_config,
        with_dead_letters,
    )
    from seatledger.metrics import new_registry
    from seatledger.runtime import Supervisor
    from seatledger.serving import serve_until_stopped

    assert settings.kafka_bootstrap_servers is not None
    registry = new_registry(service)
    supervisor = Supervisor(registry=registry)
    topics = {
        "ledger": [LEDGER_TOPIC],
        "invoicer": [LEDGER_TOPIC, INVOICES_TOPIC],
        "notifier": [INVOICES_TOPIC, NOTIFICATIONS_TOPIC],
    }[service]
    specs = with_dead_letters(
        map(settings.topic, topics),
        settings.kafka_topic_partitions,
        settings.kafka_topic_retention_ms,
    )
    try:
        ensure_topics(settings.kafka_bootstrap_servers, specs)
    except Exception as exc:
        raise CommandError(f"Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc

    on_start: Any = lambda: None  # noqa: E731
    closers: list[Any] = []
    if service == "ledger":
        from seatledger.relay import OutboxRelay
        from services.ledger.bootstrap import build_ledger, create_ledger_app
        from services.ledger.contract import to_cloud_event

        ledger = build_ledger(settings, registry)
        relay = OutboxRelay(
            ledger.app,
            settings.topic(LEDGER_TOPIC),
            to_cloud_event,
            producer_config(settings.kafka_bootstrap_servers, f"{settings.kafka_client_id}-ledger"),
            registry=registry,
        )
        supervisor.add("ledger-relay", relay.run)
        app = create_ledger_app(ledger, registry)
        on_start = lambda: ledger.start(scheduler=True)  # noqa: E731
        closers = [relay.close, ledger.close]
    elif service == "invoicer":
        from services.invoicer.bootstrap import build_invoicer

        invoicer = build_invoicer(settings, registry)
        for name, work in invoicer.workers().items():
            supervisor.add(name, work)
        app = invoicer.http_app(Authenticator(settings))
        closers = [invoicer.close]
    else:
        from services.notifier.bootstrap import build_notifier
        from services.notifier.http import create_http_app

        notifier = build_notifier(settings, registry)
        for name, work in notifier.kafka_workers().items():
            supervisor.add(name, work)
        app = create_http_app(registry, notifier.readiness_checks(supervisor.alive))
        closers = [notifier.close]
    chain_keeper_worker(settings, service, supervisor)
    log.info(
        "process.starting",
        service=service,
        database=redact_url(settings.database_url),
        kafka=settings.kafka_bootstrap_servers,
        http=f"{settings.http_host}:{settings.http_port}",
    )
    return serve_until_stopped(
        app,
        host=settings.http_host,
        port=settings.http_port,
        supervisor=supervisor,
        on_start=on_start,
        on_stop=lambda: _close(*closers),
        settings=settings,
    )
