"""The tracked consumer on the real broker and PostgreSQL: poison messages go to the dead-letter
topic with headers naming the error and origin; a database outage is retried, never
dead-lettered; two members of a group split the partitions and process each event once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from schemas._base import EventData
from schemas.envelope import CloudEvent
from schemas.ledger import Actor, LicenseAssigned
from seatledger.consumer import PoisonMessage, RetryPolicy, TrackedConsumer
from seatledger.kafka import producer_config
from seatledger.relay import OutboxRelay
from seatledger.tracking import Position
from tests.integration.relay.support import (
    Desk,
    TallyApp,
    assign_many,
    desk_app,
    read_all,
    tally_app,
    to_cloud_event,
)

pytestmark = pytest.mark.integration


def _event(cloud: str, licenses: int, user_id: str = "u-1") -> CloudEvent:
    data = LicenseAssigned(
        cloud_id=uuid.UUID(cloud),
        occurred_at=datetime.now(UTC),
        actor=Actor(kind="user", id="owner"),
        user_id=user_id,
        rights_group="employee",
        licenses_assigned=licenses,
        seats=10,
    )
    return CloudEvent.of(data, id=str(uuid.uuid4()), subject=cloud, time=data.occurred_at)


def _produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap, "test-producer"))
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _tally_handler(
    sink: TallyApp, log: list[str]
) -> Callable[[CloudEvent, EventData, Position], None]:
    lock = threading.Lock()

    def handle(cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        assert isinstance(data, LicenseAssigned)
        if data.user_id == "poison-me":
            raise PoisonMessage("this user can never be licensed")
        if sink.record(cloud_event, position):
            with lock:
                log.append(cloud_event.id)

    return handle


def _run_until(consumer: TrackedConsumer, done: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        consumer.poll_once(0.2)


def test_poison_messages_are_dead_lettered_with_their_origin_and_the_next_good_one_is_processed(
    postgres_url: str, kafka_bootstrap: str, new_topic, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic("consume", partitions=1)
    dlq = new_topic("consume-dlq", partitions=1)
    cloud = str(uuid.uuid4())
    good_first = _event(cloud, 1)
    unknown_version = json.loads(_event(cloud, 2).to_json_bytes())
    unknown_version["type"] = "seatledger.ledger.LicenseAssigned.v9"
    unknown_type = json.loads(_event(cloud, 2).to_json_bytes())
    unknown_type["type"] = "seatledger.ledger.SeatsStolen.v1"
    bad_data = json.loads(_event(cloud, 2).to_json_bytes())
    bad_data["data"]["licenses_assigned"] = "two"
    good_last = _event(cloud, 2)
    messages = [
        good_first.to_json_bytes(),
        b"\x00\x01 not json",
        b'{"hello": "world"}',
        json.dumps(unknown_type).encode(),
        json.dumps(unknown_version).encode(),
        json.dumps(bad_data).encode(),
        _event(cloud, 2, user_id="poison-me").to_json_bytes(),
        good_last.to_json_bytes(),
    ]
    _produce(kafka_bootstrap, topic, [(cloud, value) for value in messages])
    sink = tally_app(postgres_url, tmp_path)
    processed: list[str] = []
    registry = CollectorRegistry()
    consumer = TrackedConsumer(
        kafka_bootstrap,
        group_id,
        [topic],
        _tally_handler(sink, processed),
        sink.position,
        on_skipped=sink.save_tracked,
        dead_letter_topic_of=lambda _: dlq,
        registry=registry,
        name="tally",
    )
    try:
        _run_until(consumer, lambda: len(processed) == 2)
    finally:
        consumer.close()

    assert processed == [good_first.id, good_last.id]
    assert sink.seen(cloud) == [good_first.id, good_last.id]
    assert sink.position(f"{topic}:0") == 7
    letters = read_all(kafka_bootstrap, dlq, 6, idle_s=0.5)
    reasons = [dict(m.headers())["dlq_reason"].decode() for m in letters]
    assert reasons == [
        "not_json",
        "invalid_envelope",
        "unknown_type",
        "unknown_version",
        "schema_violation",
        "poison",
    ]
    for offset, letter in enumerate(letters, start=1):
        headers = {k: v.decode() for k, v in letter.headers()}
        assert headers["dlq_source_topic"] == topic
        assert headers["dlq_source_partition"] == "0"
        assert headers["dlq_source_offset"] == str(offset)
        assert headers["dlq_consumer_group"] == group_id
        assert headers["dlq_error"]
        assert letter.value() == messages[offset]
        assert letter.key().decode() == cloud
    assert "licenses_assigned" in dict(letters[4].headers())["dlq_error"].decode()
    assert "v9" in dict(letters[3].headers())["dlq_error"].decode()
    for reason in ("not_json", "schema_violation", "poison"):
        assert (
            registry.get_sample_value(
                "seatledger_consumer_dead_lettered_total", {"consumer": "tally", "reason": reason}
            )
            == 1
        )
    assert (
        registry.get_sample_value(
            "seatledger_consumer_position", {"consumer": "tally", "source": f"{topic}:0"}
        )
        == 7
    )

    # Another member (a restart, another group id even) starts after the stored position:
    # nothing is processed or dead-lettered twice.
    again = TrackedConsumer(
        kafka_bootstrap,
        f"{group_id}-restarted",
        [topic],
        _tally_handler(sink, processed),
        sink.position,
        on_skipped=sink.save_tracked,
        dead_letter_topic_of=lambda _: dlq,
    )
    try:
        _run_until(consumer=again, done=lambda: bool(again.assignment))
        for _ in range(10):
            again.poll_once(0.2)
    finally:
        again.close()
    assert processed == [good_first.id, good_last.id]
    assert len(read_all(kafka_bootstrap, dlq, 6, idle_s=1.0)) == 6


def test_a_failing_database_in_the_handler_is_retried_not_dead_lettered(
    postgres_url: str, kafka_bootstrap: str, new_topic, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic("consume-outage", partitions=2)
    dlq = new_topic("consume-outage-dlq", partitions=1)
    sink = tally_app(postgres_url, tmp_path)
    processed: list[str] = []
    registry = CollectorRegistry()
    consumer = TrackedConsumer(
        kafka_bootstrap,
        group_id,
        [topic],
        _tally_handler(sink, processed),
        sink.position,
        on_skipped=sink.save_tracked,
        dead_letter_topic_of=lambda _: dlq,
        registry=registry,
        name="tally",
        retry=RetryPolicy(initial_s=0.05, max_s=0.5),
    )
    clouds = [str(uuid.uuid4()) for _ in range(4)]
    events = [_event(c, n) for n in (1, 2) for c in clouds]
    try:
        _run_until(consumer, lambda: len(consumer.assignment) == 2)
        # The database refuses the consumer's writes for a while (a real error of the
        # database, not of the message).
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("REVOKE INSERT ON tally.tally_events FROM CURRENT_USER")
            try:
                _produce(kafka_bootstrap, topic, [(e.subject, e.to_json_bytes()) for e in events])
                deadline = time.monotonic() + 30
                while (
                    registry.get_sample_value(
                        "seatledger_consumer_transient_errors_total", {"consumer": "tally"}
                    )
                    or 0
                ) < 3:
                    assert time.monotonic() < deadline
                    consumer.poll_once(0.1)
                assert processed == []
            finally:
                admin.execute("GRANT INSERT ON tally.tally_events TO CURRENT_USER")
        _run_until(consumer, lambda: len(processed) == len(events), timeout_s=60)
    finally:
        consumer.close()

    assert sorted(processed) == sorted(e.id for e in events)
    for cloud in clouds:
        assert sink.seen(cloud) == [e.id for e in events if e.subject == cloud]
    assert read_all(kafka_bootstrap, dlq, 0, timeout_s=2, idle_s=1.0) == []


def test_two_members_of_a_group_split_the_partitions_and_process_each_event_once(
    postgres_url: str, kafka_bootstrap: str, new_topic, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic("consume-group", partitions=6)
    source = desk_app(postgres_url, tmp_path)
    desks = [Desk(1000) for _ in range(24)]
    source.save(*desks)
    assign_many(source, desks, 5)
    relay = OutboxRelay(source, topic, to_cloud_event, producer_config(kafka_bootstrap, "relay"))
    relay.publish_pending()

    processed: list[str] = []
    members: list[TrackedConsumer] = []
    sinks: list[TallyApp] = []
    stops = [threading.Event(), threading.Event()]
    threads = []
    for index in range(2):
        sink = tally_app(postgres_url, tmp_path)  # one store, two processes' worth of clients
        sinks.append(sink)
        member = TrackedConsumer(
            kafka_bootstrap,
            group_id,
            [topic],
            _tally_handler(sink, processed),
            sink.position,
            on_skipped=sink.save_tracked,
            name=f"member-{index}",
        )
        members.append(member)
        thread = threading.Thread(target=member.run, args=(stops[index],))
        thread.start()
        threads.append(thread)
    try:
        everything = {(topic, p) for p in range(6)}

        def split() -> bool:
            first, second = (set(m.assignment) for m in members)
            return (
                bool(first)
                and bool(second)
                and first.isdisjoint(second)
                and (first | second == everything)
            )

        deadline = time.monotonic() + 60
        while len(processed) < 24 * 5 or not split():
            assert time.monotonic() < deadline, (len(processed), [m.assignment for m in members])
            time.sleep(0.05)

        # One member leaves; the other takes over its partitions from the stored positions.
        stops[1].set()
        threads[1].join(30)
        assign_many(source, desks, 3)
        relay.publish_pending()
        deadline = time.monotonic() + 60
        while len(processed) < 24 * 8:
            assert time.monotonic() < deadline, len(processed)
            time.sleep(0.05)
        assert set(members[0].assignment) == everything
        time.sleep(1.0)  # anything processed twice would show now
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(30)
        relay.close()

    assert len(processed) == len(set(processed)) == 24 * 8
    published: dict[str, list[str]] = {}
    for notification in source.recorder.select_notifications(start=None, limit=10_000):
        cloud_event: Any = to_cloud_event(source.mapper.to_domain_event(notification))
        if cloud_event is not None:
            published.setdefault(cloud_event.subject, []).append(cloud_event.id)
    for cloud, ids in published.items():
        assert sinks[0].seen(cloud) == ids  # once each, in the cloud's order


def test_a_message_that_keeps_failing_holds_back_only_its_own_partition(
    postgres_url: str, kafka_bootstrap: str, new_topic, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic("consume-hold", partitions=2)
    stuck, free = str(uuid.uuid4()), str(uuid.uuid4())
    stuck_events = [_event(stuck, n) for n in (1, 2, 3)]
    free_events = [_event(free, n) for n in (1, 2, 3)]
    producer = Producer(producer_config(kafka_bootstrap, "test-producer"))
    for partition, events in ((0, stuck_events), (1, free_events)):
        for event in events:
            producer.produce(
                topic, key=event.subject, value=event.to_json_bytes(), partition=partition
            )
    assert producer.flush(30) == 0
    sink = tally_app(postgres_url, tmp_path)
    order: list[str] = []
    failures = {"left": 5}

    def handle(cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        if cloud_event.subject == stuck and failures["left"]:
            failures["left"] -= 1
            raise OSError("briefly unavailable")
        if sink.record(cloud_event, position):
            order.append(cloud_event.id)

    consumer = TrackedConsumer(
        kafka_bootstrap,
        group_id,
        [topic],
        handle,
        sink.position,
        on_skipped=sink.save_tracked,
        retry=RetryPolicy(initial_s=0.3, max_s=0.3),
    )
    try:
        _run_until(consumer, lambda: len(order) == 6)
    finally:
        consumer.close()

    assert failures["left"] == 0
    assert order[:3] == [e.id for e in free_events]  # not held back by the other partition
    assert order[3:] == [e.id for e in stuck_events]  # in order, each once
    assert sink.seen(stuck) == [e.id for e in stuck_events]


def test_a_message_failing_for_its_own_reason_is_dead_lettered_after_its_attempts(
    postgres_url: str, kafka_bootstrap: str, new_topic, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic("consume-bounded", partitions=1)
    dlq = new_topic("consume-bounded-dlq", partitions=1)
    cloud = str(uuid.uuid4())
    first, broken, last = _event(cloud, 1), _event(cloud, 2, "bug-me"), _event(cloud, 2)
    _produce(kafka_bootstrap, topic, [(cloud, e.to_json_bytes()) for e in (first, broken, last)])
    sink = tally_app(postgres_url, tmp_path)
    processed: list[str] = []
    attempts: list[int] = []
    tally = _tally_handler(sink, processed)

    def handle(cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        if isinstance(data, LicenseAssigned) and data.user_id == "bug-me":
            attempts.append(position.offset)
            raise ValueError("year 10000 is out of range")  # the same on every attempt
        tally(cloud_event, data, position)

    registry = CollectorRegistry()
    retry = RetryPolicy(initial_s=0.2, max_s=0.2, max_attempts=4, stuck_after_s=0.3)
    consumer = TrackedConsumer(
        kafka_bootstrap,
        group_id,
        [topic],
        handle,
        sink.position,
        on_skipped=sink.save_tracked,
        dead_letter_topic_of=lambda _: dlq,
        registry=registry,
        name="tally",
        retry=retry,
    )
    stuck_seen = False
    try:
        deadline = time.monotonic() + 60
        while len(processed) < 2:
            assert time.monotonic() < deadline, "timed out"
            consumer.poll_once(0.1)
            stuck_seen = stuck_seen or consumer.stuck
        assert not consumer.stuck
    finally:
        consumer.close()

    assert stuck_seen  # failing for longer than 0.3 s: reported stuck meanwhile
    assert attempts == [1] * retry.max_attempts
    assert processed == [first.id, last.id]
    assert sink.position(f"{topic}:0") == 2
    (letter,) = read_all(kafka_bootstrap, dlq, 1, idle_s=0.5)
    headers = {k: v.decode() for k, v in letter.headers()}
    assert headers["dlq_reason"] == "attempts_exhausted"
    assert headers["dlq_source_offset"] == "1"
    assert "year 10000 is out of range" in headers["dlq_error"]
    assert letter.value() == broken.to_json_bytes()
    dead = registry.get_sample_value(
        "seatledger_consumer_dead_lettered_total",
        {"consumer": "tally", "reason": "attempts_exhausted"},
    )
    assert dead == 1
    assert registry.get_sample_value("seatledger_consumer_stuck", {"consumer": "tally"}) == 0
