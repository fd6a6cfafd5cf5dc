"""SMTP down then back, temporary and permanent refusals, redelivery: against a real SMTP
server and PostgreSQL, driven pass by pass with a manual clock."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from schemas.envelope import CloudEvent
from schemas.notifications import EmailFailed, EmailSent
from seatledger.tracking import Position
from services.notifier.contract import to_cloud_event
from services.notifier.sender import Outcome
from tests.samples import make_invoice

pytestmark = pytest.mark.integration

TOPIC = "seatledger.invoices.v1"


def deliver(notifier, invoice, partition: int, offset: int) -> None:
    notifier.handle(
        CloudEvent.of(
            invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
        ),
        invoice,
        Position.kafka(TOPIC, partition, offset),
    )


def published(notifier):
    events = []
    for notification in notifier.app.recorder.select_notifications(None, 1000):
        cloud_event = to_cloud_event(notifier.app.mapper.to_domain_event(notification))
        if cloud_event is not None:
            events.append(cloud_event)
    return events


def test_smtp_down_for_a_while_then_back_delivers_every_invoice_exactly_once(
    make_notifier, smtp_server, smtp_handler, clock
):
    notifier = make_notifier(clock=clock)
    invoices = [
        make_invoice(number=f"SL-2026-{n:06d}", email=f"ap{n}@example.com") for n in range(1, 6)
    ]
    for n, invoice in enumerate(invoices):
        deliver(notifier, invoice, partition=n % 3, offset=n)

    # The server is down: every attempt is refused, none blocks the others.
    assert notifier.sender.run_once()[Outcome.RETRY] == 5
    clock.advance(seconds=2)
    assert notifier.sender.run_once()[Outcome.RETRY] == 5
    assert notifier.registry.get_sample_value("seatledger_notifier_retry_queue_size") == 5
    # Backoff: nothing is due right after a failure.
    assert notifier.sender.run_once()[Outcome.RETRY] == 0

    smtp_server.start()
    clock.advance(seconds=10)
    assert notifier.sender.run_once()[Outcome.SENT] == 5
    clock.advance(hours=2)
    assert notifier.sender.run_once() == dict.fromkeys(Outcome, 0)

    received = smtp_handler.messages()
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(
        i.customer.billing_email for i in invoices
    )
    assert Counter(r.message["Message-ID"] for r in received).most_common(1)[0][1] == 1
    for invoice in invoices:
        delivery = notifier.app.delivery_of(invoice.invoice_id)
        assert delivery.state == "sent"
        assert delivery.attempts == 3
    assert notifier.registry.get_sample_value("seatledger_notifier_retry_queue_size") == 0
    assert (
        notifier.registry.get_sample_value("seatledger_notifier_emails_total", {"outcome": "retry"})
        == 10
    )
    sent = [e for e in published(notifier) if e.type == EmailSent.event_type()]
    assert len(sent) == 5


def test_a_4xx_reply_is_retried_and_delivered_once(make_notifier, smtp_server, smtp_handler, clock):
    smtp_handler.rcpt_replies["greylisted@example.com"] = [
        "451 4.7.1 greylisted, try again later",
        "250 OK",
    ]
    smtp_server.start()
    notifier = make_notifier(clock=clock)
    invoice = make_invoice(email="greylisted@example.com")
    other = make_invoice(email="other@example.com", number="SL-2026-000002")
    deliver(notifier, invoice, 0, 0)
    deliver(notifier, other, 1, 0)

    counts = notifier.sender.run_once()
    assert (counts[Outcome.RETRY], counts[Outcome.SENT]) == (1, 1)
    delivery = notifier.app.delivery_of(invoice.invoice_id)
    assert delivery.failure_reason == "smtp_4xx"
    assert "451" in delivery.failure_detail
    clock.advance(seconds=2)
    assert notifier.sender.run_once()[Outcome.SENT] == 1

    assert [r.rcpt_tos for r in smtp_handler.messages()].count(["greylisted@example.com"]) == 1


def test_a_550_reply_records_a_failed_event_and_is_never_retried(
    make_notifier, smtp_server, smtp_handler, clock
):
    smtp_handler.rcpt_replies["gone@example.com"] = [
        "550 5.1.1 <gone@example.com>: mailbox unavailable"
    ]
    smtp_server.start()
    notifier = make_notifier(clock=clock)
    invoice = make_invoice(email="gone@example.com")
    deliver(notifier, invoice, 0, 0)

    assert notifier.sender.run_once()[Outcome.FAILED] == 1
    for _ in range(3):
        clock.advance(hours=1)
        assert notifier.sender.run_once() == dict.fromkeys(Outcome, 0)

    assert smtp_handler.rcpt_attempts == ["gone@example.com"]
    assert smtp_handler.messages() == []
    delivery = notifier.app.delivery_of(invoice.invoice_id)
    assert delivery.state == "failed"
    assert delivery.attempts == 1
    [failed] = [e for e in published(notifier) if e.type == EmailFailed.event_type()]
    data = EmailFailed.model_validate(failed.data)
    assert data.invoice_id == invoice.invoice_id
    assert data.reason == "smtp_5xx"
    assert "550" in data.detail
    assert "mailbox unavailable" in data.detail
    assert "gone@example.com" not in data.detail
    assert failed.subject == str(invoice.cloud_id)
    registry = notifier.registry
    assert registry.get_sample_value("seatledger_notifier_emails_total", {"outcome": "failed"}) == 1
    assert registry.get_sample_value("seatledger_notifier_pending_deliveries") == 0


def test_the_same_invoice_issued_delivered_twice_sends_one_message(
    make_notifier, smtp_server, smtp_handler, clock
):
    smtp_server.start()
    notifier = make_notifier(clock=clock)
    invoice = make_invoice()

    deliver(notifier, invoice, 0, 5)
    deliver(notifier, invoice, 0, 5)  # redelivered at the same offset
    notifier.sender.run_once()
    deliver(notifier, invoice, 0, 9)  # published again, read at a later offset
    clock.advance(hours=1)
    notifier.sender.run_once()

    assert len(smtp_handler.messages()) == 1
    assert notifier.app.position(f"{TOPIC}:0") == 9


def test_a_second_notifier_on_the_same_store_takes_over_without_sending_twice(
    make_notifier, smtp_server, smtp_handler, clock
):
    smtp_server.start()
    first = make_notifier(clock=clock)
    second = make_notifier(clock=clock)
    invoices = [make_invoice(number=f"SL-2026-{n:06d}") for n in range(1, 9)]
    for n, invoice in enumerate(invoices):
        deliver(first if n % 2 else second, invoice, n % 2, n)

    import threading

    barrier = threading.Barrier(2)

    def run(notifier):
        barrier.wait()
        notifier.sender.run_once()

    threads = [threading.Thread(target=run, args=(n,)) for n in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.advance(minutes=5)
    first.sender.run_once()
    second.sender.run_once()

    ids = [r.message["Message-ID"] for r in smtp_handler.messages()]
    assert len(ids) == 8
    assert len(set(ids)) == 8
