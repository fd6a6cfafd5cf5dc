"""Malformed ledger messages go to the dead-letter topic; nothing is invoiced for them, no
invoice number is consumed, and the messages behind them are processed."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from prometheus_client import CollectorRegistry

from schemas.envelope import DLQ_REASON_HEADER, DLQ_SOURCE_OFFSET_HEADER
from services.invoicer.bootstrap import build_invoicer
from tests.integration.invoicer.helpers import all_numbers, run_in_thread, wait_until
from tests.unit.invoicer.ledger_events import envelope, seats_increased

pytestmark = pytest.mark.integration


def test_malformed_ledger_messages_are_dead_lettered_and_the_stream_goes_on(
    settings, topics, publish, read_topic
):
    cloud = uuid.uuid4()
    contradictory = seats_increased(date(2026, 11, 28), cloud_id=cloud).model_copy(
        update={"seats_after": 42}  # 3 + 2 != 42: valid per schema, impossible per terms
    )
    not_a_schema = envelope(seats_increased(date(2026, 11, 28), cloud_id=cloud))
    not_a_schema = not_a_schema.model_copy(
        update={"data": {**not_a_schema.data, "seats_added": "two"}}
    )
    good = envelope(seats_increased(date(2026, 11, 29), cloud_id=cloud))
    publish(
        topics.ledger,
        [
            (str(cloud).encode(), b"{not json"),
            envelope(contradictory),
            not_a_schema,
            good,
        ],
    )
    invoicer = build_invoicer(settings, CollectorRegistry())
    consumer = invoicer.kafka_consumer(group_id=f"dlq-{topics.prefix}")
    thread, stop = run_in_thread(consumer)
    try:
        wait_until(lambda: invoicer.app.position(f"{topics.ledger}:0") == 3, what="offset 3")
    finally:
        stop.set()
        thread.join(30)
    try:
        dead = read_topic(topics.ledger_dlq, 3)
        reasons = {
            dict(m.headers())[DLQ_SOURCE_OFFSET_HEADER].decode(): dict(m.headers())[
                DLQ_REASON_HEADER
            ].decode()
            for m in dead
        }
        assert reasons == {"0": "not_json", "1": "poison", "2": "schema_violation"}
        assert dead[0].value() == b"{not json"  # the original value, untouched
        # Only the good purchase is invoiced, and it took the first number.
        assert all_numbers(invoicer) == ["SL-2026-000001"]
        (invoice,) = invoicer.app.invoices_of_cloud(cloud)
        assert str(invoice.caused_by.event_id) == good.id
        rejected = invoicer.registry.get_sample_value(
            "seatledger_invoicer_ledger_events_total", {"outcome": "rejected"}
        )
        assert rejected == 1
    finally:
        invoicer.close()
