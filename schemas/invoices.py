"""Events the invoicer publishes on ``seatledger.invoices.v1`` (key: the cloud id)."""

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
from schemas.ledger import BillingPeriodRange, Locale


class Customer(ContractModel):
    name: str
    owner_id: str
    billing_email: str
    locale: Locale


class InvoiceLine(ContractModel):
    """One line, with every figure needed to recompute it by hand:
    ``amount = round_half_up(quantity x unit_price x remaining_days / period_days)``."""

    kind: Literal["seat_purchase", "renewal"]
    description: str
    quantity: int = Field(ge=0, description="seats")
    unit_price: DecimalString = Field(description="net price of one seat for a whole period")
    period: BillingPeriodRange
    charge_date: LocalDate = Field(description="the first day charged (local date)")
    remaining_days: int = Field(ge=1, description="R: days charged, the charge date counted")
    period_days: int = Field(ge=1, description="D: days of the whole period")
    unrounded_amount: DecimalString = Field(description="the exact amount before rounding")
    amount: DecimalString = Field(description="net, rounded once, half up, to minor units")


class CausingEvent(ContractModel):
    event_id: UUID
    event_type: str


class InvoiceIssued(EventData):
    source_service = "invoicer"
    event_name = "InvoiceIssued"

    invoice_id: UUID
    invoice_number: str = Field(description="<prefix>-<year>-<6 digits>, gapless per series")
    cloud_id: UUID
    kind: Literal["seat_purchase", "renewal"]
    issue_date: LocalDate = Field(description="local date in the contract's time zone")
    issued_at: Timestamp
    time_zone: str
    customer: Customer
    currency: CurrencyCode
    tax_rate: DecimalString = Field(description="percent")
    lines: list[InvoiceLine] = Field(min_length=1)
    net: DecimalString
    tax: DecimalString = Field(description="round_half_up(net x tax_rate / 100)")
    gross: DecimalString
    caused_by: CausingEvent
