"""``/readyz`` of the invoicer's and the notifier's processes names their consumer while it is
stuck (a message failing for longer than its threshold) and is ready again once it is not."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from seatledger.auth import Authenticator
from seatledger.config import Settings, load_settings
from seatledger.consumer import ConsumerMetrics
from seatledger.metrics import new_registry
from services.invoicer.bootstrap import build_invoicer
from services.notifier.bootstrap import build_notifier
from services.notifier.http import create_http_app


def settings_in(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        database_url=None,
        kafka_bootstrap_servers=None,
        jwt_secret="unit-test-secret-0123456789abcdef-0123456789",
    )


def check_stuck_and_recovered(app: FastAPI, registry: CollectorRegistry, consumer: str) -> None:
    client = TestClient(app)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"][f"consumer:{consumer}"] == "ok"

    consumers = ConsumerMetrics.of(registry)
    consumers.failing(consumer, time.monotonic() - 120, stuck_after_s=60)
    stuck = client.get("/readyz")
    assert stuck.status_code == 503
    assert stuck.headers["content-type"].startswith("application/problem+json")
    assert stuck.json()["checks"][f"consumer:{consumer}"] == "failing"
    assert registry.get_sample_value("seatledger_consumer_stuck", {"consumer": consumer}) == 1

    consumers.failing(consumer, None, stuck_after_s=60)
    assert client.get("/readyz").status_code == 200
    assert registry.get_sample_value("seatledger_consumer_stuck", {"consumer": consumer}) == 0


def test_the_invoicer_is_not_ready_while_its_consumer_is_stuck(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    registry = new_registry("invoicer")
    invoicer = build_invoicer(settings, registry)
    try:
        app = invoicer.http_app(Authenticator(settings))
        check_stuck_and_recovered(app, registry, "invoicer")
    finally:
        invoicer.close()


def test_the_notifier_is_not_ready_while_its_consumer_is_stuck(tmp_path: Path) -> None:
    registry = new_registry("notifier")
    notifier = build_notifier(settings_in(tmp_path), registry)
    try:
        app = create_http_app(registry, notifier.readiness_checks(lambda: {"sender": True}))
        check_stuck_and_recovered(app, registry, "notifier")
    finally:
        notifier.close()


def test_a_consumer_failing_for_less_than_its_threshold_is_not_stuck() -> None:
    consumers = ConsumerMetrics.of(CollectorRegistry())
    consumers.failing("c", time.monotonic(), stuck_after_s=60)
    assert consumers.healthy("c")
    assert consumers.healthy("another")
