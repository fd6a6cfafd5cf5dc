"""A quote and the invoice of the purchase made with it agree to the cent: the ledger's HTTP
quote, the purchase with it, and the invoice the invoicer issues from the ledger's event,
here in the embedded default (SQLite, the invoicer following the ledger's notification log)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from seatledger.auth import mint_token
from seatledger.billing import round_half_up
from seatledger.config import load_settings
from services.invoicer.bootstrap import build_invoicer
from services.ledger.bootstrap import build_ledger, create_ledger_app
from services.ledger.contract import to_cloud_event as ledger_to_cloud_event

pytestmark = pytest.mark.integration

# 23:30 in Berlin on Nov 20 (22:30 UTC): the charge date is Nov 20, the local date.
NOW = datetime(2026, 11, 20, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("currency", "seat_price", "tax_rate"),
    [("EUR", "33.33", "19"), ("JPY", "3333", "10"), ("KWD", "3.333", "5")],
)
def test_the_invoice_of_a_quoted_purchase_charges_exactly_the_quote(
    tmp_path, currency, seat_price, tax_rate
):
    settings = load_settings(
        database_url=None,
        kafka_bootstrap_servers=None,
        data_dir=tmp_path,
        jwt_secret="quote-agreement-secret-0123456789abcdef",
    )
    registry = CollectorRegistry()
    ledger = build_ledger(settings, registry, clock=lambda: NOW)
    invoicer_registry = CollectorRegistry()
    invoicer = build_invoicer(settings, invoicer_registry, clock=lambda: NOW)
    client = TestClient(create_ledger_app(ledger, registry))
    admin = {
        "Authorization": f"Bearer {mint_token(settings, subject='admin', scopes=['billing:admin'])}"
    }
    owner = {"Authorization": f"Bearer {mint_token(settings, subject='owner-1', step_up=True)}"}
    try:
        opened = client.post(
            "/v1/clouds",
            headers=admin,
            json={
                "name": "Müller & Söhne GmbH",
                "owner_id": "owner-1",
                "billing_email": "ap@example.com",
                "currency": currency,
                "seat_price": seat_price,
                "billing_period": "monthly",
                "term_start": "2026-01-31",
                "time_zone": "Europe/Berlin",
                "tax_rate": tax_rate,
                "locale": "de",
                "seats": 3,
            },
        )
        assert opened.status_code == 201, opened.text
        cloud_id = opened.json()["cloud_id"]
        quote = client.post(f"/v1/clouds/{cloud_id}/seat-quotes", headers=owner, json={"seats": 10})
        assert quote.status_code == 200, quote.text
        offer = quote.json()
        bought = client.post(
            f"/v1/clouds/{cloud_id}/seat-purchases",
            headers=owner,
            json={"seats": 10, "quote_id": offer["quote_id"]},
        )
        assert bought.status_code == 201, bought.text

        follower = invoicer.follower(ledger.app, ledger_to_cloud_event)
        follower.catch_up()
        (invoice,) = invoicer.app.invoices_of_cloud(uuid.UUID(cloud_id))
        (line,) = invoice.lines
        assert offer["charge_date"] == "2026-11-20"
        assert line.charge_date.isoformat() == offer["charge_date"]
        assert (line.remaining_days, line.period_days) == (
            offer["days_remaining"],
            offer["days_in_period"],
        )
        # The invoice's own proration agrees with the quote (the quote did not just win):
        # R/D of the added seats, exactly, rounded once; no deviation was counted.
        exact = Decimal(7) * Decimal(seat_price) * line.remaining_days / line.period_days
        assert line.unrounded_amount == exact
        assert line.amount == round_half_up(exact, currency)
        deviations = invoicer_registry.get_sample_value(
            "seatledger_invoicer_quote_deviations_total"
        )
        assert deviations in (None, 0.0)
        assert invoice.net == Decimal(offer["net"])
        assert invoice.tax == Decimal(offer["tax"])
        assert invoice.gross == Decimal(offer["gross"])
        assert str(invoice.net) == offer["net"]  # to the cent: same digits, same scale
        assert invoice.number == "SL-2026-000001"
    finally:
        invoicer.close()
        ledger.close()
