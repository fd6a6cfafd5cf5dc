"""``seatledger run invoicer`` as its own process on the real broker and PostgreSQL: ledger
events in, invoices over HTTP (JSON and PDF), ``InvoiceIssued`` on the invoices topic, metrics,
and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from datetime import date
from pathlib import Path

import httpx
import pytest

from schemas.registry import parse_cloud_event
from seatledger.auth import mint_token
from tests.integration.invoicer.helpers import wait_until
from tests.unit.invoicer.ledger_events import (
    envelope,
    license_assigned,
    period_renewed,
    seats_increased,
    terms,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_invoicer_process_invoices_serves_and_publishes(settings, topics, publish, read_topic):
    port = _free_port()
    env = {
        **os.environ,
        "SEATLEDGER_DATABASE_URL": settings.database_url,
        "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SEATLEDGER_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "SEATLEDGER_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "SEATLEDGER_DATA_DIR": str(settings.data_dir),
        "SEATLEDGER_INVOICE_NUMBER_PREFIX": "INV",
    }
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/seatledger"), "run", "invoicer", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=60, what="readiness")
        cloud = uuid.uuid4()
        contract = terms(locale="en", currency="KWD", seat_price="12.345", tax_rate="5")
        purchase = envelope(seats_increased(date(2026, 11, 28), cloud_id=cloud, contract=contract))
        publish(
            topics.ledger,
            [
                envelope(license_assigned(cloud)),
                purchase,
                envelope(period_renewed(10, cloud_id=cloud, contract=contract)),
            ],
        )
        owner = {"Authorization": f"Bearer {mint_token(settings, subject='owner-1')}"}

        def invoices() -> list[dict]:
            response = httpx.get(f"{base}/v1/clouds/{cloud}/invoices", headers=owner, timeout=5)
            assert response.status_code == 200, response.text
            return list(response.json()["invoices"])

        wait_until(lambda: len(invoices()) == 2, what="two invoices over HTTP")
        first, second = invoices()
        assert (first["invoice_number"], second["invoice_number"]) == (
            "INV-2026-000001",
            "INV-2026-000002",
        )
        assert first["caused_by"]["event_id"] == purchase.id
        # [Oct 31, Nov 30), R = 2, D = 30: 2 x 12.345 x 2/30 = 1.646 KWD, tax 5 % = 0.0823.
        assert (first["net"], first["tax"], first["gross"]) == ("1.646", "0.082", "1.728")
        pdf = httpx.get(
            f"{base}/v1/invoices/{first['invoice_id']}",
            headers={**owner, "Accept": "application/pdf"},
            timeout=10,
        )
        assert pdf.status_code == 200
        assert pdf.content.startswith(b"%PDF-")

        published = read_topic(topics.invoices, 2)
        numbers = sorted(
            parse_cloud_event(m.value()).cloud_event.data["invoice_number"] for m in published
        )
        assert numbers == ["INV-2026-000001", "INV-2026-000002"]

        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert (
            'seatledger_invoicer_invoices_issued_total{currency="KWD",kind="renewal"} 1.0'
            in metrics
        )
        assert "seatledger_invoicer_consumer_lag_messages" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, process.stderr.read().decode()[-3000:]
