"""The notifier as its own process (``seatledger run notifier``):
Kafka in, SMTP out, outcome published, health and metrics, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from schemas.envelope import CloudEvent
from schemas.notifications import EmailSent
from schemas.registry import parse_cloud_event
from seatledger.kafka import (
    INVOICES_TOPIC,
    NOTIFICATIONS_TOPIC,
    TopicSpec,
    consumer_config,
    dead_letter_topic,
    ensure_topics,
    producer_config,
)
from tests.integration.notifier.smtp import free_port
from tests.samples import make_invoice

pytestmark = pytest.mark.integration


@pytest.fixture
def prefixed_topics(kafka_bootstrap):
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    names = [
        prefix + INVOICES_TOPIC,
        prefix + NOTIFICATIONS_TOPIC,
        dead_letter_topic(prefix + INVOICES_TOPIC),
    ]
    ensure_topics(kafka_bootstrap, [TopicSpec(name, 2) for name in names])
    yield prefix
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s}s")


def test_the_notifier_process_mails_an_invoice_publishes_the_outcome_and_stops_on_sigterm(
    postgres_url, kafka_bootstrap, prefixed_topics, smtp_server, smtp_handler, tmp_path
):
    smtp_server.start()
    http_port = free_port()
    env = {
        **os.environ,
        "SEATLEDGER_DATABASE_URL": postgres_url,
        "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SEATLEDGER_KAFKA_TOPIC_PREFIX": prefixed_topics,
        "SEATLEDGER_SMTP_HOST": "127.0.0.1",
        "SEATLEDGER_SMTP_PORT": str(smtp_server.port),
        "SEATLEDGER_MAIL_FROM": "billing@seatledger.example",
        "SEATLEDGER_HTTP_PORT": str(http_port),
        "SEATLEDGER_DATA_DIR": str(tmp_path),
        "SEATLEDGER_JWT_SECRET": "x" * 40,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "seatledger.cli", "run", "notifier"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30, "ready")
        invoice = make_invoice(email="ap@example.com")
        value = CloudEvent.of(
            invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
        ).to_json_bytes()
        producer = Producer(producer_config(kafka_bootstrap, "test"))
        producer.produce(prefixed_topics + INVOICES_TOPIC, key=str(invoice.cloud_id), value=value)
        assert producer.flush(10) == 0

        wait_for(lambda: len(smtp_handler.messages()) == 1, 30, "the e-mail")
        assert smtp_handler.messages()[0].rcpt_tos == ["ap@example.com"]
        wait_for(
            lambda: (
                'seatledger_notifier_emails_total{outcome="sent"} 1.0'
                in httpx.get(f"{base}/metrics").text
            ),
            10,
            "the sent metric",
        )

        reader = Consumer(consumer_config(kafka_bootstrap, f"reader-{uuid.uuid4().hex}", "t"))
        reader.subscribe([prefixed_topics + NOTIFICATIONS_TOPIC])
        try:
            deadline = time.monotonic() + 30
            msg = None
            while msg is None or msg.error() is not None:
                assert time.monotonic() < deadline, "no outcome event published"
                msg = reader.poll(0.5)
        finally:
            reader.close()
        outcome = parse_cloud_event(msg.value()).data
        assert isinstance(outcome, EmailSent)
        assert outcome.invoice_id == invoice.invoice_id
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            raise
    assert process.returncode == 0, stderr[-3000:]
    assert "ap@example.com" not in stderr
