"""The seat-license story against the production-like topology: `seatledger run ledger`,
`run invoicer` and `run notifier` as three processes over the real Kafka broker, the real
PostgreSQL server and a real SMTP server."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.journey import BILLING_EMAIL, Journey
from tests.e2e.support import (
    JWT_SECRET,
    ServiceProcess,
    Tokens,
    check_invoice_email,
    free_port,
    metric_sum,
    parse_email,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


def test_seat_license_story_across_three_processes(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = {
        "SEATLEDGER_DATABASE_URL": postgres_url,
        "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SEATLEDGER_KAFKA_TOPIC_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}.",
        "SEATLEDGER_KAFKA_TOPIC_PARTITIONS": "3",
        "SEATLEDGER_JWT_SECRET": JWT_SECRET,
        "SEATLEDGER_SMTP_HOST": "127.0.0.1",
        "SEATLEDGER_SMTP_PORT": str(smtp.port),
        "SEATLEDGER_DATA_DIR": str(tmp_path / "data"),
    }
    processes = {
        name: ServiceProcess(["run", name], env, free_port(), tmp_path / f"{name}.log")
        for name in ("ledger", "invoicer", "notifier")
    }
    try:
        for process in processes.values():
            process.start()
        ledger, invoicer, notifier = (processes[n] for n in ("ledger", "invoicer", "notifier"))
        journey = Journey(ledger.url, invoicer.url, Tokens())

        cloud_id = journey.before_purchase()
        quote = journey.buy_three_seats(cloud_id)
        (invoice,) = journey.wait_for_invoices(cloud_id, 1)
        journey.check_invoice(invoice, quote)
        ((recipients, raw),) = wait_for(lambda: list(inbox.messages), what="the invoice e-mail")
        assert recipients == [BILLING_EMAIL]
        check_invoice_email(parse_email(raw), invoice, BILLING_EMAIL)
        journey.after_purchase(cloud_id)
        journey.check_group_moves_in_history(cloud_id)

        ledger_metrics = ledger.metrics()
        assert (
            metric_sum(ledger_metrics, "seatledger_ledger_commands_total", outcome="success") == 11
        )
        wait_for(
            lambda: metric_sum(ledger.metrics(), "seatledger_relay_published_total") >= 11,
            what="the ledger relay to publish every event",
        )
        invoicer_metrics = invoicer.metrics()
        assert metric_sum(invoicer_metrics, "seatledger_invoicer_invoices_issued_total") == 1
        assert metric_sum(invoicer_metrics, "seatledger_relay_published_total") == 1
        notifier_metrics = wait_for(
            lambda: (
                (m := notifier.metrics())
                and metric_sum(m, "seatledger_notifier_emails_total", outcome="sent") == 1
                and m
            ),
            what="the notifier's metrics to count the e-mail",
        )
        assert metric_sum(notifier_metrics, "seatledger_consumer_dead_lettered_total") == 0
        assert len(inbox.messages) == 1
        for process in processes.values():
            assert "rechnung@" not in process.tail(10_000)
    finally:
        codes = {name: process.stop() for name, process in processes.items()}
        smtp.stop()
    assert codes == {"ledger": 0, "invoicer": 0, "notifier": 0}, {
        name: process.tail() for name, process in processes.items()
    }
