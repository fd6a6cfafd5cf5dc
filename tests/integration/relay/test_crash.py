"""Killing the relay (SIGKILL, a real process) mid-batch and starting it again loses nothing:
the new run re-publishes at most the unacknowledged tail, with the same event ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from seatledger.relay import OutboxRelay
from tests.integration.relay.relay_process import BATCH_SIZE, MAX_IN_FLIGHT
from tests.integration.relay.support import (
    Desk,
    assign_many,
    desk_app,
    read_all,
    to_cloud_event,
    value_of,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CLOUDS = 30
PER_CLOUD = 100


def _start(
    postgres_url: str, topic: str, kafka_bootstrap: str, tmp_path: Path
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.relay.relay_process",
            postgres_url,
            topic,
            kafka_bootstrap,
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_relay_killed_mid_batch_loses_nothing_and_republishes_only_the_tail(
    postgres_url: str, kafka_bootstrap: str, new_topic, tmp_path: Path
) -> None:
    app = desk_app(postgres_url, tmp_path)
    desks = [Desk(1000) for _ in range(CLOUDS)]
    app.save(*desks)
    for _ in range(PER_CLOUD // 10):
        assign_many(app, desks, 10)
    head = app.recorder.max_notification_id()
    assert head is not None
    topic = new_topic("relay-crash", partitions=6)
    observer = OutboxRelay(app, topic, to_cloud_event, {})

    def recorded() -> int:
        observer._loaded = False  # re-read the tracking record
        return observer.position or 0

    first = _start(postgres_url, topic, kafka_bootstrap, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while recorded() < head // 3:
            assert first.poll() is None, "the relay died on its own"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    at_kill = recorded()
    assert 0 < at_kill < head, "killed before the end"

    second = _start(postgres_url, topic, kafka_bootstrap, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while recorded() < head:
            assert second.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(10)

    expected = {}
    for notification in app.recorder.select_notifications(start=None, limit=100_000):
        cloud_event = to_cloud_event(app.mapper.to_domain_event(notification))
        if cloud_event is not None:
            expected[cloud_event.id] = notification.id
    assert len(expected) == CLOUDS * PER_CLOUD
    messages = read_all(kafka_bootstrap, topic, len(expected), idle_s=1.0)
    ids = [value_of(m)["id"] for m in messages]
    assert set(ids) == set(expected), "an event is missing"

    seen: set[str] = set()
    duplicates = []
    per_cloud: dict[str, list[int]] = defaultdict(list)
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        document = value_of(msg)
        if document["id"] in seen:
            duplicates.append(document["id"])
            continue
        seen.add(document["id"])
        per_cloud[document["subject"]].append(document["data"]["licenses_assigned"])
    assert all(seq == list(range(1, PER_CLOUD + 1)) for seq in per_cloud.values())
    # Only events after the recorded position were published twice, and no more than the
    # relay had in flight.
    assert all(expected[d] > at_kill for d in duplicates)
    assert len(duplicates) <= (MAX_IN_FLIGHT + 1) * BATCH_SIZE
