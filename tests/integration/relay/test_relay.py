"""The outbox relay on the real PostgreSQL and broker: every stored event arrives, in per-cloud
order, with its stable id; the position is recorded only after the broker acknowledged."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from schemas.envelope import CONTENT_TYPE
from seatledger.kafka import TopicSpec, ensure_topics, producer_config
from seatledger.relay import Mapper, OutboxRelay, PublishError
from tests.integration.relay.support import (
    DeskApp,
    contract_mapper,
    desk_app,
    read_all,
    to_cloud_event,
    value_of,
)

pytestmark = pytest.mark.integration


def _make_gap(database_url: str, size: int) -> None:
    """Burn notification ids, as rolled-back transactions do."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('desks.desks_events', 'notification_id'),"
            " (SELECT last_value FROM desks.desks_events_notification_id_seq) + %s)",
            (size,),
        )


def _expected(app: DeskApp) -> list[Any]:
    """The contract events of everything stored, in notification order."""
    expected = []
    for notification in app.recorder.select_notifications(start=None, limit=1_000_000):
        cloud_event = to_cloud_event(app.mapper.to_domain_event(notification))
        if cloud_event is not None:
            expected.append(cloud_event)
    return expected


@pytest.mark.parametrize("mapper", [to_cloud_event, contract_mapper], ids=["plain", "parts"])
def test_every_stored_event_arrives_once_in_per_cloud_order_across_gaps(
    postgres_url: str, kafka_bootstrap: str, new_topic, tmp_path: Path, mapper: Mapper
) -> None:
    app = desk_app(postgres_url, tmp_path)
    topic = new_topic("relay", partitions=6)
    ids = app.open_many(25)
    for round_no in range(8):
        app.assign_round(ids, round_no)
        if round_no % 3 == 0:
            _make_gap(postgres_url, 7)
    desk = app.repository.get(ids[0])
    desk.note("internal, not published")
    app.save(desk)
    registry = CollectorRegistry()
    relay = OutboxRelay(
        app,
        topic,
        mapper,
        producer_config(kafka_bootstrap, "test-relay"),
        batch_size=37,
        max_in_flight=3,
        registry=registry,
    )

    handled = relay.publish_pending()

    expected = _expected(app)
    assert len(expected) == 25 * 8
    head = app.recorder.max_notification_id()
    assert handled == 25 * 8 + 25 + 1
    assert relay.position == head
    messages = read_all(kafka_bootstrap, topic, len(expected), idle_s=1.0)
    assert sorted(m.value() for m in messages) == sorted(e.to_json_bytes() for e in expected)
    by_cloud: dict[str, list[int]] = defaultdict(list)
    partitions_of: dict[str, set[int]] = defaultdict(set)
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        document = value_of(msg)
        assert msg.key().decode() == document["subject"]
        headers = dict(msg.headers())
        assert headers["ce_id"].decode() == document["id"]
        assert headers["ce_type"].decode() == document["type"]
        assert headers["content-type"].decode() == CONTENT_TYPE
        by_cloud[document["subject"]].append(document["data"]["licenses_assigned"])
        partitions_of[document["subject"]].add(msg.partition())
    assert all(len(p) == 1 for p in partitions_of.values())
    assert all(seq == list(range(1, 9)) for seq in by_cloud.values())
    assert len({m.partition() for m in messages}) > 1
    assert registry.get_sample_value("seatledger_relay_position", {"relay": topic}) == head
    assert registry.get_sample_value("seatledger_relay_lag_notifications", {"relay": topic}) == 0
    assert registry.get_sample_value("seatledger_relay_published_total", {"relay": topic}) == len(
        expected
    )

    # A second relay over the same store resumes from the recorded position: nothing again.
    again = OutboxRelay(app, topic, to_cloud_event, producer_config(kafka_bootstrap, "again"))
    assert again.position == head
    assert again.publish_pending() == 0
    again.close()
    relay.close()


def test_an_unacknowledged_batch_records_nothing_and_is_published_later(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path, new_topic
) -> None:
    app = desk_app(postgres_url, tmp_path)
    ids = app.open_many(3)
    app.assign_round(ids, 1)
    topic = new_topic("relay-missing", partitions=2)
    missing = f"{topic}.notyet"
    config = producer_config(
        kafka_bootstrap,
        "test-relay",
        **{"delivery.timeout.ms": 1500, "request.timeout.ms": 1000, "linger.ms": 0},
    )
    registry = CollectorRegistry()
    # Batches of 2: the failure comes while the next batch is already being read ahead.
    relay = OutboxRelay(app, missing, to_cloud_event, config, registry=registry, batch_size=2)

    with pytest.raises(PublishError):
        relay.publish_pending()
    # Only the first batch (two openings, nothing to publish) is recorded; nothing from the
    # first unacknowledged message on.
    assert relay.position == 2
    assert registry.get_sample_value("seatledger_relay_publish_errors_total", {"relay": missing})

    ensure_topics(kafka_bootstrap, [TopicSpec(missing, 2)])
    try:
        assert relay.publish_pending() == 4  # everything after the recorded position
        assert relay.position == app.recorder.max_notification_id()
        messages = read_all(kafka_bootstrap, missing, 3, idle_s=0.5)
        assert sorted(value_of(m)["subject"] for m in messages) == sorted(str(i) for i in ids)
    finally:
        relay.close()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics([missing], operation_timeout=30).values():
            future.result()


def test_the_relay_wakes_on_postgres_notify_within_milliseconds(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path, new_topic
) -> None:
    app = desk_app(postgres_url, tmp_path)
    ids = app.open_many(1)
    topic = new_topic("relay-notify", partitions=1)
    # A fallback poll of 30 s: only LISTEN/NOTIFY can make it publish quickly.
    relay = OutboxRelay(
        app,
        topic,
        to_cloud_event,
        producer_config(kafka_bootstrap, "test-relay", **{"linger.ms": 1}),
        listen_fallback_s=30.0,
    )
    stop = threading.Event()
    runner = threading.Thread(target=relay.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while relay.position != app.recorder.max_notification_id():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # idle: waiting on NOTIFY
        latencies = []
        for round_no in range(5):
            app.assign_round(ids, round_no)
            committed = time.monotonic()
            head = app.recorder.max_notification_id()
            while relay.position != head:
                assert time.monotonic() - committed < 5, "not woken by NOTIFY"
                time.sleep(0.001)
            latencies.append(time.monotonic() - committed)
            time.sleep(0.1)
        assert max(latencies) < 0.5, latencies
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert len(read_all(kafka_bootstrap, topic, 5, idle_s=0.3)) == 5


def test_the_relay_polls_a_sqlite_store_and_runs_again_after_a_stop(
    kafka_bootstrap: str, tmp_path: Path, new_topic
) -> None:
    app = desk_app(f"sqlite:///{tmp_path}/store", tmp_path)
    ids = app.open_many(4)
    topic = new_topic("relay-sqlite", partitions=2)
    relay = OutboxRelay(
        app, topic, to_cloud_event, producer_config(kafka_bootstrap, "test-relay"), batch_size=3
    )
    for run_no in range(2):  # a supervisor restarts run() on the same relay
        stop = threading.Event()
        runner = threading.Thread(target=relay.run, args=(stop,))
        runner.start()
        try:
            for round_no in range(3):
                app.assign_round(ids, round_no)
            expected = 12 * (run_no + 1)
            messages = read_all(kafka_bootstrap, topic, expected, timeout_s=20, idle_s=0.5)
        finally:
            stop.set()
            runner.join(10)
        assert not runner.is_alive()
        assert len(messages) == expected
    assert OutboxRelay(app, topic, to_cloud_event, {}).position == (
        app.recorder.max_notification_id()
    )


def test_only_one_relay_publishes_a_store_and_a_standby_takes_over(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path, new_topic
) -> None:
    topic = new_topic("relay-leader", partitions=2)
    nodes = [desk_app(postgres_url, tmp_path), desk_app(postgres_url, tmp_path)]
    ids = nodes[0].open_many(5)
    registries = [CollectorRegistry(), CollectorRegistry()]
    relays = [
        OutboxRelay(
            node,
            topic,
            to_cloud_event,
            producer_config(kafka_bootstrap, f"node-{index}"),
            registry=registries[index],
            standby_poll_s=0.2,
        )
        for index, node in enumerate(nodes)
    ]
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=relay.run, args=(stop,))
        for relay, stop in zip(relays, stops, strict=True)
    ]

    def wait_for(condition, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    threads[0].start()
    try:
        wait_for(lambda: relays[0].is_leader)
        threads[1].start()
        time.sleep(0.6)
        assert not relays[1].is_leader
        for round_no in range(3):
            nodes[1].assign_round(ids, round_no)  # written through the other node
        head = nodes[0].recorder.max_notification_id()
        wait_for(lambda: relays[0].position == head)
        time.sleep(0.5)
        assert not registries[1].get_sample_value(
            "seatledger_relay_published_total", {"relay": topic}
        )

        stops[0].set()
        threads[0].join(10)
        wait_for(lambda: relays[1].is_leader)
        publishing = {"relay": topic}
        assert registries[0].get_sample_value("seatledger_relay_publishing", publishing) == 0
        assert registries[1].get_sample_value("seatledger_relay_publishing", publishing) == 1
        nodes[0].assign_round(ids, 3)
        head = nodes[0].recorder.max_notification_id()
        wait_for(lambda: relays[1].position == head)
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join(10)
    messages = read_all(kafka_bootstrap, topic, 20, idle_s=1.0)
    ids_seen = [value_of(m)["id"] for m in messages]
    assert len(ids_seen) == len(set(ids_seen)) == 20
    assert registries[1].get_sample_value("seatledger_relay_published_total", {"relay": topic}) == 5
