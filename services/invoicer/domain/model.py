"""The invoicer's aggregates: invoices, the number series that numbers them, and the index of a
cloud's invoices.

- An :class:`Invoice` is created by its single ``Issued`` event and never changes afterwards.
- A :class:`NumberSeries` hands out ``<prefix>-<year>-<6 digits>``; its version IS the count of
  numbers taken (opening the series takes number 1), so two writers that take the same number
  collide on the same ``(originator_id, version)`` and one of them must reload and retry. Saved in
  one transaction with the invoice that uses the number, a number is never lost or reused.
- A :class:`CloudInvoices` lists the invoices of one cloud in issue order.

Aggregate ids are derived from what they stand for (uuid5), so the same purchase always maps to
the same invoice id and a second invoice for it cannot be recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

#: The namespace of every id the invoicer derives.
INVOICER_NAMESPACE = UUID("5b1c3f0e-6a8e-4f7e-9a51-2f3d0c8e7a10")

InvoiceKind = Literal["seat_purchase", "renewal"]

MAX_NUMBERS_PER_SERIES = 999_999
_PREFIX = re.compile(r"^[A-Z][A-Z0-9]{0,9}$")


class InvoicerError(Exception):
    """Base of the invoicer's domain errors."""


class InvalidPrefixError(InvoicerError, ValueError):
    """An invoice number prefix must be 1 to 10 upper-case letters or digits."""


class SeriesExhaustedError(InvoicerError):
    """A series has handed out all of its six-digit numbers."""


@dataclass(frozen=True)
class Customer:
    name: str
    owner_id: str
    billing_email: str
    locale: str


@dataclass(frozen=True)
class InvoiceLine:
    """One line: ``amount = round_half_up(quantity x unit_price x remaining_days / period_days)``
    (a renewal has ``remaining_days == period_days``)."""

    kind: InvoiceKind
    description: str
    quantity: int
    unit_price: Decimal
    period_start: date
    period_end: date
    charge_date: date
    remaining_days: int
    period_days: int
    unrounded_amount: Decimal
    amount: Decimal


@dataclass(frozen=True)
class CausingEvent:
    event_id: UUID
    event_type: str


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise InvalidPrefixError(
            f"invoice number prefix {prefix!r}: 1 to 10 upper-case letters or digits, "
            "starting with a letter"
        )
    return prefix


def invoice_id_for(kind: InvoiceKind, key: str) -> UUID:
    """The id of the one invoice of a billing event: a purchase's ledger event id, a
    renewal's cloud and period start."""
    return uuid5(INVOICER_NAMESPACE, f"invoice:{kind}:{key}")


def series_id_for(prefix: str, year: int) -> UUID:
    return uuid5(INVOICER_NAMESPACE, f"number-series:{prefix}-{year}")


def cloud_invoices_id_for(cloud_id: UUID) -> UUID:
    return uuid5(INVOICER_NAMESPACE, f"cloud-invoices:{cloud_id}")


def format_number(prefix: str, year: int, count: int) -> str:
    return f"{prefix}-{year}-{count:06d}"


class NumberSeries(Aggregate):
    """The gapless series ``<prefix>-<year>-NNNNNN``; its version is the count of numbers taken."""

    @staticmethod
    def create_id(prefix: str, year: int) -> UUID:
        return series_id_for(prefix, year)

    @event("Opened")
    def __init__(self, prefix: str, year: int) -> None:
        # Opening the series takes its first number: version 1 = number 1.
        self.prefix = validate_prefix(prefix)
        self.year = year

    @classmethod
    def open(cls, prefix: str, year: int) -> NumberSeries:
        """A new series, its first number taken."""
        return cls(prefix=validate_prefix(prefix), year=year)

    def take_next(self) -> str:
        """Take the next number and return it."""
        if self.version >= MAX_NUMBERS_PER_SERIES:
            raise SeriesExhaustedError(f"series {self.prefix}-{self.year} is exhausted")
        self._take()
        return self.last_number

    @event("NumberTaken")
    def _take(self) -> None:
        pass

    @property
    def count(self) -> int:
        return self.version

    @property
    def last_number(self) -> str:
        return format_number(self.prefix, self.year, self.version)


class Invoice(Aggregate):
    """An issued invoice. Its one event carries the whole invoice; it is never edited."""

    @staticmethod
    def create_id(invoice_id: UUID, **_: Any) -> UUID:
        return invoice_id

    @event("Issued")
    def __init__(
        self,
        *,
        invoice_id: UUID,
        number: str,
        cloud_id: UUID,
        kind: InvoiceKind,
        issue_date: date,
        issued_at: datetime,
        time_zone: str,
        customer: Customer,
        currency: str,
        tax_rate: Decimal,
        lines: list[InvoiceLine],
        net: Decimal,
        tax: Decimal,
        gross: Decimal,
        caused_by: CausingEvent,
        event_time: datetime,
    ) -> None:
        self.number = number
        self.cloud_id = cloud_id
        self.kind: InvoiceKind = kind
        self.issue_date = issue_date
        self.issued_at = issued_at
        self.time_zone = time_zone
        self.customer = customer
        self.currency = currency
        self.tax_rate = tax_rate
        self.lines: tuple[InvoiceLine, ...] = tuple(lines)
        self.net = net
        self.tax = tax
        self.gross = gross
        self.caused_by = caused_by
        self.event_time = event_time


class CloudInvoices(Aggregate):
    """The ids of one cloud's invoices, in issue order."""

    @staticmethod
    def create_id(cloud_id: UUID, **_: Any) -> UUID:
        return cloud_invoices_id_for(cloud_id)

    @event("Opened")
    def __init__(self, cloud_id: UUID, first_invoice_id: UUID) -> None:
        self.cloud_id = cloud_id
        self.invoice_ids: list[UUID] = [first_invoice_id]

    @event("InvoiceAdded")
    def add(self, invoice_id: UUID) -> None:
        self.invoice_ids.append(invoice_id)
