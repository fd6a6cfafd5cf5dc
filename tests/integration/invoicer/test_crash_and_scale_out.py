"""Crashes and scale-out on the real broker and PostgreSQL: an invoicer killed with SIGKILL
between its database commit and its Kafka offset commit issues no duplicate and skips nothing
after a restart; two invoicers in one consumer group never produce a gap or a duplicate in
the number series."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry

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

ROOT = Path(__file__).resolve().parents[3]


def _start(settings, group_id: str, kill_after: int = 0) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SEATLEDGER_DATABASE_URL": settings.database_url,
        "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SEATLEDGER_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "SEATLEDGER_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "SEATLEDGER_DATA_DIR": str(settings.data_dir),
        "INVOICER_GROUP_ID": group_id,
        "INVOICER_KILL_AFTER": str(kill_after),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.invoicer.invoicer_process"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _committed_offset(settings, group_id: str, topic: str) -> int:
    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group_id})
    try:
        (tp,) = probe.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)  # negative (OFFSET_INVALID) when nothing was committed
    finally:
        probe.close()


def test_sigkill_between_database_and_offset_commit_neither_duplicates_nor_skips(
    settings, topics, publish
):
    history = ledger_history(clouds=5, purchases_per_cloud=5)  # 35 messages, 30 invoices
    expected = invoice_count(history)
    publish(topics.ledger, history)
    last_offset = len(history) - 1
    source = f"{topics.ledger}:0"
    group = f"crash-{topics.prefix}"
    observer = build_invoicer(settings, CollectorRegistry())
    try:
        # 1. The process kills itself right after the 8th message's database commit.
        first = _start(settings, group, kill_after=8)
        assert first.wait(60) == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
        position = observer.app.position(source)
        assert position == 7
        # Kafka was never told: the committed offset is at most the last message's own offset,
        # so Kafka alone would deliver it again.
        assert _committed_offset(settings, group, topics.ledger) <= position

        # 2. Restarted, killed again from outside (SIGKILL) while it is busy.
        second = _start(settings, group)
        wait_until(lambda: (observer.app.position(source) or 0) >= 14, what="progress")
        second.send_signal(signal.SIGKILL)
        assert second.wait(30) == -signal.SIGKILL

        # 3. Restarted for good: it finishes the topic.
        third = _start(settings, group)
        try:
            wait_until(lambda: observer.app.position(source) == last_offset, what="the end")
        finally:
            third.send_signal(signal.SIGTERM)
            third.wait(30)
        numbers = all_numbers(observer)
        assert_gapless(numbers, expected)
        # Every purchase and renewal has exactly its invoice.
        issued_for = {
            invoice.caused_by.event_id
            for cloud_id in {e.subject for e in history}
            for invoice in observer.app.invoices_of_cloud(uuid.UUID(cloud_id))
        }
        relevant = {
            e.id for e in history if "SeatsIncreased" in e.type or "PeriodRenewed" in e.type
        }
        assert {str(event_id) for event_id in issued_for} == relevant
    finally:
        observer.close()


@pytest.mark.ledger_partitions(4)
def test_two_invoicers_in_one_group_share_the_series_without_gaps_or_duplicates(
    settings, topics, publish
):
    history = ledger_history(clouds=16, purchases_per_cloud=4, renewals=False)
    expected = invoice_count(history)  # 64
    group = f"pair-{topics.prefix}"
    first = build_invoicer(settings, CollectorRegistry())
    second = build_invoicer(settings, CollectorRegistry())
    consumers = [
        first.kafka_consumer(group_id=group, name="first"),
        second.kafka_consumer(group_id=group, name="second"),
    ]
    runs = [run_in_thread(consumer) for consumer in consumers]
    try:
        # Both members hold partitions before anything is published, so both work at once.
        wait_until(lambda: all(c.assignment for c in consumers), what="both assigned")
        publish(topics.ledger, history)

        def done() -> bool:
            return len(all_numbers(first)) >= expected

        wait_until(done, timeout_s=120, what="all invoices")
        time.sleep(1.0)  # anything still in flight would show up as an extra number
    finally:
        for _, stop in runs:
            stop.set()
        for thread, _ in runs:
            thread.join(30)
    try:
        assert_gapless(all_numbers(first), expected)
        issued = [
            invoicer.registry.get_sample_value(
                "seatledger_invoicer_ledger_events_total", {"outcome": "issued"}
            )
            or 0
            for invoicer in (first, second)
        ]
        assert sum(issued) == expected
        assert all(count > 0 for count in issued), f"one instance did all the work: {issued}"
        conflicts = sum(
            invoicer.registry.get_sample_value("seatledger_invoicer_number_conflicts_total") or 0
            for invoicer in (first, second)
        )
        print(f"issued per instance: {issued}; number conflicts retried: {conflicts}")
    finally:
        first.close()
        second.close()
