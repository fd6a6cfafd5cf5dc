"""One ``data`` document per published event type, as a service would publish it.

Plain JSON documents (no service imported): the publisher validates each against its model
before storing it, and the contract test checks every type has one.
"""

from __future__ import annotations

from typing import Any

CLOUD = "0b7d7c52-5f3a-4a1e-9a57-2f2d8f8f4a10"
OWNER = "owner-17"
AT = "2026-03-14T10:15:00+01:00"
TERMS: dict[str, Any] = {
    "name": "Acme GmbH",
    "owner_id": OWNER,
    "billing_email": "billing@acme.example",
    "currency": "EUR",
    "seat_price": "12.50",
    "billing_period": "monthly",
    "term_start": "2026-01-31",
    "time_zone": "Europe/Berlin",
    "tax_rate": "19",
    "locale": "de",
}
ACTOR = {"kind": "user", "id": OWNER}
PERIOD = {"start": "2026-02-28", "end": "2026-03-31"}
BASE = {"cloud_id": CLOUD, "occurred_at": AT, "actor": ACTOR}

SAMPLES: dict[str, dict[str, Any]] = {
    "seatledger.ledger.ContractOpened.v1": {
        **BASE,
        "terms": TERMS,
        "seats": 5,
        "licensed_rights_groups": ["admin", "employee"],
        "first_period": {"start": "2026-01-31", "end": "2026-02-28"},
    },
    "seatledger.ledger.SeatsIncreased.v1": {
        **BASE,
        "seats_before": 5,
        "seats_after": 8,
        "seats_added": 3,
        "charge_date": "2026-03-14",
        "period": PERIOD,
        "terms": TERMS,
        "quote": {
            "quote_id": "3f0c1f4e-2d4b-4a5e-8f7c-1a2b3c4d5e6f",
            "charge_date": "2026-03-14",
            "net": "21.37",
        },
    },
    "seatledger.ledger.LicenseAssigned.v1": {
        **BASE,
        "user_id": "user-4",
        "rights_group": "employee",
        "previous_rights_group": "guest",
        "licenses_assigned": 4,
        "seats": 8,
    },
    "seatledger.ledger.LicenseReleased.v1": {
        **BASE,
        "user_id": "user-4",
        "previous_rights_group": "employee",
        "rights_group": None,
        "licenses_assigned": 3,
        "seats": 8,
    },
    "seatledger.ledger.LicenseRightsGroupChanged.v1": {
        **BASE,
        "user_id": "user-4",
        "rights_group": "admin",
        "previous_rights_group": "employee",
        "licenses_assigned": 4,
        "seats": 8,
    },
    "seatledger.ledger.PeriodRenewed.v1": {
        **BASE,
        "actor": {"kind": "system", "id": "scheduler"},
        "period_index": 2,
        "period": {"start": "2026-03-31", "end": "2026-04-30"},
        "seats_before": 8,
        "seats": 6,
        "reduction_applied": True,
        "licenses_assigned": 3,
        "terms": TERMS,
    },
    "seatledger.ledger.SeatReductionScheduled.v1": {
        **BASE,
        "seats": 6,
        "seats_current": 8,
        "effective_date": "2026-03-31",
    },
    "seatledger.ledger.BillingEmailChanged.v1": {
        **BASE,
        "billing_email": "accounts@acme.example",
    },
    "seatledger.invoicer.InvoiceIssued.v1": {
        "invoice_id": "9a1e2b3c-4d5e-4f60-8a7b-0c1d2e3f4a5b",
        "invoice_number": "SL-2026-000042",
        "cloud_id": CLOUD,
        "kind": "seat_purchase",
        "issue_date": "2026-03-14",
        "issued_at": "2026-03-14T09:15:02Z",
        "time_zone": "Europe/Berlin",
        "customer": {
            "name": "Acme GmbH",
            "owner_id": OWNER,
            "billing_email": "billing@acme.example",
            "locale": "de",
        },
        "currency": "EUR",
        "tax_rate": "19",
        "lines": [
            {
                "kind": "seat_purchase",
                "description": "3 seats, 14.03.2026 - 30.03.2026",
                "quantity": 3,
                "unit_price": "12.50",
                "period": PERIOD,
                "charge_date": "2026-03-14",
                "remaining_days": 17,
                "period_days": 31,
                "unrounded_amount": "20.564516129032258064516129",
                "amount": "20.56",
            }
        ],
        "net": "20.56",
        "tax": "3.91",
        "gross": "24.47",
        "caused_by": {
            "event_id": "5b6c7d8e-9f00-4112-8334-556677889900",
            "event_type": "seatledger.ledger.SeatsIncreased.v1",
        },
    },
    "seatledger.notifier.EmailSent.v1": {
        "invoice_id": "9a1e2b3c-4d5e-4f60-8a7b-0c1d2e3f4a5b",
        "invoice_number": "SL-2026-000042",
        "cloud_id": CLOUD,
        "message_id": "<invoice-9a1e2b3c@seatledger.invalid>",
        "attempts": 1,
        "sent_at": "2026-03-14T09:15:05Z",
    },
    "seatledger.notifier.EmailFailed.v1": {
        "invoice_id": "9a1e2b3c-4d5e-4f60-8a7b-0c1d2e3f4a5b",
        "invoice_number": "SL-2026-000042",
        "cloud_id": CLOUD,
        "message_id": None,
        "attempts": 5,
        "failed_at": "2026-03-14T11:15:05Z",
        "reason": "retries_exhausted",
        "detail": "451 4.7.1 try again later",
    },
}
