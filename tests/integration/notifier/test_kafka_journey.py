"""From ``seatledger.invoices.v1`` to the SMTP server and on to ``seatledger.notifications.v1``:
the tracked consumer, the sender and the outbox relay on the real broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from schemas.envelope import CloudEvent
from schemas.notifications import EmailSent
from schemas.registry import parse_cloud_event
from seatledger.kafka import consumer_config, producer_config
from services.notifier.sender import Outcome
from tests.samples import make_invoice

pytestmark = pytest.mark.integration


def test_an_invoice_published_twice_is_mailed_once_and_its_outcome_published(
    make_notifier, smtp_server, smtp_handler, kafka_bootstrap, new_topic, group_id
):
    invoices_topic = new_topic("invoices", 1)
    notifications_topic = new_topic("notifications", 1)
    dead_letters = new_topic("invoices-dlq", 1)
    smtp_server.start()
    notifier = make_notifier(kafka_bootstrap_servers=kafka_bootstrap)
    invoice = make_invoice(email="ap@example.com")
    value = CloudEvent.of(
        invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
    ).to_json_bytes()
    producer = Producer(producer_config(kafka_bootstrap, "test"))
    for _ in range(2):  # the invoicer's relay re-published it after a crash
        producer.produce(invoices_topic, key=str(invoice.cloud_id), value=value)
    producer.produce(invoices_topic, key="x", value=b"not json")
    assert producer.flush(10) == 0

    consumer = notifier.kafka_consumer(
        topics=[invoices_topic], group_id=group_id, dead_letter_topic_of=lambda _: dead_letters
    )
    try:
        deadline = time.monotonic() + 30
        while notifier.app.position(f"{invoices_topic}:0") != 2:
            assert time.monotonic() < deadline, "the consumer did not reach offset 2"
            consumer.poll_once(timeout_s=0.5)
    finally:
        consumer.close()

    assert notifier.sender.run_once()[Outcome.SENT] == 1
    assert notifier.sender.run_once()[Outcome.SENT] == 0
    assert [r.rcpt_tos for r in smtp_handler.messages()] == [["ap@example.com"]]

    relay = notifier.relay(topic=notifications_topic)
    try:
        assert relay.publish_pending() >= 1
    finally:
        relay.close()
    reader = Consumer(consumer_config(kafka_bootstrap, group_id + "-reader", "test"))
    reader.subscribe([notifications_topic])
    try:
        deadline = time.monotonic() + 30
        msg = None
        while msg is None or msg.error() is not None:
            assert time.monotonic() < deadline, "no outcome event published"
            msg = reader.poll(0.5)
    finally:
        reader.close()
    parsed = parse_cloud_event(msg.value())
    assert isinstance(parsed.data, EmailSent)
    assert parsed.data.invoice_id == invoice.invoice_id
    assert msg.key() == str(invoice.cloud_id).encode()
