"""The registry knows every published event type and refuses, precisely, what breaks the
contract."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import pytest

import schemas.invoices
import schemas.ledger
from schemas._base import EventData
from schemas.envelope import CloudEvent, dataschema_uri
from schemas.ledger import Actor, LicenseAssigned
from schemas.registry import (
    CONTRACT_MODULES,
    InvalidEnvelope,
    NotJson,
    SchemaViolation,
    UnknownEventType,
    UnknownEventVersion,
    event_models,
    model_for,
    parse_cloud_event,
)


def _license_assigned() -> CloudEvent:
    cloud = uuid.uuid4()
    data = LicenseAssigned(
        cloud_id=cloud,
        occurred_at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        actor=Actor(kind="user", id="u-1"),
        user_id="u-2",
        rights_group="employee",
        licenses_assigned=3,
        seats=5,
    )
    return CloudEvent.of(data, id=str(uuid.uuid4()), subject=str(cloud), time=data.occurred_at)


def test_every_event_model_of_the_contract_modules_is_registered() -> None:
    import importlib

    expected = set()
    for name in CONTRACT_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, EventData)
                and isinstance(getattr(value, "event_name", None), str)
            ):
                expected.add(value.event_type())
    assert set(event_models()) == expected
    for model in schemas.ledger.LEDGER_EVENTS:
        assert event_models()[model.event_type()] is model
    assert model_for("seatledger.invoicer.InvoiceIssued.v1") is schemas.invoices.InvoiceIssued


def test_abstract_bases_are_not_event_types() -> None:
    assert all(m is not schemas.ledger.LedgerEvent for m in event_models().values())


def test_cloud_event_of_names_type_source_and_dataschema() -> None:
    event = _license_assigned()
    assert event.type == "seatledger.ledger.LicenseAssigned.v1"
    assert event.source == "/seatledger/ledger"
    assert event.dataschema == dataschema_uri(event.type)
    assert event.specversion == "1.0"


def test_a_published_value_parses_back_to_its_model() -> None:
    event = _license_assigned()
    parsed = parse_cloud_event(event.to_json_bytes())
    assert parsed.cloud_event == event
    assert isinstance(parsed.data, LicenseAssigned)
    assert parsed.data.licenses_assigned == 3


def test_a_value_that_is_not_json_is_refused_as_not_json() -> None:
    with pytest.raises(NotJson) as caught:
        parse_cloud_event(b"\xff{not json")
    assert caught.value.reason == "not_json"
    with pytest.raises(NotJson):
        parse_cloud_event(None)


@pytest.mark.parametrize(
    "value", [b"[1, 2]", b'"text"', b'{"specversion": "1.0", "id": "x"}', b'{"data": 1}']
)
def test_json_that_is_not_a_cloud_event_is_an_invalid_envelope(value: bytes) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_cloud_event(value)
    assert caught.value.reason == "invalid_envelope"


def test_an_unknown_type_and_an_unknown_version_are_told_apart() -> None:
    document = json.loads(_license_assigned().to_json_bytes())
    document["type"] = "seatledger.ledger.LicenseAssigned.v2"
    with pytest.raises(
        UnknownEventVersion, match=re.escape("known: seatledger.ledger.LicenseAssigned.v1")
    ):
        parse_cloud_event(json.dumps(document))
    document["type"] = "seatledger.ledger.Teleported.v1"
    with pytest.raises(UnknownEventType) as caught:
        parse_cloud_event(json.dumps(document))
    assert caught.value.reason == "unknown_type"


def test_data_that_fails_its_schema_is_a_schema_violation_naming_the_field() -> None:
    document = json.loads(_license_assigned().to_json_bytes())
    document["data"]["licenses_assigned"] = 0
    with pytest.raises(SchemaViolation, match="licenses_assigned"):
        parse_cloud_event(json.dumps(document))
    del document["data"]["user_id"]
    with pytest.raises(SchemaViolation, match="user_id"):
        parse_cloud_event(json.dumps(document))


def test_a_float_amount_is_a_schema_violation() -> None:
    from schemas.ledger import QuoteHonoured

    with pytest.raises(ValueError, match="never floats"):
        QuoteHonoured.model_validate(
            {"quote_id": str(uuid.uuid4()), "charge_date": "2026-01-31", "net": 1.5}
        )


def test_unknown_fields_are_ignored_so_old_readers_survive_new_optional_fields() -> None:
    document = json.loads(_license_assigned().to_json_bytes())
    document["data"]["a_field_from_the_future"] = {"x": 1}
    parsed = parse_cloud_event(json.dumps(document))
    assert isinstance(parsed.data, LicenseAssigned)
