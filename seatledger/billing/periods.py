"""Billing periods: they roll from the term start by whole months (monthly 1, annual 12).

The anchor day is the term start's day of month, clamped to each month's last day, and every
period start is computed from the term start (never from the previous period), so an anchor of
the 31st gives Jan 31 -> Feb 28 (29) -> Mar 31 -> Apr 30 -> May 31.

Dates that decide a charge are local dates in the contract's IANA time zone.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


class BillingPeriod(StrEnum):
    MONTHLY = "monthly"
    ANNUAL = "annual"

    @property
    def months(self) -> int:
        return 1 if self is BillingPeriod.MONTHLY else 12


class PeriodError(ValueError):
    """A date outside the periods of a contract."""


@dataclass(frozen=True, order=True)
class Period:
    """The half-open interval of local dates ``[start, end)``."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day < self.end


def add_months(anchor: date, months: int) -> date:
    """``anchor`` moved by whole months, its day clamped to the target month's last day."""
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def period_at(term_start: date, billing_period: BillingPeriod, index: int) -> Period:
    """The period number ``index`` (0 is the first) of a term starting on ``term_start``."""
    if index < 0:
        raise PeriodError("periods are numbered from 0")
    step = billing_period.months
    return Period(add_months(term_start, index * step), add_months(term_start, (index + 1) * step))


def period_index_containing(term_start: date, billing_period: BillingPeriod, day: date) -> int:
    """The number of the period that contains ``day``."""
    if day < term_start:
        raise PeriodError(f"{day.isoformat()} lies before the term start {term_start.isoformat()}")
    step = billing_period.months
    # A first guess from the calendar months between the two dates, then corrected.
    months = (day.year - term_start.year) * 12 + (day.month - term_start.month)
    index = max(months // step, 0)
    while add_months(term_start, index * step) > day:
        index -= 1
    while add_months(term_start, (index + 1) * step) <= day:
        index += 1
    return index


def period_containing(term_start: date, billing_period: BillingPeriod, day: date) -> Period:
    """The period ``[start, end)`` that contains the local date ``day``."""
    return period_at(
        term_start, billing_period, period_index_containing(term_start, billing_period, day)
    )


def period_number(term_start: date, billing_period: BillingPeriod, period: Period) -> int:
    """The index of ``period``; raises :class:`PeriodError` if it is not one of the term's."""
    index = period_index_containing(term_start, billing_period, period.start)
    if period_at(term_start, billing_period, index) != period:
        raise PeriodError(f"{period} is not a period of a term starting {term_start}")
    return index


def local_date(moment: datetime, time_zone: str) -> date:
    """The calendar date of the aware instant ``moment`` in the IANA zone ``time_zone``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the moment must be timezone-aware")
    return moment.astimezone(ZoneInfo(time_zone)).date()
