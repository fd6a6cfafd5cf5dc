"""confluent-kafka client settings and topic administration shared by every service."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

#: The topics of the product, one per publishing service.
LEDGER_TOPIC = "seatledger.ledger.v1"
INVOICES_TOPIC = "seatledger.invoices.v1"
NOTIFICATIONS_TOPIC = "seatledger.notifications.v1"
PRODUCT_TOPICS = (LEDGER_TOPIC, INVOICES_TOPIC, NOTIFICATIONS_TOPIC)


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic that receives the poison messages of ``topic``."""
    return f"{topic}.dlq"


def producer_config(bootstrap_servers: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """An idempotent producer: ``acks=all``, retries without duplicates or reordering."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
        "delivery.timeout.ms": 120000,
    }
    config.update(extra)
    return config


def consumer_config(
    bootstrap_servers: str, group_id: str, client_id: str, **extra: Any
) -> dict[str, Any]:
    """A consumer with manual offsets: positions live in the consumer's own database."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    }
    config.update(extra)
    return config


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int = -1


def with_dead_letters(topics: Iterable[str], partitions: int, retention_ms: int) -> list[TopicSpec]:
    """The specs of ``topics`` and of each one's dead-letter topic."""
    specs = []
    for topic in topics:
        specs.append(TopicSpec(topic, partitions, retention_ms))
        specs.append(TopicSpec(dead_letter_topic(topic), partitions, retention_ms))
    return specs


def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], timeout_s: float = 30.0
) -> dict[str, str]:
    """Create the missing topics; return ``{name: "created" | "exists"}``. Idempotent.

    An existing topic keeps its partitions (growing them would re-key clouds mid-stream).
    """
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    specs = list(specs)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    outcome = {spec.name: "exists" for spec in specs if spec.name in existing}
    missing = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=-1,
            config={"retention.ms": str(spec.retention_ms), "cleanup.policy": "delete"},
        )
        for spec in specs
        if spec.name not in existing
    ]
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                outcome[name] = "exists"
    _wait_for_leaders(admin, [spec.name for spec in specs], timeout_s)
    return outcome


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        ready = all(
            name in topics
            and topics[name].error is None
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader after {timeout_s}s: {names}")
        time.sleep(0.1)
