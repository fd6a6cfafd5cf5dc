"""Events the ledger publishes on ``seatledger.ledger.v1`` (key: the cloud id).

Each event carries what a consumer needs without asking back: a seat purchase and a renewal
carry the contract's billing terms as they stood when the event was recorded.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from schemas._base import (
    ContractModel,
    CurrencyCode,
    DecimalString,
    EventData,
    LocalDate,
    Timestamp,
)

BillingPeriodName = Literal["monthly", "annual"]
Locale = Literal["de", "en"]


class Actor(ContractModel):
    """Who caused an event: the token's subject, or the system (``kind = "system"``)."""

    kind: Literal["user", "service", "system"]
    id: str


class ContractTerms(ContractModel):
    """A cloud's billing terms at the moment of an event."""

    name: str
    owner_id: str
    billing_email: str
    currency: CurrencyCode
    seat_price: DecimalString = Field(description="net price of one seat for one billing period")
    billing_period: BillingPeriodName
    term_start: LocalDate
    time_zone: str = Field(description="IANA time zone; charge dates are local dates in it")
    tax_rate: DecimalString = Field(description='percent, e.g. "19"')
    locale: Locale


class BillingPeriodRange(ContractModel):
    """A billing period: the local dates ``[start, end)``."""

    start: LocalDate
    end: LocalDate


class LedgerEvent(EventData):
    source_service = "ledger"

    cloud_id: UUID
    occurred_at: Timestamp
    actor: Actor


class ContractOpened(LedgerEvent):
    event_name = "ContractOpened"

    terms: ContractTerms
    seats: int = Field(ge=1)
    licensed_rights_groups: list[str]
    first_period: BillingPeriodRange


class QuoteHonoured(ContractModel):
    """The quote a purchase was made with: its pinned charge date and amount."""

    quote_id: UUID
    charge_date: LocalDate
    net: DecimalString


class SeatsIncreased(LedgerEvent):
    event_name = "SeatsIncreased"

    seats_before: int = Field(ge=1)
    seats_after: int = Field(ge=2)
    seats_added: int = Field(ge=1)
    charge_date: LocalDate = Field(description="local date of the purchase in the contract's zone")
    period: BillingPeriodRange = Field(description="the period the purchase is prorated against")
    terms: ContractTerms
    quote: QuoteHonoured | None = None


class LicenseAssigned(LedgerEvent):
    event_name = "LicenseAssigned"

    user_id: str
    rights_group: str
    previous_rights_group: str | None = None
    licenses_assigned: int = Field(ge=1, description="licenses held after this event")
    seats: int = Field(ge=1)


class LicenseReleased(LedgerEvent):
    event_name = "LicenseReleased"

    user_id: str
    previous_rights_group: str
    rights_group: str | None = Field(
        default=None, description="the user's new, unlicensed group (e.g. guest); null if removed"
    )
    licenses_assigned: int = Field(ge=0, description="licenses held after this event")
    seats: int = Field(ge=1)


class LicenseRightsGroupChanged(LedgerEvent):
    """A license holder moved to another licensed rights group; the license is kept."""

    event_name = "LicenseRightsGroupChanged"

    user_id: str
    rights_group: str = Field(description="the user's new, licensed group")
    previous_rights_group: str = Field(description="the licensed group the user had")
    licenses_assigned: int = Field(ge=1, description="licenses held (unchanged by this event)")
    seats: int = Field(ge=1)


class PeriodRenewed(LedgerEvent):
    event_name = "PeriodRenewed"

    period_index: int = Field(ge=1, description="0 is the first period of the term")
    period: BillingPeriodRange
    seats_before: int = Field(ge=1)
    seats: int = Field(ge=1, description="seats invoiced for the new period")
    reduction_applied: bool
    requested_seats: int | None = Field(
        default=None,
        ge=1,
        description=(
            "the seat total a scheduled reduction asked for; null when none was scheduled. "
            "`seats` is never below the licenses assigned, so it may exceed this"
        ),
    )
    licenses_assigned: int = Field(ge=0)
    terms: ContractTerms


class SeatReductionScheduled(LedgerEvent):
    event_name = "SeatReductionScheduled"

    seats: int = Field(ge=1, description="the seat count from the effective date on")
    seats_current: int = Field(ge=1)
    effective_date: LocalDate = Field(description="the next period's start")


class BillingEmailChanged(LedgerEvent):
    event_name = "BillingEmailChanged"

    billing_email: str


LEDGER_EVENTS: tuple[type[LedgerEvent], ...] = (
    ContractOpened,
    SeatsIncreased,
    LicenseAssigned,
    LicenseReleased,
    LicenseRightsGroupChanged,
    PeriodRenewed,
    SeatReductionScheduled,
    BillingEmailChanged,
)
