"""Exact figures that pin the money and calendar rules: half-up rounding applied once, minor
units per currency, leap years, month-end anchors and charge dates in the contract's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seatledger.billing import (
    BillingPeriod,
    Period,
    PeriodError,
    UnknownCurrencyError,
    add_months,
    local_date,
    minor_units,
    period_at,
    period_containing,
    prorate,
    renewal_net,
    round_half_up,
    tax_amount,
)

MONTHLY = BillingPeriod.MONTHLY
ANNUAL = BillingPeriod.ANNUAL
NOVEMBER = Period(date(2026, 11, 1), date(2026, 12, 1))  # D = 30

# -- rounding: half up, once ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("0.125"), "EUR", Decimal("0.13")),  # half up, not half even (0.12)
        (Decimal("0.135"), "EUR", Decimal("0.14")),
        (Decimal("0.1249999"), "EUR", Decimal("0.12")),
        (Decimal("2.5"), "JPY", Decimal("3")),  # half even would give 2
        (Decimal("3.5"), "JPY", Decimal("4")),
        (Decimal("0.0005"), "KWD", Decimal("0.001")),
        (Decimal("1.23449"), "KWD", Decimal("1.234")),
        (Decimal("7"), "EUR", Decimal("7.00")),
    ],
)
def test_rounding_is_half_up_to_the_currencys_minor_units(amount, currency, expected):
    rounded = round_half_up(amount, currency)
    assert rounded == expected
    assert str(rounded) == str(expected)


def test_minor_units_follow_iso_4217():
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("KWD")) == (2, 0, 3)
    with pytest.raises(UnknownCurrencyError):
        minor_units("XYZ")


def test_a_purchase_is_rounded_once_not_per_seat_or_per_day():
    # 3 seats x 3.335 = 10.005 -> 10.01 (rounding the seat price first would give 10.02).
    assert prorate(3, Decimal("3.335"), NOVEMBER, date(2026, 11, 1), "EUR").net == Decimal("10.01")
    # 1 seat x 10.01 x 15/30 = 5.005 -> 5.01 (half even would give 5.00).
    result = prorate(1, Decimal("10.01"), NOVEMBER, date(2026, 11, 16), "EUR")
    assert (result.remaining_days, result.period_days) == (15, 30)
    assert result.unrounded == Decimal("5.005")
    assert result.net == Decimal("5.01")
    # 2 seats x 10 x 2/30 = 1.3333... -> 1.33; a per-day rounding (0.33 x 2 x 2) would give 1.32.
    assert prorate(2, Decimal(10), NOVEMBER, date(2026, 11, 29), "EUR").net == Decimal("1.33")


@pytest.mark.parametrize(
    ("net", "rate", "expected_tax"),
    [
        (Decimal("370.35"), Decimal("19"), Decimal("70.37")),  # 70.3665
        (Decimal("1.50"), Decimal("19"), Decimal("0.29")),  # 0.285: half up (half even: 0.28)
        (Decimal("0.05"), Decimal("19"), Decimal("0.01")),  # 0.0095
        (Decimal("0.00"), Decimal("19"), Decimal("0.00")),
        (Decimal("100.00"), Decimal("7.7"), Decimal("7.70")),
        (Decimal("333"), Decimal("10"), Decimal("33")),  # JPY 33.3
    ],
)
def test_tax_is_rounded_half_up_once_at_invoice_level(net, rate, expected_tax):
    currency = "JPY" if net == Decimal("333") else "EUR"
    assert tax_amount(net, rate, currency) == expected_tax


def test_zero_and_three_decimal_currencies_prorate_to_their_own_minor_units():
    # JPY: 1 seat x 1000 x 10/30 = 333.33... -> 333.
    jpy = prorate(1, Decimal(1000), NOVEMBER, date(2026, 11, 21), "JPY")
    assert (jpy.remaining_days, jpy.net) == (10, Decimal("333"))
    # JPY: 1 seat x 1000 x 15/30 = 500 exactly; 1 x 999 x 15/30 = 499.5 -> 500 (half up).
    assert prorate(1, Decimal(999), NOVEMBER, date(2026, 11, 16), "JPY").net == Decimal("500")
    # KWD: 1 seat x 10.000 x 1/30 = 0.3333... -> 0.333; 1 x 0.001 x 15/30 = 0.0005 -> 0.001.
    assert prorate(1, Decimal("10.000"), NOVEMBER, date(2026, 11, 30), "KWD").net == Decimal(
        "0.333"
    )
    assert prorate(1, Decimal("0.001"), NOVEMBER, date(2026, 11, 16), "KWD").net == Decimal("0.001")
    assert str(prorate(1, Decimal(7), NOVEMBER, date(2026, 11, 1), "KWD").net) == "7.000"


def test_a_tiny_price_on_the_last_day_charges_zero():
    assert prorate(1, Decimal("0.10"), NOVEMBER, date(2026, 11, 30), "EUR").net == Decimal("0.00")


def test_renewal_invoices_every_seat_at_the_full_price_rounded_once():
    assert renewal_net(3, Decimal("3.335"), "EUR") == Decimal("10.01")
    assert renewal_net(0, Decimal("9.99"), "EUR") == Decimal("0.00")
    assert renewal_net(12, Decimal("1234"), "JPY") == Decimal("14808")


def test_prorate_refuses_what_is_not_a_purchase():
    with pytest.raises(PeriodError):
        prorate(1, Decimal(1), NOVEMBER, date(2026, 12, 1), "EUR")  # the end is excluded
    with pytest.raises(PeriodError):
        prorate(1, Decimal(1), NOVEMBER, date(2026, 10, 31), "EUR")
    with pytest.raises(ValueError, match="at least one seat"):
        prorate(0, Decimal(1), NOVEMBER, date(2026, 11, 5), "EUR")
    with pytest.raises(ValueError, match="never negative"):
        prorate(1, Decimal(-1), NOVEMBER, date(2026, 11, 5), "EUR")
    with pytest.raises(UnknownCurrencyError):
        prorate(1, Decimal(1), NOVEMBER, date(2026, 11, 5), "EUX")


# -- leap years ----------------------------------------------------------------------------


def test_an_annual_period_across_feb_29_has_366_days_and_a_purchase_on_feb_29_counts_it():
    period = period_containing(date(2027, 6, 15), ANNUAL, date(2028, 2, 29))
    assert period == Period(date(2027, 6, 15), date(2028, 6, 15))
    assert period.days == 366
    result = prorate(1, Decimal("366.00"), period, date(2028, 2, 29), "EUR")
    # R = Feb 29 .. Jun 14 inclusive = 1 + 31 + 30 + 31 + 14 = 107 days.
    assert (result.remaining_days, result.period_days) == (107, 366)
    assert result.net == Decimal("107.00")


def test_an_annual_term_starting_on_feb_29_returns_to_feb_29_in_leap_years():
    term_start = date(2024, 2, 29)
    starts = [period_at(term_start, ANNUAL, i).start for i in range(5)]
    assert starts == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]
    assert [period_at(term_start, ANNUAL, i).days for i in range(4)] == [365, 365, 365, 366]


def test_a_monthly_period_of_a_leap_february_has_29_days():
    period = period_containing(date(2028, 1, 10), MONTHLY, date(2028, 2, 29))
    assert period == Period(date(2028, 2, 10), date(2028, 3, 10))
    assert period.days == 29
    result = prorate(2, Decimal("29.00"), period, date(2028, 2, 29), "EUR")
    assert (result.remaining_days, result.net) == (10, Decimal("20.00"))


# -- month-end anchors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "february_end"),
    [(2026, date(2026, 2, 28)), (2028, date(2028, 2, 29))],
)
def test_a_month_end_anchor_clamps_and_returns_jan_31_feb_28_29_mar_31(year, february_end):
    term_start = date(year, 1, 31)
    starts = [period_at(term_start, MONTHLY, i).start for i in range(5)]
    assert starts == [
        date(year, 1, 31),
        february_end,
        date(year, 3, 31),
        date(year, 4, 30),
        date(year, 5, 31),
    ]
    february = period_at(term_start, MONTHLY, 1)
    assert february.days == (date(year, 3, 31) - february_end).days
    # A purchase on Mar 1 lies in the period that started on Feb 28/29.
    assert period_containing(term_start, MONTHLY, date(year, 3, 1)) == february


def test_add_months_clamps_to_the_last_day_and_keeps_the_anchor():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 31), 2) == date(2026, 3, 31)
    assert add_months(date(2026, 8, 31), 1) == date(2026, 9, 30)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


# -- the charge date is a local date in the contract's time zone ----------------------------


def test_2330_utc_on_the_last_day_is_already_the_next_day_in_berlin():
    moment = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert local_date(moment, "UTC") == date(2026, 1, 31)
    assert local_date(moment, "Europe/Berlin") == date(2026, 2, 1)
    term_start = date(2025, 11, 1)
    # In Berlin, the purchase falls on the first day of the February period: a full month.
    berlin_day = local_date(moment, "Europe/Berlin")
    berlin_period = period_containing(term_start, MONTHLY, berlin_day)
    berlin = prorate(1, Decimal("28.00"), berlin_period, berlin_day, "EUR")
    assert (berlin.remaining_days, berlin.period_days, berlin.net) == (28, 28, Decimal("28.00"))
    # In UTC, the same instant is the last day of January: one day of 31.
    utc_day = local_date(moment, "UTC")
    utc = prorate(
        1, Decimal("31.00"), period_containing(term_start, MONTHLY, utc_day), utc_day, "EUR"
    )
    assert (utc.remaining_days, utc.period_days, utc.net) == (1, 31, Decimal("1.00"))


def test_2330_in_berlin_is_still_the_same_day_in_berlin():
    moment = datetime(2026, 1, 31, 23, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert local_date(moment, "Europe/Berlin") == date(2026, 1, 31)
    assert local_date(moment, "UTC") == date(2026, 1, 31)  # 22:30 UTC
    assert local_date(moment, "Asia/Tokyo") == date(2026, 2, 1)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # Spring forward, Sunday 2026-03-29 (02:00 CET -> 03:00 CEST; a 23-hour day).
        (datetime(2026, 3, 28, 22, 59, tzinfo=UTC), date(2026, 3, 28)),  # 23:59 CET
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), date(2026, 3, 29)),  # 00:00 CET
        (datetime(2026, 3, 29, 21, 59, tzinfo=UTC), date(2026, 3, 29)),  # 23:59 CEST
        (datetime(2026, 3, 29, 22, 0, tzinfo=UTC), date(2026, 3, 30)),  # 00:00 CEST
        # Fall back, Sunday 2026-10-25 (03:00 CEST -> 02:00 CET; a 25-hour day).
        (datetime(2026, 10, 24, 21, 59, tzinfo=UTC), date(2026, 10, 24)),
        (datetime(2026, 10, 24, 22, 0, tzinfo=UTC), date(2026, 10, 25)),
        (datetime(2026, 10, 25, 22, 59, tzinfo=UTC), date(2026, 10, 25)),  # 23:59 CET
        (datetime(2026, 10, 25, 23, 0, tzinfo=UTC), date(2026, 10, 26)),
    ],
)
def test_charge_dates_on_dst_days_follow_berlins_local_midnight(moment, expected):
    assert local_date(moment, "Europe/Berlin") == expected


def test_a_dst_day_counts_as_one_whole_day():
    # March 2026 in Berlin has a 23-hour day; proration counts calendar days, not hours.
    march = period_containing(date(2026, 1, 1), MONTHLY, date(2026, 3, 29))
    assert march.days == 31
    on_dst_day = prorate(1, Decimal("31.00"), march, date(2026, 3, 29), "EUR")
    assert (on_dst_day.remaining_days, on_dst_day.net) == (3, Decimal("3.00"))


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        local_date(datetime(2026, 1, 31, 23, 30), "Europe/Berlin")


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Asia/Kolkata"]),
)
def test_the_local_date_is_the_wall_clock_date_in_the_zone(naive_utc, zone):
    moment = naive_utc.replace(tzinfo=UTC)
    offset = ZoneInfo(zone).utcoffset(naive_utc.replace(tzinfo=ZoneInfo(zone)))
    assert offset is not None
    day = local_date(moment, zone)
    assert abs((day - moment.date()).days) <= 1
    assert day == moment.astimezone(ZoneInfo(zone)).date()
    assert day in (
        (naive_utc + offset - timedelta(hours=1)).date(),
        (naive_utc + offset).date(),
        (naive_utc + offset + timedelta(hours=1)).date(),
    )
