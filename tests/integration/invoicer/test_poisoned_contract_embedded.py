"""One poisoned contract in the ledger's store (recorded by an older release: its monthly term
starts on 9999-12-16, so none of its periods can be computed) never stops the embedded default
(SQLite files, followers instead of Kafka): the invoicer's follower retries the event a bounded
number of times, reports itself stuck on ``/readyz`` meanwhile, then writes it to its
dead-letter file and goes on; a purchase on another cloud is invoiced and e-mailed, and the
renewal scheduler renews that cloud in the tick in which the poisoned one fails."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seatledger.config import load_settings
from seatledger.consumer import ATTEMPTS_EXHAUSTED_REASON, RetryPolicy
from seatledger.embedded import build_embedded
from tests.integration.invoicer.helpers import wait_until
from tests.poisoned import (
    HEALTHY_BILLING_EMAIL,
    Clock,
    headers,
    open_healthy_cloud,
    record_poisoned_contract,
)

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"


def test_a_poisoned_contract_never_stops_the_embedded_default(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        jwt_secret=SECRET,
        database_url=None,
        kafka_bootstrap_servers=None,
        smtp_host=None,
    )
    clock = Clock()
    retry = RetryPolicy(initial_s=0.1, max_s=0.3, max_attempts=8, stuck_after_s=0.3)
    product = build_embedded(settings, clock=clock, scheduler_interval_s=3600, consumer_retry=retry)
    api = TestClient(product.http_app)
    outbox = settings.data_dir / "outbox"
    dead_letters = settings.data_dir / "dead-letters" / "invoicer.jsonl"
    poisoned = record_poisoned_contract(product.ledger.app, at=clock.now)
    product.ledger.start(scheduler=False)
    product.supervisor.start()
    try:
        # The follower keeps failing on the poisoned event: not ready, naming the follower.
        wait_until(lambda: api.get("/readyz").status_code == 503, 10, "stuck")
        assert api.get("/readyz").json()["checks"]["consumer:invoicer"] == "failing"
        # After its attempts the event is dead-lettered and the follower is ready again.
        wait_until(dead_letters.exists, 20, "the dead letter")
        wait_until(lambda: api.get("/readyz").status_code == 200, 10, "ready again")
        (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
        assert letter["reason"] == ATTEMPTS_EXHAUSTED_REASON
        assert letter["key"] == str(poisoned)
        assert "year 10000 is out of range" in letter["error"]

        healthy = open_healthy_cloud(api, settings, clock.now)
        bought = api.post(
            f"/v1/clouds/{healthy}/seat-purchases",
            json={"seats": 5},
            headers={**headers(settings, "owner-healthy", step_up=True), "Idempotency-Key": "b1"},
        )
        assert bought.status_code == 201, bought.text
        invoices = product.invoicer.app.invoices_of_cloud
        wait_until(lambda: len(invoices(healthy)) == 1, 30, "the purchase's invoice")
        wait_until(lambda: len(list(outbox.glob("*.eml"))) == 1, 30, "the invoice e-mail")

        clock.now += timedelta(days=40)
        assert product.ledger.scheduler.run_once() == 1
        assert set(product.ledger.scheduler.parked) == {poisoned}
        wait_until(lambda: len(invoices(healthy)) == 2, 30, "the renewal's invoice")
        wait_until(lambda: len(list(outbox.glob("*.eml"))) == 2, 30, "the renewal e-mail")
        assert invoices(poisoned) == []
        for eml in outbox.glob("*.eml"):
            assert f"<{HEALTHY_BILLING_EMAIL}>" in eml.read_text(errors="replace")
        assert len(dead_letters.read_text().splitlines()) == 1
        assert api.get("/readyz").status_code == 200
    finally:
        product.stop()
