"""Ledger events on the real broker become invoices in PostgreSQL, exactly once, numbered
without gaps; redelivery of every message issues nothing new; the invoices are published."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from schemas.invoices import InvoiceIssued
from schemas.registry import parse_cloud_event
from seatledger.consumer import TrackedConsumer
from services.invoicer.bootstrap import build_invoicer
from tests.integration.invoicer.helpers import (
    all_numbers,
    assert_gapless,
    invoice_count,
    ledger_history,
    run_in_thread,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_ledger_events_become_gapless_invoices_once_even_when_everything_is_redelivered(
    settings, topics, publish, read_topic
):
    history = ledger_history(clouds=4, purchases_per_cloud=5)
    expected = invoice_count(history)  # 4 x (5 purchases + 1 renewal) = 24
    # The relay is at-least-once: some events arrive twice, with the same event id.
    republished = history[3:9]
    publish(topics.ledger, history + republished)
    last_offset = len(history) + len(republished) - 1
    source = f"{topics.ledger}:0"

    invoicer = build_invoicer(settings, CollectorRegistry())
    try:
        consumer = invoicer.kafka_consumer(group_id=f"g-{topics.prefix}")
        thread, stop = run_in_thread(consumer)
        wait_until(lambda: invoicer.app.position(source) == last_offset, what="all processed")
        stop.set()
        thread.join(30)
        assert_gapless(all_numbers(invoicer), expected)

        # Kafka forgets every offset (a new group, positions ignored): all messages come again
        # at the same offsets, and the tracking records refuse each one.
        replay = TrackedConsumer(
            settings.kafka_bootstrap_servers,
            f"g2-{topics.prefix}",
            [topics.ledger],
            invoicer.handler,
            lambda _source: None,
            on_skipped=invoicer.record_skipped,
        )
        seen = 0

        def poll() -> bool:
            nonlocal seen
            seen += replay.poll_once(0.5)
            return seen >= last_offset + 1

        try:
            wait_until(poll, what="the replay")
        finally:
            replay.close()
        assert_gapless(all_numbers(invoicer), expected)
        sample = invoicer.registry.get_sample_value
        assert sample("seatledger_invoicer_ledger_events_total", {"outcome": "issued"}) == expected
        assert sample(
            "seatledger_invoicer_ledger_events_total", {"outcome": "already_invoiced"}
        ) == sum(1 for e in republished if "SeatsIncreased" in e.type or "Renewed" in e.type)
        duplicates = sample("seatledger_invoicer_ledger_events_total", {"outcome": "duplicate"})
        assert (duplicates or 0) >= expected

        # The relay publishes one InvoiceIssued per invoice, keyed by cloud id.
        relay = invoicer.relay()
        relay.publish_pending()
        messages = read_topic(topics.invoices, expected)
        assert len(messages) == expected
        issued = [parse_cloud_event(m.value()) for m in messages]
        assert all(isinstance(p.data, InvoiceIssued) for p in issued)
        assert sorted(getattr(p.data, "invoice_number") for p in issued)  # noqa: B009 == sorted(all_numbers(invoicer))
        for message, parsed in zip(messages, issued, strict=True):
            assert message.key().decode() == parsed.cloud_event.subject
            assert json.loads(message.value())["source"] == "/seatledger/invoicer"
        lags = invoicer.sample_kafka_lag()
        assert lags == {source: 0}
    finally:
        invoicer.close()
