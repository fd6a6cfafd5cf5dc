"""Outbox relay throughput and latency, next to a raw confluent-kafka producer.

    .venv/bin/python -m benchmarks.relay [--events 100000] [--clouds 1000] [--rounds 3]

Needs the running PostgreSQL and Kafka (``make up``); creates a database and a topic of its own
and removes both afterwards. Prints:

- events/s from a PostgreSQL store to the broker (read the notification log, map to CloudEvents,
  validate, produce, wait for acks, record the position), median and best of ``--rounds``
  interleaved runs: with the mapping offered as a ``ContractMapper`` (the data serialized once,
  straight into the message), as a plain mapper (``CloudEvent.of`` per event, as the services
  map today), with the events mapped beforehand (the relay's own cost), and a raw producer
  sending the same keys, values and headers;
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
from seatledger.relay import ContractMapper, EnvelopeParts, Mapper, OutboxRelay

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


def envelope_parts(domain_event: Any) -> EnvelopeParts | None:
    """The contract data, event id, subject and time of a domain event (as the ledger's)."""
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
    return (
        data,
        stable_event_id(domain_event.originator_id, str(domain_event.originator_version)),
        str(domain_event.originator_id),
        domain_event.timestamp,
    )


#: The mapping offered to the relay as envelope parts: the data is serialized once.
contract_mapper = ContractMapper(envelope_parts)


def to_cloud_event(domain_event: Any) -> CloudEvent | None:
    """The same mapping as a plain mapper function (``CloudEvent.of`` per event)."""
    parts = envelope_parts(domain_event)
    if parts is None:
        return None
    data, event_id, subject, at = parts
    return CloudEvent.of(data, id=event_id, subject=subject, time=at)


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


def relay_throughput(
    app: SeatsApp, topic: str, mapper: Mapper, name: str, batch_size: int
) -> tuple[float, int]:
    """Seconds one relay takes to publish the whole store from the start, and the number of
    notifications it handled."""
    relay = OutboxRelay(
        app,
        topic,
        mapper,
        producer_config(BOOTSTRAP, f"bench-{name}"),
        batch_size=batch_size,
        name=f"{name}-{uuid.uuid4().hex[:6]}",
    )
    try:
        started = time.perf_counter()
        handled = relay.publish_pending()
        elapsed = time.perf_counter() - started
        assert relay.position == app.recorder.max_notification_id()
    finally:
        relay.close()
    return elapsed, handled


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
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs of each variant")
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
        payloads = raw_payloads(app)
        assert len(payloads) == total
        # The relay's own cost: the same run with the contract events mapped beforehand.
        premapped = premapped_events(app)

        def premapped_mapper(e: Any) -> CloudEvent | None:
            return premapped.get((e.originator_id, e.originator_version))

        runs: dict[str, list[float]] = {"parts": [], "plain": [], "premapped": [], "raw": []}
        handled = 0
        loads = []
        # Rounds interleave the variants, so that other work on the machine hits them alike.
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            took, handled = relay_throughput(
                app, relay_topic, contract_mapper, "relay", args.batch_size
            )
            runs["parts"].append(total / took)
            took, _ = relay_throughput(app, relay_topic, to_cloud_event, "plain", args.batch_size)
            runs["plain"].append(total / took)
            took, _ = relay_throughput(
                app, raw_topic, premapped_mapper, "premapped", args.batch_size
            )
            runs["premapped"].append(total / took)
            runs["raw"].append(raw_throughput(raw_topic, payloads))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"machine: {os.cpu_count()} cores, load average {load} now, 1-min load at each round"
            f" {', '.join(f'{x:.1f}' for x in loads)} (other work shares the cores)"
        )

        def rates(name: str) -> str:
            values = sorted(runs[name])
            return f"median {statistics.median(values):8,.0f}   best {values[-1]:8,.0f} events/s"

        print()
        print(
            f"throughput, {total} events ({handled} notifications), {args.rounds} round(s)"
            " (PostgreSQL store -> broker, acks=all, idempotent)"
        )
        print(f"  relay, ContractMapper       {rates('parts')}   (data serialized once)")
        print(f"  relay, plain mapper         {rates('plain')}   (CloudEvent.of per event)")
        print(f"  relay, premapped            {rates('premapped')}   (mapped beforehand)")
        print(f"  raw producer                {rates('raw')}   (same keys, values, headers)")
        print(f"  target                      {20_000:10,} events/s")

        idle_relay = OutboxRelay(
            app,
            relay_topic,
            contract_mapper,
            producer_config(BOOTSTRAP, "bench-relay-idle"),
            batch_size=args.batch_size,
        )
        idle_relay.publish_pending()  # catch up first: the samples measure an idle relay
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
