"""Write the checked-in artefacts of the contracts from the models.

    python -m schemas.generate           # write schemas/json/*.json and schemas/asyncapi.yaml
    python -m schemas.generate --check   # exit 1 if a file differs from what the models give

- ``schemas/json/<event type>.json``: the JSON Schema (draft 2020-12) of one event type's
  ``data``, one file per type and version; its ``$id`` is the event's ``dataschema``.
- ``schemas/json/cloudevent.json``: the envelope every message value is.
- ``schemas/published/<event type>.json``: the schema of each version as first published.
  A new event type is added here on generation; an existing file is never rewritten, so the
  compatibility test can tell when a published version changed in any way other than gaining
  an optional field (:func:`compatibility_problems`).
- ``schemas/asyncapi.yaml``: the AsyncAPI 3 document of the topics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from schemas._base import EventData
from schemas.envelope import (
    CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DLQ_CONSUMER_GROUP_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SCHEMA_BASE_URI,
    CloudEvent,
    dataschema_uri,
)
from schemas.registry import SERVICE_TOPICS, VIOLATION_REASONS, event_models

ROOT = Path(__file__).resolve().parent
JSON_DIR = ROOT / "json"
PUBLISHED_DIR = ROOT / "published"
ASYNCAPI_FILE = ROOT / "asyncapi.yaml"
ENVELOPE_FILE = "cloudevent.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Which services consume each publishing service's topic.
CONSUMERS: dict[str, tuple[str, ...]] = {
    "ledger": ("invoicer",),
    "invoicer": ("notifier",),
    "notifier": (),
}
#: JSON Schema keywords that document and never validate.
ANNOTATIONS = frozenset({"title", "description", "examples", "$comment"})

SERVICE_TITLES = {"ledger": "Ledger", "invoicer": "Invoicer", "notifier": "Notifier"}


def _dump_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def event_schema(model: type[EventData]) -> dict[str, Any]:
    """The JSON Schema of ``model``'s ``data``."""
    schema = model.model_json_schema(mode="validation")
    event_type = model.event_type()
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": dataschema_uri(event_type),
        **schema,
        "title": event_type,
    }


def envelope_schema() -> dict[str, Any]:
    schema = CloudEvent.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}{ENVELOPE_FILE}",
        **schema,
        "title": "CloudEvent",
        "description": (
            "A CloudEvents 1.0 event in structured JSON mode (application/cloudevents+json); "
            "`data` follows the schema named by `dataschema` (schemas/json/<type>.json)."
        ),
    }


def schema_files() -> dict[str, str]:
    """``{file name: text}`` of every file under ``schemas/json``."""
    files = {f"{t}.json": _dump_json(event_schema(m)) for t, m in event_models().items()}
    files[ENVELOPE_FILE] = _dump_json(envelope_schema())
    return dict(sorted(files.items()))


# -- compatibility --------------------------------------------------------------------------


def compatibility_problems(published: Any, current: Any, path: str = "") -> list[str]:
    """How ``current`` differs from ``published`` other than by gaining optional fields.

    Allowed: new entries under ``properties`` (not listed in ``required``, which must stay
    equal), new ``$defs`` (the types of new fields), and edited annotations that no validator
    reads (``title``, ``description``, ``examples``, ``$comment``). Anything else is a problem:
    a removed or renamed field, a changed type, format, pattern, bound, enum, default...
    """
    where = path or "(root)"
    if isinstance(published, dict) and isinstance(current, dict):
        problems: list[str] = []
        in_properties = path.endswith("/properties") or path.endswith("/$defs")
        for key, value in published.items():
            if key in ANNOTATIONS and not in_properties:
                continue
            if key not in current:
                problems.append(f"{where}: {key!r} removed")
            else:
                problems += compatibility_problems(value, current[key], f"{path}/{key}")
        for key in sorted(current.keys() - published.keys()):
            if in_properties or key in ANNOTATIONS:
                continue  # a new field (optional, since `required` is unchanged) or its type
            problems.append(f"{where}: {key!r} added")
        return problems
    if isinstance(published, list) and isinstance(current, list):
        if path.endswith("/required") and sorted(published) != sorted(current):
            return [f"{where}: required fields {sorted(published)} -> {sorted(current)}"]
        if len(published) != len(current):
            return [f"{where}: {published!r} -> {current!r}"]
        problems = []
        for index, (old, new) in enumerate(zip(published, current, strict=True)):
            problems += compatibility_problems(old, new, f"{path}/{index}")
        return problems
    if type(published) is not type(current) or published != current:
        return [f"{where}: {published!r} -> {current!r}"]
    return []


# -- AsyncAPI --------------------------------------------------------------------------------


def _message_id(event_type: str) -> str:
    return event_type


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic, built from the registry."""
    models = event_models()
    by_service: dict[str, list[str]] = {service: [] for service in SERVICE_TOPICS}
    for event_type, model in models.items():
        by_service.setdefault(model.source_service, []).append(event_type)

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for service, topic in SERVICE_TOPICS.items():
        types = by_service.get(service, [])
        channel_id = f"{service}Events"
        dlq_id = f"{service}DeadLetters"
        channels[channel_id] = {
            "address": topic,
            "title": f"{SERVICE_TITLES[service]} events",
            "description": (
                f"Every event the {service} publishes, in commit order per cloud. Key: the "
                "cloud id (so one cloud's events stay in one partition, in order). Value: a "
                "structured-mode CloudEvent. Delivery is at least once: a re-published event "
                "keeps its `id`; consumers dedupe by id or by their stored position."
            ),
            "messages": {
                _message_id(t): {"$ref": f"#/components/messages/{_message_id(t)}"} for t in types
            },
            "bindings": {"kafka": _topic_binding(topic)},
        }
        channels[dlq_id] = {
            "address": f"{topic}.dlq",
            "title": f"{SERVICE_TITLES[service]} dead letters",
            "description": (
                f"Messages of {topic} that a consumer can never process (not JSON, not a "
                "CloudEvent, unknown type or version, fails its schema, or refused by the "
                "handler), with headers naming the error and where the message came from."
            ),
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": {"kafka": _topic_binding(f"{topic}.dlq")},
        }
        operations[f"{service}PublishesEvents"] = {
            "action": "send",
            "title": f"The {service} publishes its events",
            "description": (
                f"The {service}'s outbox relay reads its event store's notification log and "
                "publishes with an idempotent producer (acks=all); its position is recorded "
                "only after the broker acknowledged."
            ),
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{_message_id(t)}"} for t in types
            ],
            "x-service": service,
        }
        for consumer in CONSUMERS.get(service, ()):
            operations[f"{consumer}Consumes{SERVICE_TITLES[service]}Events"] = {
                "action": "receive",
                "title": f"The {consumer} consumes the {service}'s events",
                "description": (
                    "A consumer group whose positions (topic:partition -> offset) are stored in "
                    "the consumer's own database in the same transaction as the state change."
                ),
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [
                    {"$ref": f"#/channels/{channel_id}/messages/{_message_id(t)}"} for t in types
                ],
                "x-service": consumer,
            }
            operations[f"{consumer}DeadLetters{SERVICE_TITLES[service]}Events"] = {
                "action": "send",
                "title": f"The {consumer} dead-letters what it can never process",
                "channel": {"$ref": f"#/channels/{dlq_id}"},
                "messages": [{"$ref": f"#/channels/{dlq_id}/messages/DeadLetter"}],
                "x-service": consumer,
            }
        for event_type in types:
            model = models[event_type]
            messages[_message_id(event_type)] = {
                "name": event_type,
                "title": model.event_name,
                "summary": _first_line(model.__doc__)
                or f"{model.event_name} (v{model.event_version})",
                "contentType": CONTENT_TYPE,
                "headers": {"$ref": "#/components/schemas/EventHeaders"},
                "payload": {
                    "allOf": [
                        {"$ref": f"./json/{ENVELOPE_FILE}"},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": event_type},
                                "source": {"const": f"/seatledger/{service}"},
                                "dataschema": {"const": dataschema_uri(event_type)},
                                "data": {"$ref": f"./json/{event_type}.json"},
                            },
                        },
                    ]
                },
                "bindings": {"kafka": _key_binding()},
            }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "The refused message unchanged (key, value, original headers) plus why.",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "the original value, byte for byte (it may not be JSON)"},
        "bindings": {"kafka": _key_binding()},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "seatledger events",
            "version": "1.0.0",
            "description": (
                "The topics of seatledger, event-sourced billing for seat-based SaaS contracts. "
                "Every value is a CloudEvents 1.0 event in structured JSON mode; its `data` "
                "follows the JSON Schema file of its type (schemas/json/<type>.json), which is "
                "also its `dataschema`. A published version only gains optional fields; any "
                "other change is a new version (…v2) published alongside."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the broker that `make up` starts",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "EventHeaders": {
                    "type": "object",
                    "required": [EVENT_ID_HEADER, EVENT_TYPE_HEADER, CONTENT_TYPE_HEADER],
                    "properties": {
                        EVENT_ID_HEADER: {
                            "type": "string",
                            "description": "the CloudEvent id (the event's stable UUID)",
                        },
                        EVENT_TYPE_HEADER: {
                            "type": "string",
                            "description": "the CloudEvent type",
                        },
                        CONTENT_TYPE_HEADER: {"const": CONTENT_TYPE},
                    },
                },
                "DeadLetterHeaders": {
                    "type": "object",
                    "required": [
                        DLQ_REASON_HEADER,
                        DLQ_ERROR_HEADER,
                        DLQ_SOURCE_TOPIC_HEADER,
                        DLQ_SOURCE_PARTITION_HEADER,
                        DLQ_SOURCE_OFFSET_HEADER,
                        DLQ_CONSUMER_GROUP_HEADER,
                    ],
                    "properties": {
                        DLQ_REASON_HEADER: {
                            "type": "string",
                            "enum": [*VIOLATION_REASONS, "poison"],
                            "description": "why the message was refused",
                        },
                        DLQ_ERROR_HEADER: {"type": "string", "description": "the error"},
                        DLQ_SOURCE_TOPIC_HEADER: {"type": "string"},
                        DLQ_SOURCE_PARTITION_HEADER: {
                            "type": "string",
                            "description": "decimal partition number",
                        },
                        DLQ_SOURCE_OFFSET_HEADER: {
                            "type": "string",
                            "description": "decimal offset in the source partition",
                        },
                        DLQ_CONSUMER_GROUP_HEADER: {
                            "type": "string",
                            "description": "the consumer group that refused it",
                        },
                    },
                },
            },
        },
    }


def _topic_binding(topic: str) -> dict[str, Any]:
    return {
        "topic": topic,
        "partitions": 6,
        "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": -1},
        "bindingVersion": "0.5.0",
    }


def _key_binding() -> dict[str, Any]:
    return {
        "key": {"type": "string", "format": "uuid", "description": "the cloud id"},
        "bindingVersion": "0.5.0",
    }


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def asyncapi_text() -> str:
    header = (
        "# Generated by `python -m schemas.generate` from the models in schemas/: do not edit.\n"
    )
    body: str = yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=100)
    return header + body


# -- the command ------------------------------------------------------------------------------


def expected_files() -> dict[Path, str]:
    """Every generated file (except the published baseline) and its text."""
    files = {JSON_DIR / name: text for name, text in schema_files().items()}
    files[ASYNCAPI_FILE] = asyncapi_text()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = [p for p, text in expected_files().items() if not p.exists() or p.read_text() != text]
    generated = {f"{t}.json" for t in event_models()} | {ENVELOPE_FILE}
    orphans = sorted(p for p in JSON_DIR.glob("*.json") if p.name not in generated)
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT.parent)}")
        for path in orphans:
            print(f"no model: {path.relative_to(ROOT.parent)}")
        return 1 if stale or orphans else 0
    JSON_DIR.mkdir(exist_ok=True)
    PUBLISHED_DIR.mkdir(exist_ok=True)
    for path, text in expected_files().items():
        if path in stale:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT.parent)}")
    for path in orphans:
        path.unlink()
        print(f"removed {path.relative_to(ROOT.parent)} (no model)")
    status = 0
    for event_type, model in event_models().items():
        baseline = PUBLISHED_DIR / f"{event_type}.json"
        current = event_schema(model)
        if not baseline.exists():
            baseline.write_text(_dump_json(current))
            print(f"published {baseline.relative_to(ROOT.parent)}")
            continue
        problems = compatibility_problems(json.loads(baseline.read_text()), current)
        for problem in problems:
            print(f"INCOMPATIBLE {event_type}: {problem}", file=sys.stderr)
            status = 1
    if status:
        print(
            "a published version may only gain optional fields: publish the change as a new "
            "version (event_version = N + 1) instead",
            file=sys.stderr,
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
