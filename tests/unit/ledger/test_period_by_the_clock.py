"""Reads show the cloud as the clock shows it: due renewals applied to a copy, never recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.unit.ledger.test_rights_groups import ADMIN_SVC, T0, a_cloud


def test_the_cloud_as_the_clock_shows_it_applies_due_renewals_to_a_copy_only():
    cloud = a_cloud(seats=5)
    cloud.schedule_reduction(seats=3, actor=ADMIN_SVC, at=T0)
    list(cloud.collect_events())
    later = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
    shown = cloud.as_at(later)
    assert (shown.period_index, shown.seats, shown.scheduled_reduction) == (4, 3, None)
    assert list(shown.collect_events()) == []
    assert (cloud.period_index, cloud.seats, cloud.scheduled_reduction) == (2, 5, 3)
    assert list(cloud.collect_events()) == []
