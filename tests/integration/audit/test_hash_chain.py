"""The hash chain over a real event store detects what was changed, removed or inserted after
it was chained, and a chain rewritten together with its events no longer matches a published
checkpoint. Run against the embedded SQLite and the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from seatledger.audit.chain import (
    ChainKeeper,
    JsonLinesPublisher,
    event_digest,
    link_rows,
    read_checkpoint_file,
    verify,
)
from seatledger.audit.store import StoredRow, open_store
from seatledger.persistence import application_env, ensure_postgres_schema
from tests.integration.audit.tamper import execute

pytestmark = pytest.mark.integration


class Counter(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.count += by


class Counters(Application[UUID]):
    name = "ledger"


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = application_env(database_url, "ledger", tmp_path / "data")
    ensure_postgres_schema(env)
    return env


def _fill(env: dict[str, str], aggregates: int = 20, increments: int = 9) -> list[UUID]:
    app = Counters(env=env)
    ids = []
    for n in range(aggregates):
        counter = Counter(name=f"c{n}")
        for i in range(increments):
            counter.increment(i)
        app.save(counter)
        ids.append(counter.id)
    app.close()
    return ids


@pytest.fixture
def chained(database_url: str, tmp_path: Path):
    env = _env(database_url, tmp_path)
    ids = _fill(env)
    store = open_store(env, "ledger")
    keeper = ChainKeeper(store, batch=37, publish=JsonLinesPublisher(tmp_path / "published.jsonl"))
    assert keeper.extend() == 200
    yield env, ids, store, keeper
    store.close()


def test_an_untouched_history_verifies_and_matches_its_checkpoint(chained, tmp_path: Path):
    _env, _ids, store, _keeper = chained
    report = verify(store, checkpoints=read_checkpoint_file(tmp_path / "published.jsonl"))
    assert report.ok, report.findings
    assert report.events_checked == 200
    assert report.chained == 200
    assert report.recomputed_head == report.chain_head
    assert report.last_checkpoint is not None
    assert report.last_checkpoint.position == store.max_notification_id()
    assert report.last_checkpoint_matches is True


def test_extend_chains_only_new_events_and_is_idempotent(chained, tmp_path: Path):
    env, _ids, store, keeper = chained
    assert keeper.extend() == 0
    _fill(env, aggregates=3, increments=1)
    assert keeper.extend() == 6
    assert keeper.extend() == 0
    # A second keeper on the same store finds nothing to do.
    other = ChainKeeper(open_store(env, "ledger"))
    assert other.extend() == 0
    other.close()
    report = verify(store)
    assert report.ok, report.findings
    assert report.chained == 206


def test_the_chain_is_the_same_when_recomputed_in_one_go(chained):
    _env, _ids, store, _keeper = chained
    rows = list(store.iter_events())
    links = link_rows("ledger", None, rows)
    head, count = store.chain_head()
    assert head is not None
    assert count == len(links)
    assert links[-1].chain_hash == head.chain_hash
    assert all(
        link.event_digest == event_digest(row) for link, row in zip(links, rows, strict=True)
    )


def test_a_changed_event_payload_is_named(chained):
    env, ids, store, _keeper = chained
    target = store.events_of(str(ids[7]))[4]
    forged = target.state.replace(b'"by":3', b'"by":30')
    assert forged != target.state
    execute(
        env,
        "ledger",
        "UPDATE {events} SET state = %s WHERE {id} = %s",
        (forged, target.notification_id),
    )
    report = verify(store)
    assert not report.ok
    first = report.first
    assert first is not None
    assert first.kind == "changed"
    assert first.notification_id == target.notification_id
    assert first.originator_id == str(ids[7])
    assert first.originator_version == target.originator_version
    assert "Incremented" in first.message


def test_a_removed_event_is_named(chained):
    env, ids, store, _keeper = chained
    target = store.events_of(str(ids[3]))[9]
    execute(env, "ledger", "DELETE FROM {events} WHERE {id} = %s", (target.notification_id,))
    report = verify(store)
    # The event is named; the stored checkpoint after it no longer matches either.
    assert [f.kind for f in report.findings] == ["removed", "checkpoint-mismatch"]
    assert report.first is not None
    assert report.first.notification_id == target.notification_id
    assert report.first.originator_version == target.originator_version


def test_an_event_deleted_and_forged_under_the_same_id_is_named_as_changed(chained):
    env, ids, store, _keeper = chained
    target = store.events_of(str(ids[5]))[2]
    execute(env, "ledger", "DELETE FROM {events} WHERE {id} = %s", (target.notification_id,))
    forged_state = target.state.replace(b'"by":1', b'"by":100')
    assert forged_state != target.state
    _insert(
        env, target.notification_id, ids[5], target.originator_version, target.topic, forged_state
    )
    report = verify(store)
    assert report.first is not None
    assert report.first.kind == "changed"
    assert report.first.notification_id == target.notification_id


def _insert(env, notification_id, aggregate_id, version, topic, state) -> None:
    sqlite = env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    execute(
        env,
        "ledger",
        "INSERT INTO {events} ({id}, originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s, %s)",
        (notification_id, aggregate_id.hex if sqlite else aggregate_id, version, topic, state),
    )


def test_an_event_inserted_below_the_chain_head_is_named(chained):
    env, ids, store, _keeper = chained
    # Free a notification id below the head by deleting an event, re-chain from scratch over
    # the store with the gap, then insert a forged event into the gap.
    target = store.events_of(str(ids[11]))[6]
    execute(env, "ledger", "DELETE FROM {events} WHERE {id} = %s", (target.notification_id,))
    execute(env, "ledger", "DELETE FROM {chain}")
    execute(env, "ledger", "DELETE FROM {checkpoints}")
    fresh = ChainKeeper(open_store(env, "ledger"))
    assert fresh.extend() == 199
    fresh.close()
    assert verify(store).ok
    _insert(env, target.notification_id, ids[11], 1000, target.topic, target.state)
    report = verify(store)
    assert [f.kind for f in report.findings] == ["inserted", "checkpoint-mismatch"]
    assert report.first is not None
    assert report.first.notification_id == target.notification_id
    assert report.first.originator_version == 1000


def test_a_chain_rewritten_with_its_events_fails_the_published_checkpoint(chained, tmp_path: Path):
    env, ids, store, _keeper = chained
    published = read_checkpoint_file(tmp_path / "published.jsonl", "ledger")
    assert published
    target = store.events_of(str(ids[0]))[1]
    forged = target.state.replace(b'"by":0', b'"by":5')
    assert forged != target.state
    execute(
        env,
        "ledger",
        "UPDATE {events} SET state = %s WHERE {id} = %s",
        (forged, target.notification_id),
    )
    # Whoever holds the database also rebuilds the chain and its stored checkpoints.
    execute(env, "ledger", "DELETE FROM {chain}")
    execute(env, "ledger", "DELETE FROM {checkpoints}")
    forger = ChainKeeper(open_store(env, "ledger"))
    forger.extend()
    forger.checkpoint()
    forger.close()
    assert verify(store).ok  # consistent in itself...
    report = verify(store, checkpoints=published)  # ...but not with what was published
    assert not report.ok
    assert report.first is not None
    assert report.first.kind == "checkpoint-mismatch"
    assert report.last_checkpoint_matches is False


def test_a_truncated_history_is_reported_against_the_checkpoint(chained, tmp_path: Path):
    env, _ids, store, _keeper = chained
    published = read_checkpoint_file(tmp_path / "published.jsonl", "ledger")
    last = store.max_notification_id()
    execute(env, "ledger", "DELETE FROM {events} WHERE {id} > %s", (last - 5,))
    execute(env, "ledger", "DELETE FROM {chain} WHERE {id} > %s", (last - 5,))
    execute(env, "ledger", "DELETE FROM {checkpoints}")
    report = verify(store, checkpoints=published)
    assert "truncated" in [f.kind for f in report.findings]


def test_an_edited_chain_row_is_reported(chained):
    env, ids, store, _keeper = chained
    target = store.events_of(str(ids[2]))[0]
    execute(
        env,
        "ledger",
        "UPDATE {chain} SET chain_hash = %s WHERE {id} = %s",
        (b"\x00" * 32, target.notification_id),
    )
    report = verify(store)
    assert report.first is not None
    assert report.first.kind == "chain-broken"
    assert report.first.notification_id == target.notification_id


def test_digest_covers_every_field():
    row = StoredRow(7, "00000000-0000-0000-0000-000000000001", 3, "t:T", b"{}")
    variants = [
        StoredRow(8, row.originator_id, 3, "t:T", b"{}"),
        StoredRow(7, "00000000-0000-0000-0000-000000000002", 3, "t:T", b"{}"),
        StoredRow(7, row.originator_id, 4, "t:T", b"{}"),
        StoredRow(7, row.originator_id, 3, "t:U", b"{}"),
        StoredRow(7, row.originator_id, 3, "t:T", b"{ }"),
    ]
    assert len({event_digest(v) for v in [row, *variants]}) == 6
