"""``seatledger topics ensure`` creates the product's topics and dead-letter topics with the
configured partitions and retention, and is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TOPICS = ("seatledger.ledger.v1", "seatledger.invoices.v1", "seatledger.notifications.v1")


def _ensure(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seatledger.cli", "topics", "ensure", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_topics_ensure_creates_topics_and_dead_letter_topics_once(kafka_bootstrap: str) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SEATLEDGER_KAFKA_TOPIC_PREFIX": prefix,
    }
    names = [f"{prefix}{t}{suffix}" for t in TOPICS for suffix in ("", ".dlq")]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        first = _ensure(env, "--partitions", "4", "--retention-ms", "86400000")
        assert first.returncode == 0, first.stderr
        assert sorted(first.stdout.split()) == sorted(["created"] * 6 + names)
        topics = admin.list_topics(timeout=15).topics
        for name in names:
            assert len(topics[name].partitions) == 4
        configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, names[0])])
        for future in configs.values():
            assert future.result()["retention.ms"].value == "86400000"

        again = _ensure(env, "--partitions", "8")
        assert again.returncode == 0, again.stderr
        assert sorted(again.stdout.split()) == sorted(["exists"] * 6 + names)
        assert len(admin.list_topics(timeout=15).topics[names[0]].partitions) == 4

        refused = _ensure(env, "--partitions", "0")
        assert refused.returncode == 1
        assert "at least 1" in refused.stderr
    finally:
        existing = set(admin.list_topics(timeout=15).topics)
        doomed = [n for n in names if n in existing]
        if doomed:
            for future in admin.delete_topics(doomed, operation_timeout=30).values():
                future.result()
