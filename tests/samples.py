"""Sample contract events shared by the tests of several services."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from schemas.invoices import CausingEvent, Customer, InvoiceIssued, InvoiceLine
from schemas.ledger import BillingPeriodRange


def make_invoice(
    *,
    locale: str = "en",
    number: str = "SL-2026-000042",
    email: str = "ap@example.com",
    name: str = "Acme Ltd",
    invoice_id: UUID | None = None,
    cloud_id: UUID | None = None,
    issued_at: datetime | None = None,
    **overrides: Any,
) -> InvoiceIssued:
    """A seat purchase of 3 seats at 1,234.50 EUR, charged for 3 of 30 days, 19 % tax."""
    data: dict[str, Any] = {
        "invoice_id": invoice_id or uuid.uuid4(),
        "invoice_number": number,
        "cloud_id": cloud_id or uuid.uuid4(),
        "kind": "seat_purchase",
        "issue_date": date(2026, 11, 28),
        "issued_at": issued_at or datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        "time_zone": "Europe/Berlin",
        "customer": Customer(name=name, owner_id="owner-1", billing_email=email, locale=locale),
        "currency": "EUR",
        "tax_rate": Decimal("19"),
        "lines": [
            InvoiceLine(
                kind="seat_purchase",
                description="3 additional seats",
                quantity=3,
                unit_price=Decimal("1234.50"),
                period=BillingPeriodRange(start=date(2026, 11, 1), end=date(2026, 12, 1)),
                charge_date=date(2026, 11, 28),
                remaining_days=3,
                period_days=30,
                unrounded_amount=Decimal("370.35"),
                amount=Decimal("370.35"),
            )
        ],
        "net": Decimal("370.35"),
        "tax": Decimal("70.37"),
        "gross": Decimal("440.72"),
        "caused_by": CausingEvent(
            event_id=uuid.uuid4(), event_type="seatledger.ledger.SeatsIncreased.v1"
        ),
    }
    data.update(overrides)
    return InvoiceIssued(**data)
