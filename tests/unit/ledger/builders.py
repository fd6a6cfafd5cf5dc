"""Contract terms for the ledger's tests (and others that open clouds)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from services.ledger.domain import ContractTerms


def terms(**changes) -> ContractTerms:
    base = ContractTerms(
        name="Acme GmbH",
        owner_id="owner-1",
        billing_email="billing@acme.example",
        currency="EUR",
        seat_price=Decimal("31.00"),
        billing_period="monthly",
        term_start=date(2026, 1, 31),
        time_zone="Europe/Berlin",
        tax_rate=Decimal("19"),
        locale="de",
    )
    return replace(base, **changes)
