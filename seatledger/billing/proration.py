"""Day-based proration of a seat purchase against the current period.

From local date ``d`` in period ``[s, e)``: remaining days ``R = (e - d)`` (the day of purchase
counted), period days ``D = (e - s)``, and

    net = added seats x seat price x R / D

computed exactly and rounded once, half up, to the currency's minor units. A purchase on the
first day of a period costs the full period price; on the last day, one day's price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext

from seatledger.billing.money import _PRECISION, minor_units, round_half_up
from seatledger.billing.periods import Period, PeriodError


@dataclass(frozen=True)
class Proration:
    """Every figure of a prorated charge, so a reader can recompute it by hand."""

    seats: int
    unit_price: Decimal
    period: Period
    charge_date: date
    remaining_days: int
    period_days: int
    unrounded: Decimal
    net: Decimal


def prorate(
    seats: int, unit_price: Decimal, period: Period, charge_date: date, currency: str
) -> Proration:
    """The prorated net charge for ``seats`` added on ``charge_date`` within ``period``."""
    if seats < 1:
        raise ValueError("a purchase adds at least one seat")
    if unit_price < 0:
        raise ValueError("a seat price is never negative")
    if charge_date not in period:
        raise PeriodError(f"{charge_date.isoformat()} is not within {period}")
    minor_units(currency)  # validates the currency before any arithmetic
    remaining = (period.end - charge_date).days
    total = period.days
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        unrounded = Decimal(seats) * unit_price * Decimal(remaining) / Decimal(total)
    return Proration(
        seats=seats,
        unit_price=unit_price,
        period=period,
        charge_date=charge_date,
        remaining_days=remaining,
        period_days=total,
        unrounded=unrounded,
        net=round_half_up(unrounded, currency),
    )


def renewal_net(seats: int, unit_price: Decimal, currency: str) -> Decimal:
    """A renewal invoices every seat at the full period price."""
    if seats < 0:
        raise ValueError("a seat count is never negative")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return round_half_up(Decimal(seats) * unit_price, currency)
