"""A poisoned contract, recorded as an older release without today's input validation would
have recorded it: a monthly contract whose term starts on 9999-12-16, so its first period ends
in the year 10000, which no ``date`` can hold. Every period computation of that cloud fails
("year 10000 is out of range"); nothing about it may stop the other clouds."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from services.ledger.application import Ledger
from services.ledger.domain import DEFAULT_LICENSED_RIGHTS_GROUPS, Actor, Cloud, ContractTerms

#: The term start of the poisoned contract.
POISONED_TERM_START = date(9999, 12, 16)


def poisoned_terms(**changes: object) -> ContractTerms:
    """Otherwise valid terms whose (monthly) term starts on 9999-12-16. The date is set after
    construction, so no validation the terms may run on construction refuses it."""
    terms = ContractTerms(
        name="Poisoned Ltd",
        owner_id="owner-poisoned",
        billing_email="billing@poisoned.example",
        currency="EUR",
        seat_price=Decimal("10.00"),
        billing_period="monthly",
        term_start=date(2026, 1, 16),
        time_zone="Europe/Berlin",
        tax_rate=Decimal("19"),
        locale="en",
    )
    terms = replace(terms, **changes)  # type: ignore[arg-type]
    object.__setattr__(terms, "term_start", POISONED_TERM_START)
    return terms


def record_poisoned_contract(
    ledger: Ledger, *, cloud_id: UUID | None = None, at: datetime | None = None
) -> UUID:
    """Save the ``ContractOpened`` event of a poisoned cloud straight into ``ledger``'s store
    (around the commands and their validation, as an older release recorded it); its id."""
    cloud_id = cloud_id or uuid.uuid4()
    cloud = Cloud._create(
        Cloud.ContractOpened,
        id=cloud_id,
        timestamp=at or datetime.now(UTC),
        terms=poisoned_terms(),
        seats=3,
        licensed_rights_groups=DEFAULT_LICENSED_RIGHTS_GROUPS,
        first_period_index=0,
        actor=Actor("user", "owner-poisoned"),
    )
    ledger.save(cloud)
    return cloud_id
