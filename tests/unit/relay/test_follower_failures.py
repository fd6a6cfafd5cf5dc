"""The notification-log follower under failures: a notification that keeps failing for a reason
of its own is dead-lettered after the policy's attempts and the log goes on; an outage is
retried for as long as it takes and dead-letters nothing; a follower whose notification keeps
failing reports itself stuck until it recovers. Upstream and downstream are real eventsourcing
applications in memory."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from schemas.envelope import CloudEvent
from seatledger.consumer import ATTEMPTS_EXHAUSTED_REASON, ConsumerMetrics, DeadLetter, RetryPolicy
from seatledger.follower import JsonLinesDeadLetters, NotificationLogFollower
from seatledger.tracking import Position
from services.invoicer.application import InvoicerApplication
from services.invoicer.handlers import LedgerEventHandler
from services.ledger.application import Ledger
from services.ledger.contract import to_cloud_event
from services.ledger.domain import Actor, Cloud
from tests.poisoned import record_poisoned_contract
from tests.unit.ledger.builders import terms

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
AT = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
FAST = RetryPolicy(initial_s=0.001, max_s=0.002, max_attempts=4, stuck_after_s=3600)


def open_healthy_cloud(ledger: Ledger, *, buy_to: int | None = None) -> uuid.UUID:
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(),
        terms=terms(term_start=date(2026, 1, 31)),
        seats=3,
        actor=Actor("user", "owner-1"),
        at=AT,
    )
    if buy_to is not None:
        cloud.increase_seats(seats=buy_to, actor=Actor("user", "owner-1"), at=AT)
    ledger.save(cloud)
    return cloud.id


class Recording:
    """A downstream application whose handler records positions and fails as scripted."""

    def __init__(self, fail: Any = None) -> None:
        self.app = InvoicerApplication(POPO)
        self.fail = fail
        self.handled: list[int] = []
        self.calls = 0

    def __call__(self, cloud_event: CloudEvent, data: Any, position: Position) -> None:
        self.calls += 1
        if self.fail is not None:
            error = self.fail(position, self.calls)
            if error is not None:
                raise error
        self.app.save_tracked(position)
        self.handled.append(position.offset)


def follower_of(
    ledger: Ledger,
    downstream: Recording,
    letters: list[DeadLetter],
    registry: CollectorRegistry,
    retry: RetryPolicy = FAST,
) -> NotificationLogFollower:
    return NotificationLogFollower(
        ledger,
        "ledger",
        to_cloud_event,
        downstream,
        downstream.app.position,
        on_skipped=downstream.app.save_tracked,
        dead_letters=letters.append,
        name="test",
        registry=registry,
        retry=retry,
    )


def test_a_notification_failing_for_its_own_reason_is_dead_lettered_after_the_attempts() -> None:
    ledger = Ledger(env=POPO)
    open_healthy_cloud(ledger)
    open_healthy_cloud(ledger)
    open_healthy_cloud(ledger)
    downstream = Recording(
        fail=lambda position, _calls: ValueError("cannot") if position.offset == 2 else None
    )
    letters: list[DeadLetter] = []
    registry = CollectorRegistry()
    follower = follower_of(ledger, downstream, letters, registry)

    assert follower.catch_up(timeout_s=10) == 3
    assert downstream.handled == [1, 3]
    assert downstream.calls == 2 + FAST.max_attempts
    assert [(letter.reason, letter.position.offset) for letter in letters] == [
        (ATTEMPTS_EXHAUSTED_REASON, 2)
    ]
    assert "ValueError('cannot')" in letters[0].error
    assert downstream.app.position("ledger") == 3  # the dead letter's position is recorded
    dead = registry.get_sample_value(
        "seatledger_consumer_dead_lettered_total",
        {"consumer": "test", "reason": ATTEMPTS_EXHAUSTED_REASON},
    )
    assert dead == 1


def test_an_outage_is_retried_past_the_attempts_and_never_dead_letters() -> None:
    ledger = Ledger(env=POPO)
    open_healthy_cloud(ledger)
    outage_calls = 3 * FAST.max_attempts
    downstream = Recording(
        fail=lambda _position, calls: (
            psycopg.OperationalError("server closed the connection")
            if calls <= outage_calls
            else None
        )
    )
    letters: list[DeadLetter] = []
    follower = follower_of(ledger, downstream, letters, CollectorRegistry())

    assert follower.catch_up(timeout_s=10) == 1
    assert downstream.handled == [1]
    assert downstream.calls == outage_calls + 1
    assert letters == []


def test_a_poisoned_contract_in_the_ledger_does_not_stop_invoicing_another_cloud(
    tmp_path: Path,
) -> None:
    ledger = Ledger(env=POPO)
    poisoned = record_poisoned_contract(ledger, at=AT)
    healthy = open_healthy_cloud(ledger, buy_to=5)
    invoicer = InvoicerApplication(POPO, clock=lambda: AT)
    sink = JsonLinesDeadLetters(tmp_path / "dead-letters" / "invoicer.jsonl")
    follower = NotificationLogFollower(
        ledger,
        "ledger",
        to_cloud_event,
        LedgerEventHandler(invoicer),
        invoicer.position,
        on_skipped=invoicer.save_tracked,
        dead_letters=sink,
        name="invoicer",
        registry=CollectorRegistry(),
        retry=FAST,
    )

    follower.catch_up(timeout_s=10)

    (invoice,) = invoicer.invoices_of_cloud(healthy)
    assert invoice.kind == "seat_purchase"
    assert invoicer.invoices_of_cloud(poisoned) == []
    (letter,) = sink.read()
    assert letter["reason"] == ATTEMPTS_EXHAUSTED_REASON
    assert letter["position"] == 1
    assert "year 10000 is out of range" in letter["error"]
    assert letter["key"] == str(poisoned)
    assert "9999-12-16" in letter["value"]  # the stored event, kept for a later replay


def test_a_follower_whose_notification_keeps_failing_is_stuck_until_it_recovers() -> None:
    ledger = Ledger(env=POPO)
    open_healthy_cloud(ledger)
    healthy = threading.Event()
    downstream = Recording(
        fail=lambda *_: None if healthy.is_set() else psycopg.OperationalError("down")
    )
    registry = CollectorRegistry()
    retry = RetryPolicy(initial_s=0.001, max_s=0.001, stuck_after_s=0.05)
    follower = follower_of(ledger, downstream, [], registry, retry)
    consumers = ConsumerMetrics.of(registry)

    assert follower.poll_once() == 0
    assert consumers.healthy("test")  # failing, but not for long yet
    threading.Event().wait(0.1)
    assert follower.poll_once() == 0
    assert follower.stuck
    assert not consumers.healthy("test")
    assert registry.get_sample_value("seatledger_consumer_stuck", {"consumer": "test"}) == 1

    healthy.set()
    assert follower.poll_once() == 1
    assert not follower.stuck
    assert consumers.healthy("test")
    assert registry.get_sample_value("seatledger_consumer_stuck", {"consumer": "test"}) == 0


@pytest.mark.parametrize("raw", [b"\xff\xfe binary", b'{"text": true}'])
def test_the_dead_letter_file_keeps_any_value(tmp_path: Path, raw: bytes) -> None:
    sink = JsonLinesDeadLetters(tmp_path / "letters.jsonl")
    sink(DeadLetter("attempts_exhausted", "boom", Position("ledger", 7), b"key", raw))
    (record,) = sink.read()
    assert record["position"] == 7
    assert record["source"] == "ledger"
    assert record.get("value") == raw.decode() if raw.startswith(b"{") else record["value_base64"]
