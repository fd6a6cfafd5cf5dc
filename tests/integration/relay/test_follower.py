"""The embedded default's follower: an upstream notification log read directly, through the same
contract mapping and handler, with the same tracking as the Kafka consumer."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from schemas._base import EventData
from schemas.envelope import CloudEvent
from schemas.ledger import LicenseAssigned
from seatledger.consumer import DeadLetter, PoisonMessage, RetryPolicy
from seatledger.follower import NotificationLogFollower
from seatledger.tracking import Position
from tests.integration.relay.support import (
    Desk,
    DeskApp,
    TallyApp,
    assign_many,
    desk_app,
    tally_app,
    to_cloud_event,
)

pytestmark = pytest.mark.integration

FAST = RetryPolicy(initial_s=0.01, max_s=0.05)


class Recorder:
    """A handler over a tally store that can be told to fail."""

    def __init__(self, sink: TallyApp, failures: int = 0) -> None:
        self.sink = sink
        self.failures = failures
        self.calls = 0
        self.processed: list[str] = []

    def __call__(self, cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        self.calls += 1
        assert isinstance(data, LicenseAssigned)
        if self.failures:
            self.failures -= 1
            raise OSError("the store is briefly unavailable")
        if data.user_id == "poison-me":
            raise PoisonMessage("cannot be licensed")
        if self.sink.record(cloud_event, position):
            self.processed.append(cloud_event.id)


def _published(upstream: DeskApp) -> list[CloudEvent]:
    events = []
    for notification in upstream.recorder.select_notifications(start=None, limit=100_000):
        cloud_event = to_cloud_event(upstream.mapper.to_domain_event(notification))
        if cloud_event is not None:
            events.append(cloud_event)
    return events


def _follower(upstream: DeskApp, handler: Recorder, letters: list[DeadLetter], **options):
    return NotificationLogFollower(
        upstream,
        "desks",
        to_cloud_event,
        handler,
        handler.sink.position,
        on_skipped=handler.sink.save_tracked,
        dead_letters=letters.append,
        batch_size=7,
        retry=FAST,
        **options,
    )


def test_the_follower_hands_every_published_event_once_and_tracks_the_unpublished_too(
    tmp_path: Path,
) -> None:
    upstream = desk_app(f"sqlite:///{tmp_path}/upstream/", tmp_path)
    desks = [Desk(100) for _ in range(5)]
    upstream.save(*desks)
    assign_many(upstream, desks, 4)
    desks[0].note("internal")
    upstream.save(desks[0])
    handler = Recorder(tally_app(f"sqlite:///{tmp_path}/sink/", tmp_path))
    letters: list[DeadLetter] = []
    registry = CollectorRegistry()

    handled = _follower(upstream, handler, letters, registry=registry, name="f").catch_up()

    head = upstream.recorder.max_notification_id()
    assert handled == head == 5 + 20 + 1
    assert handler.processed == [e.id for e in _published(upstream)]
    assert handler.sink.position("desks") == head  # the last one is an internal event
    assert letters == []
    for desk in desks:
        assert handler.sink.seen(str(desk.id)) == [
            e.id for e in _published(upstream) if e.subject == str(desk.id)
        ]
    assert (
        registry.get_sample_value(
            "seatledger_consumer_position", {"consumer": "f", "source": "desks"}
        )
        == head
    )

    # A restart resumes after the stored position: nothing twice.
    assign_many(upstream, desks[:1], 1)
    again = Recorder(handler.sink)
    assert _follower(upstream, again, letters).catch_up() == 1
    assert len(again.processed) == 1


def test_a_poison_event_goes_to_the_dead_letters_and_a_transient_error_is_retried(
    tmp_path: Path,
) -> None:
    upstream = desk_app(f"sqlite:///{tmp_path}/upstream/", tmp_path)
    desk = Desk(100)
    desk.assign("u-1")
    desk.assign("poison-me")
    desk.assign("u-3")
    upstream.save(desk)
    handler = Recorder(tally_app(f"sqlite:///{tmp_path}/sink/", tmp_path), failures=3)
    letters: list[DeadLetter] = []

    _follower(upstream, handler, letters).catch_up()

    published = _published(upstream)
    assert handler.processed == [published[0].id, published[2].id]
    assert [(letter.reason, letter.position.offset) for letter in letters] == [("poison", 3)]
    assert letters[0].value == published[1].to_json_bytes()
    assert handler.sink.position("desks") == 4
    assert handler.calls == 3 + 3


def test_the_follower_reads_across_gaps_in_postgres_notification_ids(
    postgres_url: str, tmp_path: Path
) -> None:
    upstream = desk_app(postgres_url, tmp_path)
    desks = [Desk(100) for _ in range(3)]
    upstream.save(*desks)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('desks.desks_events', 'notification_id'), 50)"
        )
    assign_many(upstream, desks, 2)
    handler = Recorder(tally_app(postgres_url, tmp_path))

    _follower(upstream, handler, []).catch_up()

    assert handler.processed == [e.id for e in _published(upstream)]
    assert handler.sink.position("desks") == upstream.recorder.max_notification_id() == 56
