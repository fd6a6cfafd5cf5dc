"""Every published event type, and the parsing of a message into its contract model.

The registry collects every concrete :class:`~schemas._base.EventData` subclass defined in the
contract modules (``schemas.ledger``, ``schemas.invoices``, ``schemas.notifications``): adding
an event model to one of them is all it takes to register it (then run
``python -m schemas.generate`` to write its JSON Schema and the AsyncAPI document).

Parsing raises a precise :class:`ContractViolation`, whose ``reason`` names the failure for
dead-letter headers and metrics: ``not_json``, ``invalid_envelope``, ``unknown_type``,
``unknown_version``, ``schema_violation``.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

from pydantic import ValidationError

from schemas._base import EventData
from schemas.envelope import CloudEvent

#: The modules that hold published event models. A missing module is skipped (an event family
#: that is not defined yet has no events).
CONTRACT_MODULES = ("schemas.ledger", "schemas.invoices", "schemas.notifications")

#: ``seatledger.<service>.<EventName>.v<N>``
EVENT_TYPE_PATTERN = re.compile(
    r"^seatledger\.([a-z][a-z0-9_]*)\.([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)$"
)

#: The topic each publishing service writes to.
SERVICE_TOPICS = {
    "ledger": "seatledger.ledger.v1",
    "invoicer": "seatledger.invoices.v1",
    "notifier": "seatledger.notifications.v1",
}


class ContractViolation(ValueError):
    """A message that does not meet the contract; ``reason`` is a short stable code."""

    reason: ClassVar[str] = "contract_violation"


class NotJson(ContractViolation):
    reason = "not_json"


class InvalidEnvelope(ContractViolation):
    reason = "invalid_envelope"


class UnknownEventType(ContractViolation):
    reason = "unknown_type"


class UnknownEventVersion(ContractViolation):
    reason = "unknown_version"


class SchemaViolation(ContractViolation):
    reason = "schema_violation"


#: Every reason a message can be refused with (bounded: fit for a metric label).
VIOLATION_REASONS = tuple(
    cls.reason
    for cls in (NotJson, InvalidEnvelope, UnknownEventType, UnknownEventVersion, SchemaViolation)
)


@dataclass(frozen=True)
class ParsedEvent:
    """A message that met the contract: its envelope and its validated data."""

    cloud_event: CloudEvent
    data: EventData


def _is_concrete(cls: type[EventData]) -> bool:
    return isinstance(getattr(cls, "event_name", None), str) and isinstance(
        getattr(cls, "source_service", None), str
    )


def _load_contract_modules() -> None:
    for name in CONTRACT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


@cache
def event_models() -> dict[str, type[EventData]]:
    """``{event type: model}`` of every published event, sorted by type."""
    _load_contract_modules()
    found: dict[str, type[EventData]] = {}
    pending: list[type[EventData]] = list(EventData.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__ not in CONTRACT_MODULES or not _is_concrete(cls):
            continue
        event_type = cls.event_type()
        if not EVENT_TYPE_PATTERN.match(event_type):
            raise RuntimeError(f"{cls.__qualname__}: malformed event type {event_type!r}")
        other = found.get(event_type)
        if other is not None and other is not cls:
            raise RuntimeError(
                f"event type {event_type!r} is defined twice: "
                f"{other.__qualname__} and {cls.__qualname__}"
            )
        found[event_type] = cls
    return dict(sorted(found.items()))


def model_for(event_type: str) -> type[EventData]:
    """The model of ``event_type``; :class:`UnknownEventType` or :class:`UnknownEventVersion`
    when there is none."""
    models = event_models()
    model = models.get(event_type)
    if model is not None:
        return model
    match = EVENT_TYPE_PATTERN.match(event_type)
    if match is not None:
        stem = event_type.rsplit(".v", 1)[0] + ".v"
        known = sorted(t for t in models if t.startswith(stem))
        if known:
            raise UnknownEventVersion(
                f"unknown version of {stem[:-2]}: {event_type!r} (known: {', '.join(known)})"
            )
    raise UnknownEventType(f"unknown event type {event_type!r}")


def validate_data(cloud_event: CloudEvent) -> EventData:
    """The validated ``data`` of ``cloud_event``, as its contract model."""
    model = model_for(cloud_event.type)
    try:
        return model.model_validate(cloud_event.data)
    except ValidationError as exc:
        raise SchemaViolation(f"{cloud_event.type}: {_summary(exc)}") from exc


def parse_cloud_event(value: bytes | str | None) -> ParsedEvent:
    """Parse a message value (a structured-mode CloudEvent) into its envelope and data."""
    if value is None:
        raise NotJson("the message has no value")
    try:
        document: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotJson(f"the value is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidEnvelope("the value is not a JSON object")
    try:
        cloud_event = CloudEvent.model_validate(document)
    except ValidationError as exc:
        raise InvalidEnvelope(f"not a CloudEvent: {_summary(exc)}") from exc
    return ParsedEvent(cloud_event, validate_data(cloud_event))


def check_cloud_event(cloud_event: CloudEvent) -> ParsedEvent:
    """Validate an envelope built in-process (e.g. by a mapper) exactly as a reader would."""
    return ParsedEvent(cloud_event, validate_data(cloud_event))


def _summary(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
