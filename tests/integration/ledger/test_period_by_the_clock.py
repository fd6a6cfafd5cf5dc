"""Reads show the billing period by the clock: a renewal that is due but not recorded yet is
shown as pending, with the period, seats and reduction it will bring; reading records nothing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_a_due_renewal_is_shown_pending_and_reading_records_nothing(ledger):
    cloud_id = ledger.open_cloud(seats=5)["cloud_id"]
    reduce = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-reductions", json={"seats": 3}, headers=ledger.owner
    )
    assert reduce.status_code == 201, reduce.text
    ledger.clock.advance(days=22)  # 2026-04-01 in Berlin: the period [Feb 28, Mar 31) ended
    before = ledger.event_count()

    cloud = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=ledger.owner).json()
    assert cloud["renewal_pending"] is True
    assert cloud["current_period"] == {"index": 2, "start": "2026-03-31", "end": "2026-04-30"}
    assert cloud["recorded_period"] == {"index": 1, "start": "2026-02-28", "end": "2026-03-31"}
    assert (cloud["seats"], cloud["licenses_free"], cloud["scheduled_reduction"]) == (3, 3, None)
    assert cloud["version"] == 2  # opened, reduction scheduled

    overview = ledger.client.get("/v1/owners/owner-1/clouds", headers=ledger.owner).json()
    (listed,) = overview["clouds"]
    assert listed["current_period"] == cloud["current_period"]
    assert (listed["renewal_pending"], listed["seats"]) == (True, 3)
    assert ledger.event_count() == before

    ledger.components.scheduler.run_once()
    renewed = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=ledger.owner).json()
    assert renewed["renewal_pending"] is False
    assert renewed["current_period"] == renewed["recorded_period"] == cloud["current_period"]
    assert (renewed["seats"], renewed["version"]) == (3, 3)


def test_several_missed_periods_show_the_period_containing_today(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    ledger.clock.advance(days=100)  # 2026-06-18
    cloud = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=ledger.owner).json()
    assert cloud["current_period"] == {"index": 4, "start": "2026-05-31", "end": "2026-06-30"}
    assert cloud["renewal_pending"] is True


def test_as_of_shows_the_period_by_the_clock_at_that_instant(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    ledger.clock.advance(days=30)
    past = ledger.client.get(
        f"/v1/clouds/{cloud_id}",
        params={"as_of": "2026-03-20T12:00:00+00:00"},
        headers=ledger.owner,
    ).json()
    assert past["current_period"]["start"] == "2026-02-28"
    assert past["renewal_pending"] is False
    later = ledger.client.get(
        f"/v1/clouds/{cloud_id}",
        params={"as_of": "2026-04-02T12:00:00+00:00"},
        headers=ledger.owner,
    ).json()
    assert later["current_period"]["start"] == "2026-03-31"
    assert later["renewal_pending"] is True
