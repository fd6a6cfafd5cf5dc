"""A cloud's history and its state at a past instant.

``history`` reads the cloud's stored events as they are (no services' code needed).
``state_as_of`` answers exactly as the ledger API's ``GET /v1/clouds/{id}?as_of=...``: it asks
the ledger application itself (``Ledger.cloud_as_of``: the last version recorded at or before
the instant, rebuilt with ``repository.get(id, version=n)``) and renders it with the API's own
view, so the two cannot disagree.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from seatledger.audit.records import EventRecord, to_record
from seatledger.audit.store import EventStore


class CloudNotFound(LookupError):
    """No cloud with this id (at that instant)."""


def cloud_history(ledger: EventStore, cloud_id: str) -> list[EventRecord]:
    records = [to_record(row) for row in ledger.events_of(cloud_id)]
    if not records:
        raise CloudNotFound(f"the ledger holds no cloud {cloud_id}")
    return records


def end_of_local_day(day: date, time_zone: str) -> datetime:
    """The last instant of ``day`` in the contract's zone (a date means "as of that day's end",
    everything recorded that local day included)."""
    zone = ZoneInfo(time_zone)
    return datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(microseconds=1)


def contract_time_zone(ledger: EventStore, cloud_id: str) -> str:
    first = cloud_history(ledger, cloud_id)[0]
    terms = first.data.get("terms")
    if isinstance(terms, dict) and isinstance(terms.get("time_zone"), str):
        return str(terms["time_zone"])
    return "UTC"


def state_as_of(ledger_env: dict[str, str], cloud_id: str, as_of: datetime) -> dict[str, Any]:
    """The cloud as the API shows it for ``as_of``; :class:`CloudNotFound` before it existed."""
    from services.ledger.api import cloud_view
    from services.ledger.application import Ledger

    try:
        identifier = UUID(cloud_id)
    except ValueError as exc:
        raise CloudNotFound(f"{cloud_id!r} is not a cloud id") from exc
    # Read only: never create tables in the service's store.
    app = Ledger(env={**ledger_env, "CREATE_TABLE": "n"})
    try:
        cloud = app.cloud_as_of(identifier, as_of)
    finally:
        close = getattr(app, "close", None)
        if close is not None:
            close()
    if cloud is None:
        raise CloudNotFound(f"cloud {cloud_id} did not exist at {as_of.isoformat()}")
    return cloud_view(cloud, as_of=as_of)
