"""A small event-sourced application and its contract mapping, standing in for a service's
domain in the relay and consumer tests: each ``Desk`` is a cloud whose licenses are assigned
one by one, mapped onto the ledger's ``LicenseAssigned`` contract event."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event

from schemas.envelope import CloudEvent
from schemas.ledger import Actor, LicenseAssigned
from seatledger.kafka import consumer_config
from seatledger.persistence import application_env, ensure_postgres_schema
from seatledger.relay import ContractMapper, EnvelopeParts
from seatledger.tracking import Position, TrackedApplication


class Desk(Aggregate):
    """A cloud with a count of assigned licenses."""

    @event("Opened")
    def __init__(self, seats: int) -> None:
        self.seats = seats
        self.assigned = 0

    @event("Assigned")
    def assign(self, user_id: str) -> None:
        self.assigned += 1

    @event("Noted")
    def note(self, text: str) -> None:
        """An internal event that is not published."""


class DeskApp(Application[UUID]):
    name = "desks"

    def open_many(self, clouds: int, seats: int = 1000) -> list[UUID]:
        desks = [Desk(seats) for _ in range(clouds)]
        self.save(*desks)
        return [d.id for d in desks]

    def assign_round(self, ids: Iterable[UUID], round_no: int) -> None:
        """One more license on every desk, all in one transaction."""
        desks = [self.repository.get(i) for i in ids]
        for desk in desks:
            desk.assign(f"user-{round_no}")
        self.save(*desks)


def envelope_parts(domain_event: Any) -> EnvelopeParts | None:
    """Assigned -> LicenseAssigned; every other event is internal."""
    if not isinstance(domain_event, Desk.Assigned):  # type: ignore[attr-defined]
        return None
    data = LicenseAssigned(
        cloud_id=domain_event.originator_id,
        occurred_at=domain_event.timestamp,
        actor=Actor(kind="system", id="test"),
        user_id=domain_event.user_id,
        rights_group="employee",
        licenses_assigned=domain_event.originator_version - 1,
        seats=1000,
    )
    return (
        data,
        str(uuid.uuid5(domain_event.originator_id, str(domain_event.originator_version))),
        str(domain_event.originator_id),
        domain_event.timestamp,
    )


def to_cloud_event(domain_event: Any) -> CloudEvent | None:
    """The plain mapper: ``CloudEvent.of`` of the envelope parts."""
    parts = envelope_parts(domain_event)
    if parts is None:
        return None
    data, event_id, subject, at = parts
    return CloudEvent.of(data, id=event_id, subject=subject, time=at)


#: The same mapping as a :class:`ContractMapper` (the relay builds the message bytes itself).
contract_mapper = ContractMapper(envelope_parts)


def desk_app(database_url: str, tmp_path: Any = None) -> DeskApp:
    from pathlib import Path

    env = application_env(database_url, "desks", Path(str(tmp_path or "var")))
    ensure_postgres_schema(env)
    return DeskApp(env=env)


def read_all(
    bootstrap: str, topic: str, count: int, timeout_s: float = 60.0, idle_s: float = 0.0
) -> list[Any]:
    """Read at least ``count`` messages of ``topic`` from the beginning (then ``idle_s`` more)."""
    consumer = Consumer(consumer_config(bootstrap, f"reader-{uuid.uuid4().hex[:8]}", "test-reader"))
    consumer.subscribe([topic])
    seen: list[Any] = []
    deadline = time.monotonic() + timeout_s
    idle_deadline: float | None = None
    try:
        while time.monotonic() < deadline:
            if len(seen) >= count:
                if idle_deadline is None:
                    idle_deadline = time.monotonic() + idle_s
                if time.monotonic() >= idle_deadline:
                    break
            batch = consumer.consume(1000, 0.2)
            for msg in batch:
                assert msg.error() is None, msg.error()
                seen.append(msg)
    finally:
        consumer.close()
    return seen


def value_of(msg: Any) -> dict[str, Any]:
    return json.loads(msg.value())


def utcnow() -> datetime:
    return datetime.now(UTC)


def assign_many(app: DeskApp, desks: list[Desk], per_desk: int) -> None:
    """``per_desk`` more licenses on every desk (kept in memory), all in one transaction."""
    for desk in desks:
        for n in range(per_desk):
            desk.assign(f"user-{desk.assigned + n}")
    app.save(*desks)


# -- a consuming service ------------------------------------------------------------------------

_TALLY_NAMESPACE = uuid.UUID("6f1d8f4e-8f5e-4c55-9c1e-3c0f0b5d9a11")


class Tally(Aggregate):
    """What a consumer saw of one cloud: the event ids, in the order it processed them."""

    @staticmethod
    def create_id(cloud_id: str) -> UUID:
        return uuid.uuid5(_TALLY_NAMESPACE, cloud_id)

    @event("Started")
    def __init__(self, cloud_id: str) -> None:
        self.event_ids: list[str] = []

    @event("Counted")
    def count(self, event_id: str) -> None:
        self.event_ids.append(event_id)


class TallyApp(TrackedApplication):
    """A consumer's own store: one tally per cloud, saved with the message's position."""

    name = "tally"

    def record(self, cloud_event: CloudEvent, position: Position) -> bool:
        tally_id = Tally.create_id(cloud_event.subject)
        try:
            tally: Tally = self.repository.get(tally_id)
        except AggregateNotFoundError:
            tally = Tally(cloud_event.subject)
        tally.count(cloud_event.id)
        return self.save_tracked(position, tally)

    def seen(self, cloud_id: str) -> list[str]:
        try:
            tally: Tally = self.repository.get(Tally.create_id(cloud_id))
        except AggregateNotFoundError:
            return []
        return tally.event_ids


def tally_app(database_url: str, tmp_path: Any = None) -> TallyApp:
    from pathlib import Path

    env = application_env(database_url, "tally", Path(str(tmp_path or "var")))
    ensure_postgres_schema(env)
    return TallyApp(env=env)
