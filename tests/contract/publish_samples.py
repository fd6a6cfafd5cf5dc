"""Publish one sample of every event type through the real outbox relay (run as a process):

    python -m tests.contract.publish_samples DATABASE_URL TOPIC BOOTSTRAP DATA_DIR

Each sample is stored as an event of an ``Outbox`` aggregate in a PostgreSQL event store, then
the relay reads the notification log and publishes to TOPIC exactly as a service's relay does.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from schemas.envelope import CloudEvent
from schemas.registry import model_for
from seatledger.kafka import producer_config
from seatledger.persistence import application_env, ensure_postgres_schema
from seatledger.relay import OutboxRelay
from tests.contract.samples import SAMPLES


class Outbox(Aggregate):
    @event("Opened")
    def __init__(self) -> None:
        pass

    @event("Recorded")
    def record(self, event_type: str, data: dict[str, Any]) -> None:
        pass


class OutboxApp(Application[UUID]):
    name = "samples"


def to_cloud_event(domain_event: Any) -> CloudEvent | None:
    if not isinstance(domain_event, Outbox.Recorded):  # type: ignore[attr-defined]
        return None
    data = model_for(domain_event.event_type).model_validate(domain_event.data)
    return CloudEvent.of(
        data,
        id=str(uuid.uuid5(domain_event.originator_id, str(domain_event.originator_version))),
        subject=str(data.cloud_id),  # type: ignore[attr-defined]
        time=domain_event.timestamp,
    )


def main() -> None:
    database_url, topic, bootstrap, data_dir = sys.argv[1:5]
    env = application_env(database_url, "samples", Path(data_dir))
    ensure_postgres_schema(env)
    app = OutboxApp(env=env)
    outbox = Outbox()
    for event_type, data in SAMPLES.items():
        outbox.record(event_type, data)
    app.save(outbox)
    relay = OutboxRelay(app, topic, to_cloud_event, producer_config(bootstrap, "samples"))
    relay.publish_pending()
    relay.close()
    print(len(SAMPLES))


if __name__ == "__main__":
    main()
