"""A ledger event whose invoice cannot be computed at all (a period beyond the calendar, an
amount decimal arithmetic refuses) is refused as poison at once: retrying it could never
succeed, and it would hold up every event behind it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from schemas.ledger import BillingPeriodRange
from seatledger.consumer import PoisonMessage
from seatledger.tracking import Position
from services.invoicer.application import InvoicerApplication
from services.invoicer.handlers import LedgerEventHandler
from tests.unit.invoicer.ledger_events import envelope, period_renewed, terms


def handler() -> LedgerEventHandler:
    return LedgerEventHandler(InvoicerApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}))


def test_a_renewal_whose_period_ends_beyond_the_calendar_is_poison() -> None:
    # The period after the one starting 9999-12-16 would end in the year 10000.
    contract = terms().model_construct(**{**terms().__dict__, "term_start": date(9999, 11, 16)})
    event = period_renewed(1, contract=terms()).model_copy(
        update={
            "terms": contract,
            "period_index": 1,
            "period": BillingPeriodRange.model_construct(
                start=date(9999, 12, 16), end=date(9999, 12, 31)
            ),
        }
    )
    app_handler = handler()
    with pytest.raises(PoisonMessage, match="year 10000 is out of range"):
        app_handler(envelope(event), event, Position("ledger", 1))
    assert app_handler.app.position("ledger") is None  # nothing recorded


def test_a_renewal_whose_amount_decimal_arithmetic_refuses_is_poison() -> None:
    contract = terms().model_construct(**{**terms().__dict__, "seat_price": Decimal("1E+999999")})
    event = period_renewed(3, contract=terms()).model_copy(update={"terms": contract})
    with pytest.raises(PoisonMessage, match="cannot be computed"):
        handler()(envelope(event), event, Position("ledger", 1))
