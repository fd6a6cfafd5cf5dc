"""The local infrastructure is the real thing: a Kafka broker that keeps idempotent producers'
messages and consumer groups' committed offsets, and a PostgreSQL server behind the
eventsourcing recorder."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from seatledger.kafka import consumer_config, producer_config
from seatledger.persistence import application_env, ensure_postgres_schema

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    producer = Producer(producer_config(bootstrap, "test-producer"))
    acked: list[str] = []
    errors: list[object] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append(msg.value().decode())  # type: ignore[attr-defined]

    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert sorted(acked) == sorted(v for _, v in messages)


def _consume(consumer: Consumer, count: int, timeout_s: float = 30.0) -> list[tuple[str, str]]:
    import time

    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        seen.append((msg.key().decode(), msg.value().decode()))
        consumer.commit(message=msg, asynchronous=False)
    return seen


def test_idempotent_producer_and_consumer_group_with_manual_commits(
    kafka_bootstrap: str, new_topic, group_id: str
) -> None:
    topic = new_topic("infra", partitions=3)
    messages = [(f"cloud-{i % 4}", f"message-{i}") for i in range(40)]
    _produce(kafka_bootstrap, topic, messages)

    consumer = Consumer(consumer_config(kafka_bootstrap, group_id, "test-consumer"))
    try:
        consumer.subscribe([topic])
        first = _consume(consumer, 25)
    finally:
        consumer.close()
    assert len(first) == 25

    # A new member of the same group resumes after the committed offsets: nothing twice.
    consumer = Consumer(consumer_config(kafka_bootstrap, group_id, "test-consumer-2"))
    try:
        consumer.subscribe([topic])
        rest = _consume(consumer, 15)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    finally:
        consumer.close()
    assert sorted(first + rest) == sorted(messages)
    assert sum(tp.offset for tp in committed) == 40

    # Per key, the order of production is kept.
    by_key: dict[str, list[int]] = {}
    for key, value in first + rest:
        by_key.setdefault(key, []).append(int(value.split("-")[1]))
    for key, numbers in by_key.items():
        produced = [int(v.split("-")[1]) for k, v in messages if k == key]
        assert sorted(numbers) == produced


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.name = name
        self.total = Decimal("0")

    @event("Added")
    def add(self, amount: Decimal) -> None:
        self.total += amount


def test_postgres_round_trip_through_the_eventsourcing_recorder(
    postgres_url: str, tmp_path
) -> None:
    env = application_env(postgres_url, "infra", tmp_path)
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    ensure_postgres_schema(env)

    app: Application[uuid.UUID] = Application(env=env)
    counter = Counter("seats")
    counter.add(Decimal("1.10"))
    counter.add(Decimal("2.25"))
    app.save(counter)
    app.close()

    # A second application instance (a new process, as far as the store is concerned).
    again: Application[uuid.UUID] = Application(env=env)
    try:
        loaded = again.repository.get(counter.id)
        assert loaded.total == Decimal("3.35")
        assert loaded.version == 3
        notifications = again.recorder.select_notifications(start=None, limit=10)
        assert [n.topic.split(":")[-1] for n in notifications] == [
            "Counter.Created",
            "Counter.Added",
            "Counter.Added",
        ]
    finally:
        again.close()
