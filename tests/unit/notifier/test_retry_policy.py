"""Backoff: exponential, jittered within bounds, capped, and finite."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.domain import RetryPolicy

POLICY = RetryPolicy(
    base_delay=timedelta(seconds=10),
    max_delay=timedelta(minutes=10),
    give_up_after=timedelta(hours=1),
)


@pytest.mark.parametrize(
    ("failed", "ceiling_s"), [(1, 10), (2, 20), (3, 40), (4, 80), (6, 320), (7, 600), (50, 600)]
)
def test_the_delay_doubles_per_failure_up_to_the_cap_and_jitter_keeps_it_in_half_to_full(
    failed, ceiling_s
):
    assert POLICY.delay(failed, 0.0) == timedelta(seconds=ceiling_s / 2)
    assert POLICY.delay(failed, 1.0) == timedelta(seconds=ceiling_s)
    assert (
        timedelta(seconds=ceiling_s / 2)
        <= POLICY.delay(failed, 0.37)
        <= timedelta(seconds=ceiling_s)
    )


def test_jitter_spreads_the_retries_of_invoices_that_failed_together():
    rng = random.Random(7)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    retries = {POLICY.next_attempt(now, now, 3, rng) for _ in range(20)}

    assert len(retries) == 20


def test_after_give_up_after_there_is_no_next_attempt():
    rng = random.Random(1)
    requested = datetime(2026, 1, 1, tzinfo=UTC)

    assert POLICY.next_attempt(requested, requested + timedelta(minutes=30), 5, rng) is not None
    assert POLICY.next_attempt(requested, requested + timedelta(minutes=59), 9, rng) is None


def test_a_policy_without_a_positive_base_delay_is_refused():
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=timedelta(0))
