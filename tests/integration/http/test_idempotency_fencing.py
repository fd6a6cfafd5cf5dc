"""Idempotency keys fenced by their owner, judged on the database's clock, in the real
databases: a key whose process still beats is never taken over, a process whose key was taken
over changes nothing when it settles, a node whose clock is off is still seen alive, and a
claim whose answer the database never sent leaves no key in flight."""

from __future__ import annotations

import contextlib
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import structlog

from seatledger.http import IdempotencyStore, SqlDatabase
from seatledger.http.idempotency import StoredResponse
from tests.integration.http.conftest import claiming_process
from tests.outages import set_connections


def _store(env: dict[str, str], **timing: float) -> IdempotencyStore:
    store = IdempotencyStore(SqlDatabase(env), **timing)
    store.create_table()
    return store


@pytest.fixture
def stores(store_env: dict[str, str]) -> Iterator[list[IdempotencyStore]]:
    """Stores of several processes on one database (each its own instance and heartbeat),
    closed after the test."""
    opened: list[IdempotencyStore] = []
    yield opened
    for store in opened:
        store.stop()
        store.db.close()


def test_a_key_whose_owner_still_beats_is_never_taken_over(store_env, stores):
    timing = {"stale_after_s": 1.0, "heartbeat_interval_s": 0.3}
    owner, other = _store(store_env, **timing), _store(store_env, **timing)
    stores.extend((owner, other))
    assert owner.claim("owner-1", "k-long", "fp").outcome == "new"
    time.sleep(2.5)  # past stale_after_s, while the owner beats
    assert other.claim("owner-1", "k-long", "fp").outcome == "in_flight"
    assert owner.claim("owner-1", "k-long", "fp").outcome == "in_flight"
    owner.complete("owner-1", "k-long", StoredResponse(201, [], b"first"))
    replay = other.claim("owner-1", "k-long", "fp")
    assert replay.outcome == "replay"
    assert replay.response == StoredResponse(201, [], b"first")


def test_a_displaced_owner_neither_stores_an_answer_nor_releases_the_key(store_env, stores):
    timing = {"stale_after_s": 1.0, "heartbeat_interval_s": 0.3}
    displaced = _store(store_env, **timing)
    taker = _store(store_env, **timing, dead_after_s=1.0)  # quick to judge the paused one
    third = _store(store_env, **timing)
    stores.extend((displaced, taker, third))
    assert displaced.claim("owner-1", "k-fenced", "fp").outcome == "new"
    displaced.stop()  # paused: no heartbeat any more, yet it will wake up and settle
    deadline = time.monotonic() + 10
    outcome = taker.claim("owner-1", "k-fenced", "fp").outcome
    while outcome == "in_flight" and time.monotonic() < deadline:
        time.sleep(0.2)
        outcome = taker.claim("owner-1", "k-fenced", "fp").outcome
    assert outcome == "new"
    with structlog.testing.capture_logs() as logged:
        displaced.release("owner-1", "k-fenced")
        # Still the taker's: a third run of the request is refused.
        assert third.claim("owner-1", "k-fenced", "fp").outcome == "in_flight"
        displaced.complete("owner-1", "k-fenced", StoredResponse(409, [], b"stale answer"))
        assert third.claim("owner-1", "k-fenced", "fp").outcome == "in_flight"
    ignored = [e for e in logged if e["event"] == "idempotency_settle_ignored"]
    assert [e["action"] for e in ignored] == ["release", "complete"]
    taker.complete("owner-1", "k-fenced", StoredResponse(201, [], b"taker's answer"))
    replay = third.claim("owner-1", "k-fenced", "fp")
    assert replay.response == StoredResponse(201, [], b"taker's answer")


def test_a_late_release_of_an_earlier_claim_leaves_a_later_claim_in_flight(store_env, stores):
    store, other = _store(store_env), _store(store_env)
    stores.extend((store, other))
    # A claim whose outcome the process never learnt, then released ...
    assert store.claim("owner-1", "k-again", "fp", claim_id="first").claim_id == "first"
    store.release("owner-1", "k-again", "first")
    # ... and the retry's claim, in the same process.
    assert store.claim("owner-1", "k-again", "fp", claim_id="retry").outcome == "new"
    # The first claim's release, retried in the background, arrives late.
    store.release_in_background("owner-1", "k-again", "first")
    store.release("owner-1", "k-again", "first")
    time.sleep(0.5)
    assert other.claim("owner-1", "k-again", "fp").outcome == "in_flight"
    store.complete("owner-1", "k-again", StoredResponse(201, [], b"retry"), "retry")
    assert other.claim("owner-1", "k-again", "fp").response == StoredResponse(201, [], b"retry")


def test_a_key_that_names_no_process_is_freed_after_stale_after_s(store_env, stores):
    store = _store(store_env, stale_after_s=60.0)
    stores.append(store)
    table = store.db.table("idempotency_keys")
    for key, age in (("k-old", 120.0), ("k-young", 10.0)):
        store.db.execute(
            f"INSERT INTO {table} (principal, key, fingerprint, state, created_at)"
            " VALUES (?, ?, ?, 'pending', ?)",
            ("owner-1", key, "fp", store.db.now() - age),
        )
    assert store.claim("owner-1", "k-old", "fp").outcome == "new"
    assert store.claim("owner-1", "k-young", "fp").outcome == "in_flight"


SKEWED_CLAIMER = textwrap.dedent(
    """
    import json, sys, time
    real_time = time.time
    time.time = lambda: real_time() - 3600.0  # this host's clock is an hour behind
    from seatledger.http import IdempotencyStore, SqlDatabase
    store = IdempotencyStore(SqlDatabase(json.loads(sys.argv[1])), heartbeat_interval_s=0.5)
    print(store.claim("owner-1", "k-skew", "fp").outcome, flush=True)
    time.sleep(600)
    """
)


def test_a_live_owner_whose_clock_is_off_is_not_taken_for_dead(store_env, stores):
    judge = _store(store_env)
    stores.append(judge)
    with claiming_process(SKEWED_CLAIMER, store_env):
        time.sleep(1.5)  # a few heartbeats, each dated an hour ago by its host's clock
        assert judge.claim("owner-1", "k-skew", "fp").outcome == "in_flight"
        # What it wrote is the database's time, not its own.
        rows, _ = judge.db.execute(
            f"SELECT k.created_at, h.heartbeat_at FROM {judge.db.table('idempotency_keys')}"
            f" AS k JOIN {judge.db.table('idempotency_instances')} AS h"
            " ON h.instance = k.instance WHERE k.key = ?",
            ("k-skew",),
        )
        now = judge.db.now()
        created_at, heartbeat_at = (float(value) for value in rows[0])
        assert now - 10 <= created_at <= now
        assert now - 5 <= heartbeat_at <= now + 0.1


class CuttingRelay:
    """A TCP relay to PostgreSQL. Once armed, it lets the next statement containing ``marker``
    reach the server, holds back the server's answer and then cuts the connection, as a
    network failure right after a commit does."""

    def __init__(self, host: str, port: int, marker: bytes) -> None:
        self.target = (host, port)
        self.marker = marker
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.withheld = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            cutting = threading.Event()
            pair = (client, server)
            threading.Thread(target=self._up, args=(pair, cutting), daemon=True).start()
            threading.Thread(target=self._down, args=(pair, cutting), daemon=True).start()

    def _up(self, pair: tuple[socket.socket, socket.socket], cutting: threading.Event) -> None:
        client, server = pair
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and self.marker in data:
                    self.armed.clear()
                    cutting.set()
                    server.sendall(data)
                    time.sleep(1.0)  # the server runs and commits the statement
                    self.cut.set()
                    break
                server.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client, server)

    def _down(self, pair: tuple[socket.socket, socket.socket], cutting: threading.Event) -> None:
        client, server = pair
        try:
            while data := server.recv(65536):
                if cutting.is_set():
                    self.withheld += data
                    continue
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client, server)


def _shut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_a_claim_whose_answer_was_lost_is_answered_503_and_leaves_the_key_free(
    serve, postgres_url, tmp_path, monkeypatch
):
    from seatledger.persistence import application_env, ensure_postgres_schema

    # The relay reads the protocol in clear.
    monkeypatch.setenv("PGSSLMODE", "disable")
    monkeypatch.setenv("PGGSSENCMODE", "disable")
    env: dict[str, Any] = application_env(postgres_url, "ledger", tmp_path)
    ensure_postgres_schema(env)
    relay = CuttingRelay(env["POSTGRES_HOST"], int(env["POSTGRES_PORT"]), b'"idempotency_keys" (')
    try:
        served = serve({**env, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(relay.port)})
        url = f"{served.url}/v1/things"
        token = served.token("owner-1")
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-lost"}
        relay.armed.set()
        first = httpx.post(url, content=b'{"seats": 3}', headers=headers, timeout=30)
        assert relay.cut.is_set()
        assert b"INSERT 0 1" in relay.withheld  # the claim committed; its answer never came
        assert first.status_code == 503, first.text
        assert first.headers["content-type"] == "application/problem+json"
        assert served.recorder.calls == []
        # The retry runs the request at once instead of 409 "in progress" under a live process.
        deadline = time.monotonic() + 10
        retry = httpx.post(url, content=b'{"seats": 3}', headers=headers, timeout=30)
        while retry.status_code == 409 and time.monotonic() < deadline:
            time.sleep(0.25)
            retry = httpx.post(url, content=b'{"seats": 3}', headers=headers, timeout=30)
        assert retry.status_code == 201, retry.text
        assert len(served.recorder.calls) == 1
    finally:
        relay.close()


@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_after_an_outage_of_the_database_a_live_owner_keeps_its_key(
    store_env, stores, postgres_admin_url, postgres_url
):
    # Nobody can beat while the database is away; once it is back, an old heartbeat says
    # nothing: another process judges the owner only after beating for dead_after_s itself.
    # The owner beats seldom, so the other's first claim after the outage comes before the
    # owner's first beat.
    owner = _store(store_env, heartbeat_interval_s=2.0, dead_after_s=2.0)
    other = _store(store_env, heartbeat_interval_s=0.3, dead_after_s=2.0)
    stores.extend((owner, other))
    assert owner.claim("owner-1", "k-outage", "fp").outcome == "new"
    assert other.claim("owner-1", "k-outage", "fp").outcome == "in_flight"  # beats from now
    dbname = postgres_url.rsplit("/", 1)[1]
    set_connections(postgres_admin_url, dbname, allowed=False)
    try:
        time.sleep(3.0)  # longer than dead_after_s: every heartbeat row is old now
    finally:
        set_connections(postgres_admin_url, dbname, allowed=True)
    deadline = time.monotonic() + 10
    while True:  # the first claim that reaches the database again
        try:
            outcome = other.claim("owner-1", "k-outage", "fp").outcome
            break
        except Exception:
            assert time.monotonic() < deadline, "the database did not come back"
            time.sleep(0.1)
    assert outcome == "in_flight"
    time.sleep(2.5)  # both beat again: the owner is seen alive
    assert other.claim("owner-1", "k-outage", "fp").outcome == "in_flight"
    owner.complete("owner-1", "k-outage", StoredResponse(201, [], b"first"))
    replay = other.claim("owner-1", "k-outage", "fp")
    assert replay.outcome == "replay"
    assert replay.response == StoredResponse(201, [], b"first")


@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_a_process_starting_while_the_keys_are_read_does_not_wait_for_the_readers(
    store_env, stores, postgres_url
):
    first = _store(store_env)
    stores.append(first)
    with psycopg.connect(postgres_url) as reader:  # a long read (a report, a backup)
        reader.execute(f"SELECT count(*) FROM {first._table}")  # holds its lock till the end
        started = threading.Thread(target=lambda: stores.append(_store(store_env)), daemon=True)
        started.start()
        started.join(10)
        assert not started.is_alive(), "the new process waited for the reader's transaction"
        reader.rollback()


def test_kept_answers_are_forgotten_after_their_time_and_keys_in_flight_never(store_env, stores):
    store = _store(store_env, keep_answers_s=1.0)
    stores.append(store)
    assert store.claim("owner-1", "k-old", "fp").outcome == "new"
    store.complete("owner-1", "k-old", StoredResponse(201, [], b"first"))
    assert store.claim("owner-1", "k-busy", "fp").outcome == "new"  # stays in flight
    assert store.prune() == 0  # both younger than their time
    time.sleep(1.5)
    assert store.prune() == 1
    assert store.claim("owner-1", "k-old", "other").outcome == "new"  # free again
    assert store.claim("owner-1", "k-busy", "fp").outcome == "in_flight"
