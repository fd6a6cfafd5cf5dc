"""The relay's mapping of stored events to messages: a :class:`ContractMapper` gives the very
messages a plain mapper gives, and an unknown event type is never turned into a message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from schemas.envelope import CloudEvent
from schemas.ledger import Actor, LicenseAssigned
from schemas.registry import UnknownEventType, parse_cloud_event
from seatledger.relay import (
    ContractMapper,
    EnvelopeParts,
    UnpublishableNotification,
    map_notifications,
)

CLOUD = "0b7d7c52-5f3a-4a1e-9a57-2f2d8f8f4a10"


@dataclass(frozen=True)
class Assigned:
    """A stored event as the application's mapper would hand it back."""

    version: int
    timestamp: datetime


class Identity:
    """The application's mapper of these tests: the stored events are the domain events."""

    @staticmethod
    def to_domain_event(notification: Any) -> Any:
        return notification


class NotAContract(LicenseAssigned):
    """A model outside the contract modules: its type is unknown to every consumer."""

    event_name: ClassVar[str] = "NotAContract"


def _parts(model: type[LicenseAssigned] = LicenseAssigned) -> Any:
    def parts(event: Assigned) -> EnvelopeParts | None:
        if event.version % 3 == 0:
            return None  # internal, not published
        data = model(
            cloud_id=CLOUD,
            occurred_at=event.timestamp,
            actor=Actor(kind="system", id="test"),
            user_id=f"user-{event.version}",
            rights_group="employee",
            licenses_assigned=event.version,
            seats=10,
        )
        return data, f"id-{event.version}", CLOUD, event.timestamp

    return parts


def _plain(parts: Any) -> Any:
    def mapper(event: Assigned) -> CloudEvent | None:
        found = parts(event)
        if found is None:
            return None
        data, event_id, subject, at = found
        return CloudEvent.of(data, id=event_id, subject=subject, time=at)

    return mapper


EVENTS = [Assigned(n, datetime(2026, 3, 1, 12, n, tzinfo=UTC)) for n in range(1, 11)]


@pytest.mark.parametrize("validate", [False, True])
def test_a_contract_mapper_gives_the_messages_a_plain_mapper_gives(validate: bool) -> None:
    parts = _parts()
    fast = map_notifications(Identity(), ContractMapper(parts), validate, EVENTS)  # type: ignore[arg-type]
    plain = map_notifications(Identity(), _plain(parts), validate, EVENTS)  # type: ignore[arg-type]
    assert fast == plain
    messages, newest = fast
    assert len(messages) == 7  # versions 3, 6 and 9 are internal
    assert newest == EVENTS[-1].timestamp.timestamp()
    key, value, headers = messages[0]
    assert key == CLOUD.encode()
    assert parse_cloud_event(value).cloud_event.id == dict(headers)["ce_id"] == "id-1"
    assert dict(headers)["ce_type"] == "seatledger.ledger.LicenseAssigned.v1"


@pytest.mark.parametrize("validate", [False, True])
@pytest.mark.parametrize("contract", [True, False], ids=["parts", "plain"])
def test_an_unknown_event_type_is_never_turned_into_a_message(
    validate: bool, contract: bool
) -> None:
    parts = _parts(NotAContract)
    mapper = ContractMapper(parts) if contract else _plain(parts)
    with pytest.raises(UnpublishableNotification) as raised:
        map_notifications(Identity(), mapper, validate, EVENTS)  # type: ignore[arg-type]
    assert isinstance(raised.value.error, UnknownEventType)
    assert raised.value.notification is EVENTS[0]  # type: ignore[comparison-overlap]
