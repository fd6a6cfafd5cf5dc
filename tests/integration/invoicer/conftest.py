"""Fixtures of the invoicer's integration tests: a namespace of real topics on the running
broker (the deployment's topic names behind a unique prefix), a fresh PostgreSQL database,
settings pointing at both, and a producer of ledger events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.envelope import CloudEvent
from seatledger.config import Settings, load_settings
from seatledger.kafka import (
    INVOICES_TOPIC,
    LEDGER_TOPIC,
    TopicSpec,
    dead_letter_topic,
    ensure_topics,
    producer_config,
)


@dataclass
class Topics:
    prefix: str
    ledger: str
    ledger_dlq: str
    invoices: str


@pytest.fixture
def topics(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[Topics]:
    """The ledger topic (partitions from ``@pytest.mark.parametrize``-free marker
    ``ledger_partitions``, default 1), its dead-letter topic and the invoices topic."""
    marker = request.node.get_closest_marker("ledger_partitions")
    partitions = marker.args[0] if marker else 1
    prefix = f"it{uuid.uuid4().hex[:10]}."
    names = Topics(
        prefix=prefix,
        ledger=f"{prefix}{LEDGER_TOPIC}",
        ledger_dlq=dead_letter_topic(f"{prefix}{LEDGER_TOPIC}"),
        invoices=f"{prefix}{INVOICES_TOPIC}",
    )
    ensure_topics(
        kafka_bootstrap,
        [
            TopicSpec(names.ledger, partitions),
            TopicSpec(names.ledger_dlq, 1),
            TopicSpec(names.invoices, 1),
        ],
    )
    yield names
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics(
        [names.ledger, names.ledger_dlq, names.invoices], operation_timeout=30
    ).values():
        future.result()


@pytest.fixture
def settings(postgres_url: str, kafka_bootstrap: str, topics: Topics, tmp_path) -> Settings:
    return load_settings(
        database_url=postgres_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=topics.prefix,
        data_dir=tmp_path,
        jwt_secret="integration-test-secret-0123456789abcdef",
    )


@pytest.fixture
def publish(kafka_bootstrap: str) -> Callable[..., None]:
    """Publish ledger CloudEvents (or raw values) to a topic, keyed by cloud id, and wait for
    the broker's acknowledgement."""

    def send(topic: str, events: list[CloudEvent | tuple[bytes, bytes]]) -> None:
        producer = Producer(producer_config(kafka_bootstrap, "invoicer-tests"))
        errors: list[object] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(err)

        for event in events:
            if isinstance(event, CloudEvent):
                producer.produce(
                    topic,
                    key=event.subject.encode(),
                    value=event.to_json_bytes(),
                    headers=[("ce_id", event.id)],
                    on_delivery=on_delivery,
                )
            else:
                key, value = event
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        assert producer.flush(30) == 0
        assert not errors, errors

    return send


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., list]:
    """Every message of a topic (all partitions, from the beginning), waiting for ``count``."""

    def read(topic: str, count: int, timeout_s: float = 30.0) -> list:
        import time

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            consumer.assign(
                [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
            )
            messages = []
            deadline = time.monotonic() + timeout_s
            while len(messages) < count and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    messages.append(msg)
            return messages
        finally:
            consumer.close()

    return read


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ledger_partitions(n): partitions of the ledger topic")
