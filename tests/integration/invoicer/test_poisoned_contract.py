"""One poisoned contract in the ledger's store (recorded by an older release: its monthly term
starts on 9999-12-16, so none of its periods can be computed) never stops the product, on Kafka
and PostgreSQL: the ledger's relay dead-letters its event and goes on, a purchase on another
cloud is invoiced and e-mailed, the renewal scheduler renews that cloud in the very tick in
which the poisoned one fails, and the invoicer stays ready. While the invoicer's database
refuses its writes the consumer retries without dead-lettering anything and ``/readyz`` names
it; once the database takes writes again it catches up and is ready."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from schemas.envelope import DLQ_REASON_HEADER, DLQ_SOURCE_TOPIC_HEADER
from seatledger.auth import Authenticator
from seatledger.config import Settings
from seatledger.consumer import RetryPolicy
from seatledger.kafka import producer_config
from seatledger.metrics import new_registry
from seatledger.relay import DLQ_NOTIFICATION_ID_HEADER, UNPUBLISHABLE_REASON, OutboxRelay
from services.invoicer.bootstrap import build_invoicer
from services.ledger.bootstrap import build_ledger, create_ledger_app
from services.ledger.contract import to_cloud_event
from services.notifier.bootstrap import build_notifier
from tests.integration.invoicer.helpers import wait_until
from tests.integration.notifier.smtp import RecordingHandler, SmtpServer
from tests.poisoned import (
    HEALTHY_BILLING_EMAIL,
    Clock,
    headers,
    open_healthy_cloud,
    record_poisoned_contract,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(RecordingHandler())
    server.start()
    yield server
    server.stop()


class Threads:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def run(self, work: Callable[[threading.Event], Any]) -> None:
        thread = threading.Thread(target=work, args=(self.stop,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_a_poisoned_contract_never_stops_invoicing_mailing_or_renewing_another_cloud(
    settings: Settings, topics, read_topic, postgres_url: str, smtp_server: SmtpServer
) -> None:
    smtp = smtp_server.handler
    smtp_settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp_server.port, "smtp_timeout_s": 5.0}
    )
    clock = Clock()
    ledger_registry = new_registry("ledger")
    ledger = build_ledger(settings, ledger_registry, clock=clock)
    api = TestClient(create_ledger_app(ledger, ledger_registry))
    relay = OutboxRelay(
        ledger.app,
        topics.ledger,
        to_cloud_event,
        producer_config(settings.kafka_bootstrap_servers or "", "poison-test-ledger"),
        registry=ledger_registry,
        idle_poll_s=0.05,
    )
    retry = RetryPolicy(initial_s=0.05, max_s=0.2, max_attempts=3, stuck_after_s=0.5)
    invoicer = build_invoicer(settings, new_registry("invoicer"), retry=retry)
    invoicer_http = TestClient(invoicer.http_app(Authenticator(settings)))
    notifier = build_notifier(smtp_settings, new_registry("notifier"), poll_interval_s=0.05)
    threads = Threads()
    try:
        poisoned = record_poisoned_contract(ledger.app, at=clock.now)
        healthy = open_healthy_cloud(api, settings, clock.now)
        bought = api.post(
            f"/v1/clouds/{healthy}/seat-purchases",
            json={"seats": 5},
            headers={**headers(settings, "owner-healthy", step_up=True), "Idempotency-Key": "b1"},
        )
        assert bought.status_code == 201, bought.text

        threads.run(relay.run)
        threads.run(invoicer.kafka_consumer(group_id=f"poison-{topics.prefix}").run)
        threads.run(invoicer.relay().run)
        threads.run(notifier.kafka_consumer().run)
        threads.run(notifier.loop.run)

        # The poisoned event goes to the ledger's dead-letter topic; the purchase behind it
        # is invoiced and e-mailed.
        wait_until(lambda: len(invoicer.app.invoices_of_cloud(healthy)) == 1, 60, "invoice")
        wait_until(lambda: len(smtp.messages()) == 1, 60, "the invoice e-mail")
        (dead,) = read_topic(topics.ledger_dlq, 1)
        dead_headers = {k: v.decode() for k, v in dead.headers()}
        assert dead_headers[DLQ_REASON_HEADER] == UNPUBLISHABLE_REASON
        assert dead_headers[DLQ_SOURCE_TOPIC_HEADER] == topics.ledger
        assert dead_headers[DLQ_NOTIFICATION_ID_HEADER] == "1"
        assert dead.key() == str(poisoned).encode()
        assert b"9999-12-16" in dead.value()
        assert invoicer.app.invoices_of_cloud(poisoned) == []
        assert invoicer_http.get("/readyz").json()["checks"]["consumer:invoicer"] == "ok"

        # A month on: the scheduler renews the healthy cloud in the tick in which the
        # poisoned one fails; the renewal is invoiced and e-mailed too.
        clock.now += timedelta(days=40)
        assert ledger.scheduler.run_once() == 1
        assert set(ledger.scheduler.parked) == {poisoned}
        failures = ledger_registry.get_sample_value(
            "seatledger_ledger_renewal_failures_total", {"stage": "check"}
        )
        assert failures == 1
        wait_until(lambda: len(invoicer.app.invoices_of_cloud(healthy)) == 2, 60, "renewal")
        wait_until(lambda: len(smtp.messages()) == 2, 60, "the renewal e-mail")
        assert all(m.rcpt_tos == [HEALTHY_BILLING_EMAIL] for m in smtp.messages())

        # The invoicer's database refuses its writes: the next purchase is retried (an
        # outage, never dead-lettered) and the invoicer is not ready while it is stuck.
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("REVOKE INSERT ON invoicer.invoicer_events FROM CURRENT_USER")
            try:
                more = api.post(
                    f"/v1/clouds/{healthy}/seat-purchases",
                    json={"seats": 6},
                    headers={
                        **headers(settings, "owner-healthy", step_up=True),
                        "Idempotency-Key": "b2",
                    },
                )
                assert more.status_code == 201, more.text
                wait_until(lambda: invoicer_http.get("/readyz").status_code == 503, 30, "stuck")
                checks = invoicer_http.get("/readyz").json()["checks"]
                assert checks["consumer:invoicer"] == "failing"
            finally:
                admin.execute("GRANT INSERT ON invoicer.invoicer_events TO CURRENT_USER")
        wait_until(lambda: len(invoicer.app.invoices_of_cloud(healthy)) == 3, 60, "caught up")
        wait_until(lambda: invoicer_http.get("/readyz").status_code == 200, 30, "ready again")
        (only,) = read_topic(topics.ledger_dlq, 2, timeout_s=3)  # nothing else dead-lettered
        assert only.key() == str(poisoned).encode()
    finally:
        threads.close()
        ledger.close()
        invoicer.close()
        notifier.close()
