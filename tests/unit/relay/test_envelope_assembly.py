"""``CloudEvent.of`` (the path every publisher takes) builds exactly the envelope a plain
validated construction builds, byte for byte, for every published event type."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from schemas._base import EventData
from schemas.envelope import CloudEvent, dataschema_uri, envelope_json, source_of
from schemas.registry import event_models, parse_cloud_event
from tests.contract.samples import SAMPLES

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas" / "json"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _constructed(data: EventData, *, id: str, subject: str, time: datetime) -> CloudEvent:
    event_type = data.event_type()
    return CloudEvent(
        id=id,
        source=source_of(type(data).source_service),
        type=event_type,
        subject=subject,
        time=time,
        dataschema=dataschema_uri(event_type),
        data=data.model_dump(mode="json"),
    )


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_the_assembled_envelope_is_the_validated_construction_byte_for_byte(
    event_type: str,
) -> None:
    data = event_models()[event_type].model_validate(SAMPLES[event_type])
    for time in (
        datetime(2026, 3, 14, 9, 15, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 14, 10, 15, tzinfo=timezone(timedelta(hours=1))),
    ):
        id_, subject = str(uuid.uuid4()), 'cloud-ü/"x"'
        assembled = CloudEvent.of(data, id=id_, subject=subject, time=time)
        expected = _constructed(data, id=id_, subject=subject, time=time)
        assert type(assembled) is CloudEvent
        assert assembled == expected
        value = assembled.to_json_bytes()
        assert value == expected.to_json_bytes()
        assert envelope_json(data, id=id_, subject=subject, time=time) == value
        parsed = parse_cloud_event(value)
        assert parsed.data == data
        document = json.loads(value)
        _validator("cloudevent").validate(document)
        _validator(event_type).validate(document["data"])


def test_the_assembled_envelope_is_validated_like_any_other() -> None:
    event_type = "seatledger.ledger.LicenseAssigned.v1"
    data = event_models()[event_type].model_validate(SAMPLES[event_type])
    good = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="at least 1 character"):
        CloudEvent.of(data, id="", subject="cloud", time=good)
    with pytest.raises(ValueError, match="UTC offset"):
        CloudEvent.of(data, id="id", subject="cloud", time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="valid string"):
        CloudEvent.of(data, id="id", subject=None, time=good)  # type: ignore[arg-type]


def test_the_spliced_envelope_refuses_what_the_validated_one_refuses() -> None:
    event_type = "seatledger.ledger.LicenseAssigned.v1"
    data = event_models()[event_type].model_validate(SAMPLES[event_type])
    good = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="at least 1 character"):
        envelope_json(data, id="", subject="cloud", time=good)
    with pytest.raises(ValueError, match="UTC offset"):
        envelope_json(data, id="id", subject="cloud", time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="valid string"):
        envelope_json(data, id="id", subject=None, time=good)  # type: ignore[arg-type]
    # What validation accepts by converting it (here: an ISO string as the time) is converted.
    assert (
        envelope_json(
            data,
            id="id",
            subject="cloud",
            time="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        )
        == CloudEvent.of(data, id="id", subject="cloud", time=good).to_json_bytes()
    )
