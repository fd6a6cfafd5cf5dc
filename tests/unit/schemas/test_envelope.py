from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from schemas.envelope import CloudEvent, stable_event_id
from schemas.ledger import Actor, LicenseAssigned
from schemas.registry import parse_cloud_event


def test_stable_event_ids_are_the_uuid5_of_namespace_and_name() -> None:
    for _ in range(200):
        namespace, name = uuid.uuid4(), f"{uuid.uuid4()}:{uuid.uuid4().int % 1000}"
        assert stable_event_id(namespace, name) == str(uuid.uuid5(namespace, name))


def _data() -> LicenseAssigned:
    return LicenseAssigned(
        cloud_id=uuid.uuid4(),
        occurred_at=datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        actor=Actor(kind="user", id="anna"),
        user_id="ben",
        rights_group="employee",
        licenses_assigned=1,
        seats=5,
    )


def test_an_envelope_assembled_from_a_model_reads_back_as_that_model() -> None:
    data = _data()
    event = CloudEvent.of(
        data, id=str(uuid.uuid4()), subject=str(data.cloud_id), time=data.occurred_at
    )
    parsed = parse_cloud_event(event.to_json_bytes())
    envelope = parsed.cloud_event
    assert envelope == event
    assert parsed.data == data
    assert envelope.source == "/seatledger/ledger"
    assert envelope.dataschema.endswith("seatledger.ledger.LicenseAssigned.v1.json")


@pytest.mark.parametrize(
    ("id_", "subject", "time"),
    [
        ("", "cloud", datetime(2026, 1, 1, tzinfo=UTC)),
        ("id", "cloud", datetime(2026, 1, 1)),  # the point: no offset
    ],
)
def test_an_envelope_without_id_or_offset_is_refused(id_, subject, time) -> None:
    with pytest.raises(ValueError, match=r"at least 1 character|UTC offset"):
        CloudEvent.of(_data(), id=id_, subject=subject, time=time)
