"""The CloudEvents 1.0 envelope, structured JSON mode (``application/cloudevents+json``).

Every message on our topics is one such JSON object. Its ``id`` is the event's stable UUID (a
re-publication carries the same id), ``subject`` is the cloud id, which is also the Kafka key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas._base import ContractModel, Timestamp

CONTENT_TYPE = "application/cloudevents+json"
EVENT_ID_HEADER = "ce_id"
SCHEMA_BASE_URI = "https://seatledger.dev/schemas/"


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


def dataschema_uri(event_type: str) -> str:
    """The ``dataschema`` of an event type: the URI of its checked-in JSON Schema file."""
    return f"{SCHEMA_BASE_URI}{event_type}.json"
