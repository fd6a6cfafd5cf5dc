"""Ledger contract events for the invoicer's tests (also used by its integration tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from schemas.envelope import CloudEvent
from schemas.ledger import (
    Actor,
    BillingPeriodRange,
    ContractTerms,
    LedgerEvent,
    LicenseAssigned,
    PeriodRenewed,
    QuoteHonoured,
    SeatsIncreased,
)
from seatledger.billing import BillingPeriod, period_at, period_containing


def terms(**overrides: Any) -> ContractTerms:
    values: dict[str, Any] = {
        "name": "Müller & Söhne GmbH",
        "owner_id": "owner-1",
        "billing_email": "ap@example.com",
        "currency": "EUR",
        "seat_price": Decimal("30.00"),
        "billing_period": "monthly",
        "term_start": date(2026, 1, 31),
        "time_zone": "Europe/Berlin",
        "tax_rate": Decimal("19"),
        "locale": "de",
    }
    values.update(overrides)
    return ContractTerms(**values)


def seats_increased(
    charge_date: date,
    *,
    cloud_id: UUID | None = None,
    added: int = 2,
    before: int = 3,
    contract: ContractTerms | None = None,
    quote: QuoteHonoured | None = None,
    occurred_at: datetime | None = None,
) -> SeatsIncreased:
    contract = contract or terms()
    period = period_containing(
        contract.term_start, BillingPeriod(contract.billing_period), charge_date
    )
    return SeatsIncreased(
        cloud_id=cloud_id or uuid.uuid4(),
        occurred_at=occurred_at or datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        actor=Actor(kind="user", id=contract.owner_id),
        seats_before=before,
        seats_after=before + added,
        seats_added=added,
        charge_date=charge_date,
        period=BillingPeriodRange(start=period.start, end=period.end),
        terms=contract,
        quote=quote,
    )


def period_renewed(
    index: int,
    *,
    cloud_id: UUID | None = None,
    seats: int = 5,
    contract: ContractTerms | None = None,
) -> PeriodRenewed:
    contract = contract or terms()
    period = period_at(contract.term_start, BillingPeriod(contract.billing_period), index)
    return PeriodRenewed(
        cloud_id=cloud_id or uuid.uuid4(),
        occurred_at=datetime.combine(period.start, datetime.min.time(), tzinfo=UTC),
        actor=Actor(kind="system", id="renewal"),
        period_index=index,
        period=BillingPeriodRange(start=period.start, end=period.end),
        seats_before=seats,
        seats=seats,
        reduction_applied=False,
        licenses_assigned=1,
        terms=contract,
    )


def license_assigned(cloud_id: UUID | None = None) -> LicenseAssigned:
    return LicenseAssigned(
        cloud_id=cloud_id or uuid.uuid4(),
        occurred_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        actor=Actor(kind="user", id="owner-1"),
        user_id="user-7",
        rights_group="employee",
        licenses_assigned=1,
        seats=3,
    )


def envelope(event: LedgerEvent, event_id: UUID | None = None) -> CloudEvent:
    return CloudEvent.of(
        event, id=str(event_id or uuid.uuid4()), subject=str(event.cloud_id), time=event.occurred_at
    )
