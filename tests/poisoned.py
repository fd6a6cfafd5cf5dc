"""A poisoned contract, recorded as an older release without today's input validation would
have recorded it: a monthly contract whose term starts on 9999-12-16, so its first period ends
in the year 10000, which no ``date`` can hold. Every period computation of that cloud fails
("year 10000 is out of range"); nothing about it may stop the other clouds, such as the
healthy cloud the product's tests open beside it (:func:`open_healthy_cloud`)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from fastapi.testclient import TestClient

from seatledger.auth import mint_token
from seatledger.config import Settings
from services.ledger.application import Ledger
from services.ledger.domain import DEFAULT_LICENSED_RIGHTS_GROUPS, Actor, Cloud, ContractTerms
from tests.e2e.support import term_start_for

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


#: The billing address of the healthy cloud, which every one of its invoices is e-mailed to.
HEALTHY_BILLING_EMAIL = "ap@healthy.example"


class Clock:
    """The instant the product believes it is (now, when created); tests move it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def headers(settings: Settings, subject: str, *scopes: str, step_up: bool = False) -> dict:
    token = mint_token(settings, subject=subject, scopes=scopes, step_up=step_up)
    return {"Authorization": f"Bearer {token}"}


def open_healthy_cloud(api: TestClient, settings: Settings, now: datetime) -> UUID:
    """Open, through the ledger's API, a monthly cloud of ``owner-healthy`` whose term started
    shortly before ``now`` (:func:`term_start_for`); its id."""
    body = {
        "name": "Healthy GmbH",
        "owner_id": "owner-healthy",
        "billing_email": HEALTHY_BILLING_EMAIL,
        "currency": "EUR",
        "seat_price": "30.00",
        "billing_period": "monthly",
        "term_start": term_start_for(now.date()).isoformat(),
        "time_zone": "UTC",
        "tax_rate": "19",
        "locale": "en",
        "seats": 3,
    }
    opened = api.post("/v1/clouds", json=body, headers=headers(settings, "admin", "billing:admin"))
    assert opened.status_code == 201, opened.text
    return UUID(opened.json()["cloud_id"])
