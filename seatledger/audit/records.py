"""Stored events as plain records, without the services' code.

``eventsourcing`` stores an event's state as JSON in which values of registered types are
wrapped as ``{"_type_": name, "_data_": value}`` (UUIDs as hex, decimals and dates as strings,
the services' value objects as dicts). :func:`decode_state` unwraps them into plain JSON
values, so an auditor can read any event of any version, even one whose class no longer
exists in the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from seatledger.audit.store import StoredRow

#: Fields of every stored event that the record carries separately.
_ENVELOPE_FIELDS = ("originator_id", "originator_version", "timestamp")


class UndecodableEvent(ValueError):
    """The stored state is not JSON (compressed or encrypted stores are not supported)."""


def _unwrap(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
        data = obj["_data_"]
        if obj["_type_"] == "uuid_hex" and isinstance(data, str):
            return str(UUID(data))
        return data
    return obj


_DECODER = json.JSONDecoder(object_hook=_unwrap)


def decode_state(state: bytes) -> dict[str, Any]:
    try:
        value = _DECODER.decode(state.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UndecodableEvent(f"stored state is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UndecodableEvent("stored state is not a JSON object")
    return value


def event_name(topic: str) -> str:
    """``services.ledger.domain:Cloud.SeatsIncreased`` -> ``SeatsIncreased``."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


@dataclass(frozen=True)
class EventRecord:
    """One stored event, decoded."""

    notification_id: int
    aggregate_id: str
    version: int
    type: str
    topic: str
    timestamp: datetime
    data: dict[str, Any]

    @property
    def actor(self) -> str:
        actor = self.data.get("actor")
        if isinstance(actor, dict):
            return f"{actor.get('kind', '?')}:{actor.get('id', '?')}"
        return "" if actor is None else str(actor)

    def to_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "type": self.type,
            "time": self.timestamp.isoformat(),
            "actor": self.actor,
            "data": self.data,
        }


def to_record(row: StoredRow) -> EventRecord:
    state = decode_state(row.state)
    stamp = state.get("timestamp")
    try:
        timestamp = datetime.fromisoformat(str(stamp))
    except ValueError as exc:
        raise UndecodableEvent(
            f"event {row.notification_id} has no readable timestamp ({stamp!r})"
        ) from exc
    data = {k: v for k, v in state.items() if k not in _ENVELOPE_FIELDS}
    return EventRecord(
        notification_id=row.notification_id,
        aggregate_id=row.originator_id,
        version=row.originator_version,
        type=event_name(row.topic),
        topic=row.topic,
        timestamp=timestamp,
        data=data,
    )


def dumps(value: Any) -> str:
    """Compact JSON with sorted keys (one line of a JSON Lines file)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
