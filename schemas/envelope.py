"""The CloudEvents 1.0 envelope, structured JSON mode (``application/cloudevents+json``).

Every message on our topics is one such JSON object. Its ``id`` is the event's stable UUID (a
re-publication carries the same id), ``subject`` is the cloud id, which is also the Kafka key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field
from pydantic_core import to_json

from schemas._base import ContractModel, EventData, Timestamp

CONTENT_TYPE = "application/cloudevents+json"
SCHEMA_BASE_URI = "https://seatledger.dev/schemas/"

#: Kafka headers of every published message (the value is the whole CloudEvent; the headers
#: let a router or an operator see what a message is without parsing it).
EVENT_ID_HEADER = "ce_id"
EVENT_TYPE_HEADER = "ce_type"
CONTENT_TYPE_HEADER = "content-type"

#: Kafka headers a dead-lettered message gains (besides its original key, value and headers).
DLQ_REASON_HEADER = "dlq_reason"
DLQ_ERROR_HEADER = "dlq_error"
DLQ_SOURCE_TOPIC_HEADER = "dlq_source_topic"
DLQ_SOURCE_PARTITION_HEADER = "dlq_source_partition"
DLQ_SOURCE_OFFSET_HEADER = "dlq_source_offset"
DLQ_CONSUMER_GROUP_HEADER = "dlq_consumer_group"


class CloudEvent(ContractModel):
    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, description="the event's stable UUID")
    source: str = Field(min_length=1, description="/seatledger/ledger, /seatledger/invoicer, ...")
    type: str = Field(min_length=1, description="seatledger.<service>.<EventName>.v<N>")
    subject: str = Field(description="the cloud id")
    time: Timestamp
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    data: dict[str, Any]

    @classmethod
    def of(cls, data: EventData, *, id: str, subject: str, time: datetime) -> CloudEvent:
        """The envelope of ``data``: its type, source and dataschema follow from its model.

        Validated like any other construction (every publishing service builds one per event,
        so the model's constants are worked out once per model and the validator is called
        directly: about half the cost of ``cls(...)`` with ``data.model_dump(mode="json")``).
        """
        model = type(data)
        constants = _CONSTANTS.get(model)
        if constants is None:
            constants = _CONSTANTS[model] = _envelope_constants(model)
        event_type, source, dataschema = constants
        envelope: CloudEvent = cls.__pydantic_validator__.validate_python(
            {
                "id": id,
                "source": source,
                "type": event_type,
                "subject": subject,
                "time": time,
                "dataschema": dataschema,
                "data": model.__pydantic_serializer__.to_python(data, mode="json"),
            }
        )
        return envelope

    def to_json_bytes(self) -> bytes:
        """The message value: the structured-mode JSON of the whole event."""
        return self.__pydantic_serializer__.to_json(self)


#: ``{event model: (type, source, dataschema)}``, filled as models are first published.
_CONSTANTS: dict[type[EventData], tuple[str, str, str]] = {}


def _envelope_constants(model: type[EventData]) -> tuple[str, str, str]:
    event_type = model.event_type()
    return event_type, source_of(model.source_service), dataschema_uri(event_type)


#: What a published event's envelope is made of: its data, id, subject (the cloud id) and time.
EnvelopeParts = tuple[EventData, str, str, datetime]


class ContractMapper:
    """A mapper (``domain_event -> CloudEvent | None``) built from
    ``parts(domain_event) -> EnvelopeParts | None``.

    Called, it returns ``CloudEvent.of(data, id=..., subject=..., time=...)`` like any mapper.
    The outbox relay recognizes it and asks for the parts instead, to build the message bytes
    with :func:`envelope_json` (the same bytes, the data serialized once). It imports no I/O:
    a service's contract module can build its mapper with it.
    """

    def __init__(self, parts: Callable[[Any], EnvelopeParts | None]) -> None:
        self.parts = parts

    def __call__(self, domain_event: Any) -> CloudEvent | None:
        parts = self.parts(domain_event)
        if parts is None:
            return None
        data, event_id, subject, time = parts
        return CloudEvent.of(data, id=event_id, subject=subject, time=time)


#: ``{event model: (the envelope's bytes around id, subject, time and data; its serializer)}``
_SPLICES: dict[type[EventData], tuple[bytes, bytes, bytes, bytes, Any]] = {}


def _splice_parts(model: type[EventData]) -> tuple[bytes, bytes, bytes, bytes, Any]:
    event_type, source, dataschema = _envelope_constants(model)
    return (
        b'{"specversion":"1.0","id":',
        b',"source":' + to_json(source) + b',"type":' + to_json(event_type) + b',"subject":',
        b',"time":',
        b',"datacontenttype":"application/json","dataschema":' + to_json(dataschema) + b',"data":',
        model.__pydantic_serializer__,
    )


def envelope_json(data: EventData, *, id: str, subject: str, time: datetime) -> bytes:
    """``CloudEvent.of(data, id=id, subject=subject, time=time).to_json_bytes()``, byte for
    byte, without building the envelope: the data model is serialized once, straight into the
    envelope's JSON (instead of dumped to a dict, validated in the envelope, then serialized).

    The same checks apply: anything but a non-empty ``id`` string, a ``subject`` string and a
    ``time`` with a UTC offset goes through :meth:`CloudEvent.of`, which refuses what is invalid.
    """
    model = type(data)
    parts = _SPLICES.get(model)
    if parts is None:
        parts = _SPLICES[model] = _splice_parts(model)
    if (
        type(id) is not str
        or not id
        or type(subject) is not str
        or type(time) is not datetime
        or time.utcoffset() is None
    ):
        return CloudEvent.of(data, id=id, subject=subject, time=time).to_json_bytes()
    before_id, before_subject, before_time, before_data, serializer = parts
    return b"".join(
        (
            before_id,
            to_json(id),
            before_subject,
            to_json(subject),
            before_time,
            to_json(time),
            before_data,
            serializer.to_json(data),
            b"}",
        )
    )


def stable_event_id(namespace: UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, computed without building UUID objects (event ids
    are derived for every published event)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])  # noqa: S324
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def source_of(service: str) -> str:
    """The CloudEvents ``source`` of a publishing service, e.g. ``/seatledger/ledger``."""
    return f"/seatledger/{service}"


def dataschema_uri(event_type: str) -> str:
    """The ``dataschema`` of an event type: the URI of its checked-in JSON Schema file."""
    return f"{SCHEMA_BASE_URI}{event_type}.json"
