"""Properties of the one proration rule (DESIGN.md section 2), for any price, seat count and day.

net = seats x seat price x R / D, R = (e - d) days (the purchase day counted), D = (e - s),
computed exactly and rounded once, half up, to the currency's minor units.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import assume, given
from hypothesis import strategies as st

from seatledger.billing import (
    BillingPeriod,
    minor_units,
    period_at,
    period_containing,
    prorate,
    round_half_up,
)

CURRENCIES = st.sampled_from(["EUR", "USD", "JPY", "KWD", "CHF", "BHD", "KRW", "CLF"])
SEATS = st.integers(min_value=1, max_value=10_000)
TERM_STARTS = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
BILLING_PERIODS = st.sampled_from(list(BillingPeriod))


@st.composite
def prices(draw: st.DrawFn, currency: str) -> Decimal:
    """A seat price with the currency's minor units, or up to 4 more digits."""
    digits = minor_units(currency) + draw(st.integers(min_value=0, max_value=4))
    units = draw(st.integers(min_value=0, max_value=10**6 * 10**digits))
    return Decimal(units).scaleb(-digits)


@st.composite
def purchases(draw: st.DrawFn):
    currency = draw(CURRENCIES)
    price = draw(prices(currency))
    seats = draw(SEATS)
    term_start = draw(TERM_STARTS)
    billing_period = draw(BILLING_PERIODS)
    index = draw(st.integers(min_value=0, max_value=30))
    period = period_at(term_start, billing_period, index)
    offset = draw(st.integers(min_value=0, max_value=period.days - 1))
    return currency, price, seats, period, period.start + timedelta(days=offset)


@given(purchases())
def test_a_purchase_on_the_first_day_costs_the_full_period_price(purchase):
    currency, price, seats, period, _ = purchase
    result = prorate(seats, price, period, period.start, currency)
    assert result.remaining_days == result.period_days == period.days
    assert result.net == round_half_up(seats * price, currency)


@given(purchases())
def test_a_purchase_on_the_last_day_costs_one_days_price(purchase):
    currency, price, seats, period, _ = purchase
    last_day = period.end - timedelta(days=1)
    result = prorate(seats, price, period, last_day, currency)
    assert result.remaining_days == 1
    assert result.net == round_half_up(seats * price / Decimal(period.days), currency)


@given(purchases())
def test_a_charge_never_exceeds_the_full_period_price(purchase):
    currency, price, seats, period, day = purchase
    full = round_half_up(seats * price, currency)
    result = prorate(seats, price, period, day, currency)
    assert Decimal(0) <= result.net <= full
    assert result.unrounded <= seats * price


@given(purchases())
def test_a_charge_never_decreases_as_more_days_remain(purchase):
    currency, price, seats, period, day = purchase
    assume(day > period.start)
    later = prorate(seats, price, period, day, currency)
    earlier = prorate(seats, price, period, day - timedelta(days=1), currency)
    assert earlier.remaining_days == later.remaining_days + 1
    assert earlier.net >= later.net
    assert earlier.unrounded >= later.unrounded


@given(purchases())
def test_the_charge_is_the_exact_fraction_rounded_once_to_minor_units(purchase):
    currency, price, seats, period, day = purchase
    result = prorate(seats, price, period, day, currency)
    remaining = (period.end - day).days
    assert result.remaining_days == remaining
    assert result.period_days == (period.end - period.start).days
    # The unrounded amount is the exact fraction (to 60 significant digits) ...
    assert abs(result.unrounded * period.days - seats * price * remaining) < Decimal("1e-40")
    # ... and the net is it, rounded once, with exactly the currency's minor units.
    assert result.net == round_half_up(result.unrounded, currency)
    assert -result.net.as_tuple().exponent == minor_units(currency)  # type: ignore[operator]
    assert abs(result.net - result.unrounded) <= Decimal(1).scaleb(-minor_units(currency)) / 2


@given(TERM_STARTS, BILLING_PERIODS, st.integers(min_value=0, max_value=40_000))
def test_every_day_after_the_term_start_lies_in_exactly_one_period(term_start, bp, offset):
    day = term_start + timedelta(days=offset)
    period = period_containing(term_start, bp, day)
    assert period.start <= day < period.end
    # Periods are contiguous: the next one starts where this one ends.
    following = period_containing(term_start, bp, period.end)
    assert following.start == period.end


@given(TERM_STARTS, BILLING_PERIODS, st.integers(min_value=0, max_value=200))
def test_each_period_starts_on_the_anchor_day_clamped_to_the_months_end(term_start, bp, index):
    period = period_at(term_start, bp, index)
    months = bp.months
    start = period.start
    assert (start.year * 12 + start.month) - (term_start.year * 12 + term_start.month) == (
        index * months
    )
    next_month = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    last_day_of_month = (next_month - timedelta(days=1)).day
    assert start.day == min(term_start.day, last_day_of_month)
    assert 28 <= period.days <= 31 if months == 1 else 365 <= period.days <= 366
