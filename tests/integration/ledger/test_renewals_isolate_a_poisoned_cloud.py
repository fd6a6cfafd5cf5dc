"""The renewal scheduler renews every due cloud although one cloud's periods cannot be computed
(a contract an older release recorded with its term starting 9999-12-16): the failing cloud is
logged, counted and parked with a growing backoff; the tick goes on with the others."""

from __future__ import annotations

from uuid import UUID

import pytest

from services.ledger.scheduler import RenewalScheduler
from tests.poisoned import record_poisoned_contract

pytestmark = pytest.mark.integration


def failures(node) -> float:
    return (
        node.registry.get_sample_value(
            "seatledger_ledger_renewal_failures_total", {"stage": "check"}
        )
        or 0.0
    )


def test_a_due_cloud_is_renewed_in_the_tick_in_which_a_poisoned_cloud_fails(ledger):
    poisoned = record_poisoned_contract(ledger.components.app, at=ledger.clock.now)
    healthy = ledger.open_cloud()["cloud_id"]  # recorded after the poisoned one
    ledger.clock.advance(days=22)  # the period [Feb 28, Mar 31) ended
    scheduler = ledger.components.scheduler
    scheduler.park_initial_s = 3600.0

    assert scheduler.run_once() == 1

    cloud = ledger.client.get(f"/v1/clouds/{healthy}", headers=ledger.owner).json()
    assert cloud["recorded_period"] == {"index": 2, "start": "2026-03-31", "end": "2026-04-30"}
    assert set(scheduler.parked) == {poisoned}
    assert failures(ledger) == 1
    assert ledger.registry.get_sample_value("seatledger_ledger_renewals_parked_clouds") == 1

    # The next month: the healthy cloud renews again; the parked one is not tried again
    # before its backoff is over.
    ledger.clock.advance(days=31)
    assert scheduler.run_once() == 1
    assert failures(ledger) == 1
    assert set(scheduler.parked) == {poisoned}


def test_a_parked_cloud_is_tried_again_after_its_backoff(ledger):
    poisoned: UUID = record_poisoned_contract(ledger.components.app, at=ledger.clock.now)
    scheduler = RenewalScheduler(
        ledger.components.service,
        observer=ledger.components.scheduler.observer,
        park_initial_s=0.0,
    )
    scheduler.run_once()
    scheduler.run_once()
    assert failures(ledger) == 2
    assert set(scheduler.parked) == {poisoned}
