"""While the ledger's PostgreSQL refuses connections, the renewal scheduler's tick parks no
cloud and counts no failed renewal: an outage is not the clouds' failure. Once the database is
back, the next tick renews every due cloud at once (not after a parking backoff)."""

from __future__ import annotations

from uuid import UUID

import pytest

from tests.integration.ledger.conftest import LedgerFactory
from tests.outages import set_connections

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_outage_parks_no_cloud_and_the_due_clouds_renew_once_the_database_is_back(
    ledgers: LedgerFactory,
    database_url: str,
    postgres_admin_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fail fast while the database refuses connections (the event store retries 10 times).
    node = ledgers(env_overrides={"POSTGRES_CONNECT_TIMEOUT": "1"})
    clouds = [node.open_cloud()["cloud_id"], node.open_cloud()["cloud_id"]]
    node.clock.advance(days=22)  # the period [Feb 28, Mar 31) ended for both
    scheduler = node.components.scheduler
    dbname = database_url.rsplit("/", 1)[1]

    # A whole tick in the outage, then one whose outage starts after the clouds were listed
    # (the database goes away in the middle of a tick).
    set_connections(postgres_admin_url, dbname, allowed=False)
    try:
        assert scheduler.run_once() == 0
    finally:
        set_connections(postgres_admin_url, dbname, allowed=True)
    index = node.components.service.index
    list_clouds = index.all

    def listed_then_cut() -> list[UUID]:
        listed = list(list_clouds())
        set_connections(postgres_admin_url, dbname, allowed=False)
        return listed

    monkeypatch.setattr(index, "all", listed_then_cut)
    try:
        assert scheduler.run_once() == 0
    finally:
        set_connections(postgres_admin_url, dbname, allowed=True)
        monkeypatch.undo()

    assert scheduler.parked == {}
    for stage in ("check", "renew"):
        counted = node.registry.get_sample_value(
            "seatledger_ledger_renewal_failures_total", {"stage": stage}
        )
        assert not counted
    assert scheduler.run_once() == 2
    for cloud_id in clouds:
        cloud = node.client.get(f"/v1/clouds/{cloud_id}", headers=node.owner).json()
        assert cloud["recorded_period"]["index"] == 2
