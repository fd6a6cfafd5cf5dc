"""Concurrent writers never lose an update: group commit within a node, optimistic concurrency
(bounded retry, then 409) between nodes, and renewals exactly once with two schedulers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest

from services.ledger.application import ConcurrencyConflict
from services.ledger.domain import Actor

pytestmark = pytest.mark.integration


def test_fifty_concurrent_purchases_on_one_cloud_across_two_nodes_lose_nothing(ledgers, serve):
    node_a, node_b = ledgers(), ledgers()
    cloud_id = node_a.open_cloud(seats=1)["cloud_id"]
    urls = [serve(node_a.app), serve(node_b.app)]
    owner = node_a.owner

    def buy(i: int) -> list[dict]:
        """One buyer: read the seats, buy one more; retry when someone else was faster."""
        acknowledged = []
        with httpx.Client(base_url=urls[i % 2], headers=owner, timeout=60) as client:
            for _ in range(200):
                seats = client.get(f"/v1/clouds/{cloud_id}").json()["seats"]
                response = client.post(
                    f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": seats + 1}
                )
                if response.status_code == 201:
                    acknowledged.append(response.json()["purchase"])
                    break
                assert response.status_code == 409, response.text
                assert response.headers["content-type"] == "application/problem+json"
        return acknowledged

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = [p for batch in pool.map(buy, range(50)) for p in batch]

    assert len(results) == 50
    final = node_b.client.get(f"/v1/clouds/{cloud_id}", headers=owner).json()
    assert final["seats"] == 1 + sum(p["seats_added"] for p in results)
    history = node_a.client.get(f"/v1/clouds/{cloud_id}/events", headers=node_a.admin).json()
    increases = [e["data"] for e in history["events"] if e["type"].endswith("SeatsIncreased.v1")]
    assert len(increases) == len(results)
    assert sorted(e["seats_after"] for e in increases) == sorted(p["seats_after"] for p in results)
    assert len({e["seats_after"] for e in increases}) == len(increases)  # each exactly once


def _interfering_assign(node_b, cloud_id: UUID, interfere_times: int):
    """A command for node A that lets node B write to the same cloud between A's load and
    A's save, ``interfere_times`` times: A's save then loses the optimistic race."""
    calls = {"n": 0}
    lock = threading.Lock()

    def command(cloud, now):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n <= interfere_times:
            node_b.components.service.wait(
                node_b.components.service.submit_assign(
                    cloud_id, f"b-{n}", "employee", Actor("user", "owner-1")
                )
            )
        cloud.assign_license(
            user_id="a", rights_group="admin", actor=Actor("user", "owner-1"), at=now
        )
        return cloud, cloud.version

    return command, calls


def test_the_loser_of_an_optimistic_conflict_is_retried(ledgers):
    node_a, node_b = ledgers(max_attempts=3), ledgers()
    cloud_id = UUID(node_a.open_cloud(seats=5)["cloud_id"])
    command, calls = _interfering_assign(node_b, cloud_id, interfere_times=2)
    node_a.components.committer.run("assign_license", cloud_id, command)
    assert calls["n"] == 3
    cloud = node_a.components.service.get(cloud_id)
    assert set(cloud.licenses) == {"a", "b-1", "b-2"}
    text = node_a.client.get("/metrics").text
    assert "seatledger_ledger_concurrency_conflicts_total 2.0" in text


def test_after_the_bounded_retries_the_command_fails_with_a_conflict_and_records_nothing(ledgers):
    node_a, node_b = ledgers(max_attempts=3), ledgers()
    cloud_id = UUID(node_a.open_cloud(seats=5)["cloud_id"])
    command, calls = _interfering_assign(node_b, cloud_id, interfere_times=99)
    with pytest.raises(ConcurrencyConflict):
        node_a.components.committer.run("assign_license", cloud_id, command)
    assert calls["n"] == 3
    cloud = node_a.components.service.get(cloud_id)
    assert "a" not in cloud.licenses
    assert len(cloud.licenses) == 3  # node B's writes only
    text = node_a.client.get("/metrics").text
    assert (
        'seatledger_ledger_commands_total{command="assign_license",outcome="conflict"} 1.0' in text
    )


def test_two_schedulers_renew_every_missed_period_exactly_once(ledgers):
    node_a, node_b = ledgers(), ledgers()
    clouds = [node_a.open_cloud(seats=2)["cloud_id"] for _ in range(5)]
    # Three months of downtime: Mar 31, Apr 30 and May 31 periods are due on Jun 2.
    node_a.clock.now = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
    barrier = threading.Barrier(2)

    def tick(node):
        barrier.wait()
        return node.components.scheduler.run_once()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(tick, (node_a, node_b)))
    for cloud_id in clouds:
        events = node_a.client.get(f"/v1/clouds/{cloud_id}/events", headers=node_a.admin).json()
        renewals = [e["data"] for e in events["events"] if e["type"].endswith("PeriodRenewed.v1")]
        assert [r["period_index"] for r in renewals] == [2, 3, 4]
        assert [r["period"]["start"] for r in renewals] == [
            "2026-03-31",
            "2026-04-30",
            "2026-05-31",
        ]
    # Running again renews nothing more.
    assert node_a.components.scheduler.run_once() == 0
    assert node_b.components.scheduler.run_once() == 0
