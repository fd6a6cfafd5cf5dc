"""The checked-in JSON Schema files, the published baseline and the AsyncAPI document follow the
models: a drift, or a published version changing other than by gaining an optional field, fails
here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import Field

from schemas.generate import (
    ASYNCAPI_FILE,
    ENVELOPE_FILE,
    JSON_DIR,
    PUBLISHED_DIR,
    compatibility_problems,
    event_schema,
    expected_files,
)
from schemas.ledger import LicenseAssigned
from schemas.registry import SERVICE_TOPICS, event_models

REGENERATE = "run `python -m schemas.generate` and commit the result"


def test_every_generated_file_matches_the_models() -> None:
    for path, text in expected_files().items():
        assert path.exists(), f"{path.name} is missing: {REGENERATE}"
        assert path.read_text() == text, f"{path.name} drifted from its model: {REGENERATE}"


def test_there_is_no_schema_file_without_a_model() -> None:
    names = {p.name for p in JSON_DIR.glob("*.json")}
    assert names == {f"{t}.json" for t in event_models()} | {ENVELOPE_FILE}


def test_a_model_change_shows_as_drift_from_its_file() -> None:
    class LicenseAssignedWithExtra(LicenseAssigned):
        badge: str = Field(description="a field the file does not know")

    LicenseAssignedWithExtra.__module__ = "elsewhere"  # keep it out of the registry
    on_disk = (JSON_DIR / f"{LicenseAssigned.event_type()}.json").read_text()
    assert json.loads(on_disk) == event_schema(LicenseAssigned)
    assert json.loads(on_disk) != event_schema(LicenseAssignedWithExtra)


def test_every_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    for path in JSON_DIR.glob("*.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_every_event_type_has_a_published_baseline() -> None:
    missing = [t for t in event_models() if not (PUBLISHED_DIR / f"{t}.json").exists()]
    assert missing == [], f"not yet published: {missing}: {REGENERATE}"


def test_published_versions_only_gained_optional_fields() -> None:
    for event_type, model in event_models().items():
        baseline = json.loads((PUBLISHED_DIR / f"{event_type}.json").read_text())
        problems = compatibility_problems(baseline, event_schema(model))
        assert problems == [], f"{event_type} changed incompatibly: {problems}; publish a v2"


# -- the compatibility rule itself -------------------------------------------------------------

BASE: dict[str, Any] = {
    "type": "object",
    "title": "X",
    "properties": {
        "amount": {"type": "string", "pattern": "^[0-9]+$"},
        "seats": {"type": "integer", "minimum": 1},
    },
    "required": ["amount", "seats"],
    "$defs": {"Actor": {"type": "object", "properties": {"id": {"type": "string"}}}},
}


def _changed(**edits: Any) -> dict[str, Any]:
    schema = json.loads(json.dumps(BASE))
    for dotted, value in edits.items():
        *parents, last = dotted.split("__")
        target = schema
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return schema


def test_gaining_an_optional_field_is_compatible() -> None:
    current = _changed(properties__note={"anyOf": [{"type": "string"}, {"type": "null"}]})
    current["$defs"]["Quote"] = {"type": "object"}
    assert compatibility_problems(BASE, current) == []


def test_editing_documentation_is_compatible() -> None:
    current = _changed(title="Y", description="now documented")
    current["properties"]["seats"]["description"] = "seats after the event"
    assert compatibility_problems(BASE, current) == []


@pytest.mark.parametrize(
    ("edits", "what"),
    [
        (
            {"properties__note": {"type": "string"}, "required": ["amount", "seats", "note"]},
            "required",
        ),
        ({"properties__seats": None, "required": ["amount"]}, "removed"),
        ({"properties__seats__type": "string"}, "'integer' -> 'string'"),
        ({"properties__seats__minimum": 2}, "1 -> 2"),
        ({"properties__amount__pattern": "^[0-9]*$"}, "pattern"),
        ({"properties__seats__maximum": 10}, "'maximum' added"),
        ({"$defs__Actor__properties__id__format": "uuid"}, "'format' added"),
        ({"additionalProperties": False}, "'additionalProperties' added"),
    ],
)
def test_any_other_change_to_a_published_version_is_incompatible(
    edits: dict[str, Any], what: str
) -> None:
    problems = compatibility_problems(BASE, _changed(**edits))
    assert problems, edits
    assert any(what in p for p in problems), problems


# -- AsyncAPI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI_FILE.read_text())


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert part in node, f"unresolvable {ref}"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found += _refs(value)
        return found
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_asyncapi_document_has_the_structure_of_asyncapi_3(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"]
    assert asyncapi["info"]["version"]
    for server in asyncapi["servers"].values():
        assert server["protocol"] == "kafka"
        assert server["host"]
    for channel in asyncapi["channels"].values():
        assert isinstance(channel["address"], str)
        assert channel["messages"]
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        _resolve(asyncapi, channel_ref)
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are a subset of its channel's.
            assert message["$ref"].startswith(channel_ref + "/messages/"), (name, message)
    for message in asyncapi["components"]["messages"].values():
        assert "payload" in message
        assert "headers" in message
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    for ref in _refs(asyncapi):
        if ref.startswith("#/"):
            _resolve(asyncapi, ref)
        else:
            assert (ASYNCAPI_FILE.parent / ref).resolve().is_file(), f"missing file {ref}"


def test_asyncapi_names_every_schema_file_and_topic(asyncapi: dict[str, Any]) -> None:
    file_refs = {Path(r).name for r in _refs(asyncapi) if not r.startswith("#")}
    assert file_refs == {p.name for p in JSON_DIR.glob("*.json")}
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    for topic in SERVICE_TOPICS.values():
        assert topic in addresses
        assert f"{topic}.dlq" in addresses


def test_asyncapi_says_who_publishes_and_who_consumes(asyncapi: dict[str, Any]) -> None:
    sends = {
        (op["x-service"], _resolve(asyncapi, op["channel"]["$ref"])["address"])
        for op in asyncapi["operations"].values()
        if op["action"] == "send"
    }
    receives = {
        (op["x-service"], _resolve(asyncapi, op["channel"]["$ref"])["address"])
        for op in asyncapi["operations"].values()
        if op["action"] == "receive"
    }
    assert {("ledger", "seatledger.ledger.v1"), ("invoicer", "seatledger.invoices.v1")} <= sends
    assert ("notifier", "seatledger.notifications.v1") in sends
    assert ("invoicer", "seatledger.ledger.v1") in receives
    assert ("notifier", "seatledger.invoices.v1") in receives
