"""The running product keeps the hash chains extended as events are stored, publishes its
checkpoints outside the database, and an auditor's ``verify`` and ``replay`` pass on what it
recorded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from seatledger.audit.store import open_store
from seatledger.cli import main
from seatledger.config import load_settings
from seatledger.embedded import build_embedded
from seatledger.persistence import application_env
from services.ledger.application import OpenCloud
from services.ledger.domain import Actor
from tests.unit.ledger.builders import terms as contract_terms

pytestmark = pytest.mark.integration


def _chained_up_to_head(env: dict[str, str], app: str) -> bool:
    store = open_store(env, app)
    try:
        head, _ = store.chain_head()
        return head is not None and head.notification_id == store.max_notification_id()
    finally:
        store.close()


def _stored(env: dict[str, str], app: str) -> int:
    store = open_store(env, app)
    try:
        return store.max_notification_id()
    finally:
        store.close()


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_running_product_chains_what_it_stores_and_the_audit_passes(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data_dir = tmp_path / "data"
    settings = load_settings(
        database_url=database_url,
        data_dir=data_dir,
        kafka_bootstrap_servers=None,
        jwt_secret="audit-test-secret-0123456789abcdef0123",
    )
    product = build_embedded(settings, scheduler_interval_s=3600)
    product.start()
    try:
        service = product.ledger.service
        terms = contract_terms()
        cloud, _ = service.wait(
            service.submit_open(
                OpenCloud(None, terms, 3, ("admin", "employee")), Actor("user", "a")
            )
        )
        owner = Actor("user", "owner-1")
        service.wait(service.submit_assign(cloud.id, "u1", "admin", owner))
        service.wait(service.submit_purchase(cloud.id, 5, owner))
        ledger_env = application_env(database_url, "ledger", data_dir)
        invoicer_env = application_env(database_url, "invoicer", data_dir)
        _wait_for(lambda: _chained_up_to_head(ledger_env, "ledger"))
        # The invoicer issues the purchase's invoice; its chain follows.
        _wait_for(lambda: _stored(invoicer_env, "invoicer") >= 3)
        _wait_for(lambda: _chained_up_to_head(invoicer_env, "invoicer"))
    finally:
        product.stop()

    published = data_dir / "audit" / "ledger-checkpoints.jsonl"
    assert published.exists()
    common = ["--database-url", database_url, "--data-dir", str(data_dir)]
    assert main(["audit", "verify", "--checkpoints", str(published), *common]) == 0
    out = capsys.readouterr().out
    assert "ledger: OK" in out
    assert "invoicer: OK" in out
    assert "notifier: OK" in out  # every store the product runs carries a chain
    assert main(["audit", "replay", "--progress", "never", *common]) == 0
    assert "1 match; all invoices match" in capsys.readouterr().out
