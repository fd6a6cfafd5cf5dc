"""Outbox relay throughput and latency, next to a raw confluent-kafka producer.

    .venv/bin/python -m benchmarks.relay [--events 100000] [--clouds 1000]

Needs the running PostgreSQL and Kafka (``make up``); creates a database and a topic of its own
and removes both afterwards. Prints:

- events/s from a PostgreSQL store to the broker (read the notification log, map to CloudEvents,
  validate, produce, wait for acks, record the position), and a raw producer sending the same
  keys, values and headers;
- commit-to-ack latency when idle: from ``save()`` returning to the relay having the event
  acknowledged and its position recorded (LISTEN/NOTIFY wake-up), and a raw producer's
  produce-to-ack for one message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

from schemas.envelope import CONTENT_TYPE, CloudEvent, stable_event_id
from schemas.ledger import Actor, LicenseAssigned
from seatledger.kafka import TopicSpec, ensure_topics, producer_config
from seatledger.persistence import application_env, ensure_postgres_schema
from seatledger.relay import OutboxRelay

DATABASE_URL = os.environ.get(
    "SEATLEDGER_TEST_DATABASE_URL", "postgresql://seatledger:seatledger@127.0.0.1:5432/seatledger"
)
BOOTSTRAP = os.environ.get("SEATLEDGER_TEST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SYSTEM = Actor(kind="system", id="benchmark")


class Seats(Aggregate):
    @event("Opened")
    def __init__(self) -> None:
        self.assigned = 0

    @event("Assigned")
    def assign(self, user_id: str) -> None:
        self.assigned += 1


class SeatsApp(Application[uuid.UUID]):
    name = "bench"


def to_cloud_event(domain_event: Any) -> CloudEvent | None:
    if not isinstance(domain_event, Seats.Assigned):  # type: ignore[attr-defined]
        return None
    data = LicenseAssigned(
        cloud_id=domain_event.originator_id,
        occurred_at=domain_event.timestamp,
        actor=SYSTEM,
        user_id=domain_event.user_id,
        rights_group="employee",
        licenses_assigned=domain_event.originator_version - 1,
        seats=10_000,
    )
    return CloudEvent.of(
        data,
        id=stable_event_id(domain_event.originator_id, str(domain_event.originator_version)),
        subject=str(domain_event.originator_id),
        time=domain_event.timestamp,
    )


def fill(app: SeatsApp, clouds: int, per_cloud: int) -> list[Seats]:
    aggregates = [Seats() for _ in range(clouds)]
    app.save(*aggregates)
    step = 10
    for start in range(0, per_cloud, step):
        for aggregate in aggregates:
            for n in range(start, min(per_cloud, start + step)):
                aggregate.assign(f"user-{n}")
        app.save(*aggregates)
    return aggregates


def raw_payloads(app: SeatsApp) -> list[tuple[bytes, bytes, list[tuple[str, str]]]]:
    payloads = []
    for notification in app.recorder.select_notifications(start=None, limit=10_000_000):
        cloud_event = to_cloud_event(app.mapper.to_domain_event(notification))
        if cloud_event is not None:
            payloads.append(
                (
                    cloud_event.subject.encode(),
                    cloud_event.to_json_bytes(),
                    [
                        ("ce_id", cloud_event.id),
                        ("ce_type", cloud_event.type),
                        ("content-type", CONTENT_TYPE),
                    ],
                )
            )
    return payloads


def premapped_events(app: SeatsApp) -> dict[tuple[Any, int], CloudEvent]:
    events = {}
    for notification in app.recorder.select_notifications(start=None, limit=10_000_000):
        cloud_event = to_cloud_event(app.mapper.to_domain_event(notification))
        if cloud_event is not None:
            events[(notification.originator_id, notification.originator_version)] = cloud_event
    return events


def raw_throughput(topic: str, payloads: list[Any]) -> float:
    producer = Producer(producer_config(BOOTSTRAP, "bench-raw"))
    started = time.perf_counter()
    for key, value, headers in payloads:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    return len(payloads) / (time.perf_counter() - started)


def _setter(flag: threading.Event) -> Any:
    return lambda _err, _msg: flag.set()


def raw_latency(topic: str, payload: Any, samples: int) -> list[float]:
    producer = Producer(producer_config(BOOTSTRAP, "bench-raw-latency"))
    producer.produce(topic, value=payload[1], key=payload[0])
    producer.flush(10)
    latencies = []
    for _ in range(samples):
        acked = threading.Event()
        started = time.perf_counter()
        producer.produce(topic, value=payload[1], key=payload[0], on_delivery=_setter(acked))
        while not acked.is_set():
            producer.poll(0.0005)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    return latencies


def relay_latency(app: SeatsApp, relay: OutboxRelay, aggregate: Seats, samples: int) -> list[float]:
    stop = threading.Event()
    runner = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    runner.start()
    try:
        time.sleep(0.5)
        latencies = []
        for n in range(samples):
            aggregate.assign(f"late-{n}")
            app.save(aggregate)
            committed = time.perf_counter()
            head = app.recorder.max_notification_id()
            while (relay.position or 0) < (head or 0):
                time.sleep(0.0002)
            latencies.append(time.perf_counter() - committed)
            time.sleep(0.05)  # idle again
        return latencies
    finally:
        stop.set()
        runner.join(10)


def describe(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"p50 {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clouds", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    per_cloud = max(1, args.events // args.clouds)

    name = f"sl_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(DATABASE_URL)._replace(path=f"/{name}"))
    relay_topic = f"bench.relay.{uuid.uuid4().hex[:8]}"
    raw_topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(BOOTSTRAP, [TopicSpec(relay_topic, 6), TopicSpec(raw_topic, 6)])
    app: SeatsApp | None = None
    try:
        env = application_env(url, "bench", Path("var"))
        ensure_postgres_schema(env)
        app = SeatsApp(env=env)
        started = time.perf_counter()
        aggregates = fill(app, args.clouds, per_cloud)
        total = args.clouds * per_cloud
        took = time.perf_counter() - started
        print(f"stored {total} events on {args.clouds} clouds in {took:.1f} s")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} cores, load average {load} (other work shares them)")

        relay = OutboxRelay(
            app,
            relay_topic,
            to_cloud_event,
            producer_config(BOOTSTRAP, "bench-relay"),
            batch_size=args.batch_size,
        )
        started = time.perf_counter()
        handled = relay.publish_pending()
        elapsed = time.perf_counter() - started
        assert relay.position == app.recorder.max_notification_id()
        relay_rate = total / elapsed
        payloads = raw_payloads(app)
        assert len(payloads) == total
        raw_rate = raw_throughput(raw_topic, payloads)

        # The relay's own cost: the same run with the contract events mapped beforehand.
        premapped = premapped_events(app)
        bare = OutboxRelay(
            app,
            raw_topic,
            lambda e: premapped.get((e.originator_id, e.originator_version)),
            producer_config(BOOTSTRAP, "bench-relay-premapped"),
            batch_size=args.batch_size,
            name="premapped",
        )
        started = time.perf_counter()
        bare.publish_pending()
        bare_rate = total / (time.perf_counter() - started)
        bare.close()

        print()
        print(f"throughput, {total} events (PostgreSQL store -> broker, acks=all, idempotent)")
        print(
            f"  relay          {relay_rate:10,.0f} events/s"
            f"   ({handled} notifications in {elapsed:.2f} s)"
        )
        print(f"  relay premapped {bare_rate:9,.0f} events/s   (contract events mapped beforehand)")
        print(f"  raw producer   {raw_rate:10,.0f} events/s   (same keys, values, headers)")
        print(f"  target         {20_000:10,} events/s")

        idle_relay = OutboxRelay(
            app,
            relay_topic,
            to_cloud_event,
            producer_config(BOOTSTRAP, "bench-relay-idle"),
            batch_size=args.batch_size,
        )
        relay_lat = relay_latency(app, idle_relay, aggregates[0], args.samples)
        raw_lat = raw_latency(raw_topic, payloads[0], args.samples)
        print()
        print(f"latency when idle, {args.samples} samples")
        print(f"  relay commit -> ack + position   {describe(relay_lat)}")
        print(f"  raw producer produce -> ack      {describe(raw_lat)}")
        print("  target                           < 50 ms")
    finally:
        if app is not None:
            app.close()
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for future in admin.delete_topics([relay_topic, raw_topic], operation_timeout=30).values():
            future.result()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
