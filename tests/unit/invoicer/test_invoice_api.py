"""The invoicer's HTTP API: who may read invoices, JSON and PDF by content negotiation,
problem+json errors."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pypdf import PdfReader

from seatledger.auth import Authenticator, mint_token
from seatledger.config import load_settings
from seatledger.tracking import Position
from services.invoicer.bootstrap import build_invoicer
from services.invoicer.domain import seat_purchase_invoice
from tests.unit.invoicer.ledger_events import seats_increased, terms

SECRET = "unit-test-secret-0123456789abcdef0123"


@pytest.fixture
def setup(tmp_path):
    settings = load_settings(
        database_url=None, kafka_bootstrap_servers=None, data_dir=tmp_path, jwt_secret=SECRET
    )
    invoicer = build_invoicer(
        settings,
        CollectorRegistry(),
        clock=lambda: datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        env={"PERSISTENCE_MODULE": "eventsourcing.popo"},
    )
    client = TestClient(invoicer.http_app(Authenticator(settings)))
    cloud = uuid.uuid4()
    for offset, day in enumerate((date(2026, 11, 20), date(2026, 11, 28))):
        event = seats_increased(day, cloud_id=cloud, contract=terms(locale="en"))
        invoicer.app.issue(seat_purchase_invoice(event, uuid.uuid4()), Position("t:0", offset))
    yield settings, invoicer, client, cloud
    invoicer.close()


def _auth(settings, subject="owner-1", scopes=()):
    return {"Authorization": f"Bearer {mint_token(settings, subject=subject, scopes=scopes)}"}


def test_the_owner_lists_the_clouds_invoices_in_issue_order(setup):
    settings, _, client, cloud = setup
    response = client.get(f"/v1/clouds/{cloud}/invoices", headers=_auth(settings))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [i["invoice_number"] for i in body["invoices"]] == ["SL-2026-000001", "SL-2026-000002"]
    first = body["invoices"][0]
    assert first["net"] == "20.00"  # 2 seats x 30.00 x R/D = 10/30
    line = first["lines"][0]
    assert (line["remaining_days"], line["period_days"]) == (10, 30)
    assert line["unit_price"] == "30.00"
    assert line["unrounded_amount"] == "20.00"
    assert first["links"]["self"] == f"/v1/invoices/{first['invoice_id']}"


def test_auditors_and_admins_read_any_invoice_others_get_403_or_404(setup):
    settings, _, client, cloud = setup
    path = f"/v1/clouds/{cloud}/invoices"
    assert (
        client.get(path, headers=_auth(settings, "auditor", ["billing:audit"])).status_code == 200
    )
    assert client.get(path, headers=_auth(settings, "admin", ["billing:admin"])).status_code == 200
    forbidden = client.get(path, headers=_auth(settings, "helpdesk", ["billing:licenses"]))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    hidden = client.get(path, headers=_auth(settings, "stranger"))
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    assert client.get(path).status_code == 401


def test_an_invoice_is_json_by_default_and_pdf_when_asked(setup):
    settings, invoicer, client, cloud = setup
    invoice = invoicer.app.invoices_of_cloud(cloud)[1]
    path = f"/v1/invoices/{invoice.id}"
    as_json = client.get(path, headers=_auth(settings))
    assert as_json.status_code == 200
    assert as_json.json()["invoice_number"] == "SL-2026-000002"
    assert as_json.json()["gross"] == "4.76"
    as_pdf = client.get(path, headers={**_auth(settings), "Accept": "application/pdf"})
    assert as_pdf.status_code == 200
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert 'filename="SL-2026-000002.pdf"' in as_pdf.headers["content-disposition"]
    text = PdfReader(io.BytesIO(as_pdf.content)).pages[0].extract_text()
    assert "Invoice SL-2026-000002" in text
    assert "€4.76" in text
    preferring_json = client.get(
        path, headers={**_auth(settings), "Accept": "application/pdf;q=0.5, application/json"}
    )
    assert preferring_json.headers["content-type"].startswith("application/json")
    refused = client.get(path, headers={**_auth(settings), "Accept": "text/html"})
    assert refused.status_code == 406
    assert refused.headers["content-type"] == "application/problem+json"


def test_an_unknown_or_foreign_invoice_is_not_revealed(setup):
    settings, invoicer, client, cloud = setup
    invoice = invoicer.app.invoices_of_cloud(cloud)[0]
    assert (
        client.get(f"/v1/invoices/{invoice.id}", headers=_auth(settings, "other")).status_code
        == 404
    )
    assert client.get(f"/v1/invoices/{uuid.uuid4()}", headers=_auth(settings)).status_code == 404
    assert (
        client.get(f"/v1/invoices/{uuid.uuid4()}", headers=_auth(settings, "a", ["billing:audit"]))
    ).status_code == 404
    bad = client.get("/v1/invoices/not-a-uuid", headers=_auth(settings))
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_a_cloud_without_invoices_lists_none_for_anyone(setup):
    settings, _, client, _ = setup
    response = client.get(f"/v1/clouds/{uuid.uuid4()}/invoices", headers=_auth(settings, "x"))
    assert response.status_code == 200
    assert response.json()["invoices"] == []


def test_metrics_are_served_with_the_invoicers_series(setup):
    _, _, client, _ = setup
    body = client.get("/metrics").text
    assert "seatledger_invoicer_invoices_issued_total" in body
    assert "seatledger_invoicer_consumer_lag_messages" in body
