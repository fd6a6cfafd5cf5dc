"""A consumer in another team reads our topic with nothing but the checked-in JSON Schema files
and a generic validator: this module imports nothing from seatledger, schemas or services.

The messages are published by the real outbox relay, in a process of its own
(``tests.contract.publish_samples``), one per published event type.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas" / "json"
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value and parsed.utcoffset() is not None


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text())
    return Draft202012Validator(schema, format_checker=FORMATS)


def _consume_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"contract-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    return messages


@pytest.fixture
def published(postgres_url: str, kafka_bootstrap: str, new_topic, tmp_path: Path) -> list[Any]:
    topic = new_topic("contract", partitions=3)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.contract.publish_samples",
            postgres_url,
            topic,
            kafka_bootstrap,
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.strip().splitlines()[-1])
    messages = _consume_all(kafka_bootstrap, topic, count)
    assert len(messages) == count
    return messages


def test_every_published_message_validates_against_the_checked_in_schema_files(
    published: list[Any],
) -> None:
    envelope = _validator("cloudevent.json")
    seen_types = set()
    for msg in published:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert headers["content-type"] == "application/cloudevents+json"
        document = json.loads(msg.value())
        envelope.validate(document)
        assert document["specversion"] == "1.0"
        assert msg.key().decode() == document["subject"]
        assert headers["ce_id"] == document["id"]
        schema_file = f"{document['type']}.json"
        assert (SCHEMA_DIR / schema_file).is_file(), f"no schema file for {document['type']}"
        data_validator = _validator(schema_file)
        assert document["dataschema"] == json.loads((SCHEMA_DIR / schema_file).read_text())["$id"]
        data_validator.validate(document["data"])
        seen_types.add(document["type"])
    every_type = {p.stem for p in SCHEMA_DIR.glob("*.json") if p.name != "cloudevent.json"}
    assert seen_types == every_type, "every published type is exercised"


def test_the_schema_files_refuse_what_breaks_the_contract(published: list[Any]) -> None:
    by_type = {json.loads(m.value())["type"]: json.loads(m.value()) for m in published}
    invoice = by_type["seatledger.invoicer.InvoiceIssued.v1"]["data"]
    validator = _validator("seatledger.invoicer.InvoiceIssued.v1.json")
    for field, value in [
        ("gross", 24.47),  # money is a decimal string, never a JSON number
        ("currency", "euro"),
        ("issue_date", "14.03.2026"),
        ("cloud_id", "not-a-uuid"),
        ("lines", []),
    ]:
        broken = {**invoice, field: value}
        with pytest.raises(ValidationError):
            validator.validate(broken)
    missing = {k: v for k, v in invoice.items() if k != "invoice_number"}
    with pytest.raises(ValidationError):
        validator.validate(missing)
    opened = by_type["seatledger.ledger.ContractOpened.v1"]["data"]
    with pytest.raises(ValidationError):
        _validator("seatledger.ledger.ContractOpened.v1.json").validate(
            {**opened, "occurred_at": "2026-03-14T10:15:00"}  # no UTC offset
        )
