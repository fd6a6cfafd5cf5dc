"""The ledger's API journeys, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import date
from decimal import Decimal
from uuid import UUID

import pytest

from seatledger.billing import Period, prorate, tax_amount
from seatledger.logging import configure_logging
from tests.integration.ledger.conftest import CLOUD_BODY

pytestmark = pytest.mark.integration


def test_opening_a_cloud_answers_201_with_the_cloud_and_its_current_period(ledger):
    cloud = ledger.open_cloud()
    assert cloud["seats"] == 3
    assert cloud["licenses_free"] == 3
    assert cloud["current_period"] == {"index": 1, "start": "2026-02-28", "end": "2026-03-31"}
    assert cloud["seat_price"] == "31.00"
    assert cloud["version"] == 1
    got = ledger.client.get(f"/v1/clouds/{cloud['cloud_id']}", headers=ledger.owner)
    assert got.status_code == 200
    assert got.json() == cloud


def test_opening_with_a_given_cloud_id_is_idempotent(ledger):
    cloud_id = "7f0a6a4e-3c55-4c2e-9b1e-4cbe6c1f3a10"
    first = ledger.open_cloud(cloud_id=cloud_id)
    again = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, "cloud_id": cloud_id}, headers=ledger.admin
    )
    assert again.status_code == 200
    assert again.json()["cloud_id"] == cloud_id
    other = ledger.client.post(
        "/v1/clouds",
        json={**CLOUD_BODY, "cloud_id": cloud_id, "seat_price": "99.00"},
        headers=ledger.admin,
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert first["cloud_id"] == cloud_id
    assert ledger.event_count() == 1


def test_opening_an_existing_cloud_id_with_other_seats_is_refused_409(ledger):
    cloud_id = "5b2f9a1c-8d3e-4f6a-9c7b-2e1d0f3a4b5c"
    ledger.open_cloud(cloud_id=cloud_id)  # 3 seats
    other = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, "cloud_id": cloud_id, "seats": 5}, headers=ledger.admin
    )
    assert other.status_code == 409, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "CloudAlreadyExists"
    assert ledger.event_count() == 1
    # After a purchase the opening is still recognised by its opening seats.
    bought = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": 5}, headers=ledger.owner
    )
    assert bought.status_code == 201, bought.text
    same = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, "cloud_id": cloud_id}, headers=ledger.admin
    )
    assert same.status_code == 200, same.text
    assert same.json()["seats"] == 5
    assert ledger.event_count() == 2


def test_a_quote_records_nothing_and_a_purchase_with_it_is_charged_the_quoted_amount(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    before = ledger.event_count()
    quoted = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-quotes", json={"seats": 5}, headers=ledger.owner
    )
    assert quoted.status_code == 200, quoted.text
    quote = quoted.json()
    period = Period(date(2026, 2, 28), date(2026, 3, 31))
    expected = prorate(2, Decimal("31.00"), period, date(2026, 3, 10), "EUR")
    assert quote["net"] == str(expected.net) == "42.00"  # 2 x 31 x 21/31
    assert quote["tax"] == str(tax_amount(expected.net, Decimal(19), "EUR")) == "7.98"
    assert quote["gross"] == "49.98"
    assert (quote["days_remaining"], quote["days_in_period"]) == (21, 31)
    assert quote["expires_at"] == "2026-03-10T11:15:00+00:00"
    assert ledger.event_count() == before  # a quote is not an event

    ledger.clock.advance(minutes=10)  # still valid, same local day
    bought = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases",
        json={"seats": 5, "quote_id": quote["quote_id"]},
        headers=ledger.owner,
    )
    assert bought.status_code == 201, bought.text
    purchase = bought.json()["purchase"]
    assert purchase["net"] == "42.00"
    assert purchase["quote_id"] == quote["quote_id"]
    assert purchase["charge_date"] == "2026-03-10"
    history = ledger.client.get(f"/v1/clouds/{cloud_id}/events", headers=ledger.admin).json()
    increased = history["events"][-1]
    assert increased["type"] == "seatledger.ledger.SeatsIncreased.v1"
    assert increased["data"]["quote"]["net"] == "42.00"
    assert increased["data"]["period"] == {"start": "2026-02-28", "end": "2026-03-31"}


def test_an_expired_stale_or_mismatching_quote_is_answered_409_and_records_nothing(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}"
    quote = ledger.client.post(f"{url}/seat-quotes", json={"seats": 5}, headers=ledger.owner).json()
    count = ledger.event_count()
    mismatch = ledger.client.post(
        f"{url}/seat-purchases",
        json={"seats": 6, "quote_id": quote["quote_id"]},
        headers=ledger.owner,
    )
    assert mismatch.status_code == 409
    assert mismatch.json()["title"] == "Quote not honoured"
    ledger.clock.advance(minutes=16)
    expired = ledger.client.post(
        f"{url}/seat-purchases",
        json={"seats": 5, "quote_id": quote["quote_id"]},
        headers=ledger.owner,
    )
    assert expired.status_code == 409
    assert "expired" in expired.json()["detail"]
    fresh = ledger.client.post(f"{url}/seat-quotes", json={"seats": 5}, headers=ledger.owner).json()
    ledger.client.post(f"{url}/seat-purchases", json={"seats": 4}, headers=ledger.owner)
    count = ledger.event_count()
    stale = ledger.client.post(
        f"{url}/seat-purchases",
        json={"seats": 5, "quote_id": fresh["quote_id"]},
        headers=ledger.owner,
    )
    assert stale.status_code == 409
    assert "changed" in stale.json()["detail"]
    assert ledger.event_count() == count


def test_a_quote_before_local_midnight_expires_at_midnight(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    ledger.clock.now = ledger.clock.now.replace(hour=22, minute=55)  # 23:55 in Berlin
    quote = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-quotes", json={"seats": 4}, headers=ledger.owner
    ).json()
    assert quote["expires_at"] == "2026-03-10T23:00:00+00:00"


def test_licenses_are_assigned_and_released_by_the_owner_or_the_licenses_scope(ledger):
    cloud_id = ledger.open_cloud(seats=2)["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/licenses"
    provisioner = ledger.headers("user-admin-service", "billing:licenses")
    first = ledger.client.post(
        url, json={"user_id": "a", "rights_group": "admin"}, headers=ledger.owner
    )
    assert first.status_code == 201
    assert first.json()["licenses_free"] == 1
    second = ledger.client.post(
        url, json={"user_id": "b", "rights_group": "employee"}, headers=provisioner
    )
    assert second.status_code == 201
    assert second.json()["licenses_free"] == 0
    full = ledger.client.post(
        url, json={"user_id": "c", "rights_group": "employee"}, headers=provisioner
    )
    assert full.status_code == 409
    assert full.json()["code"] == "NoFreeSeat"
    twice = ledger.client.post(
        url, json={"user_id": "a", "rights_group": "employee"}, headers=provisioner
    )
    assert twice.status_code == 409
    assert twice.json()["code"] == "LicenseAlreadyHeld"
    guest = ledger.client.post(
        url, json={"user_id": "g", "rights_group": "guest"}, headers=provisioner
    )
    assert guest.status_code == 422
    released = ledger.client.delete(f"{url}/a", headers=provisioner)
    assert released.status_code == 204
    again = ledger.client.delete(f"{url}/a", headers=provisioner)
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"
    cloud = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=ledger.owner).json()
    assert cloud["licenses"] == [{"user_id": "b", "rights_group": "employee"}]


def test_as_of_answers_the_state_at_that_instant(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    opened_at = ledger.clock.now
    ledger.clock.advance(hours=1)
    assert (
        ledger.client.post(
            f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": 7}, headers=ledger.owner
        ).status_code
        == 201
    )
    ledger.clock.advance(hours=1)
    url = f"/v1/clouds/{cloud_id}"
    now = ledger.client.get(url, headers=ledger.owner).json()
    assert now["seats"] == 7
    assert now["version"] == 2
    past = ledger.client.get(
        url, params={"as_of": "2026-03-10T12:30:00+01:00"}, headers=ledger.owner
    ).json()
    assert past["seats"] == 3
    assert past["version"] == 1
    assert past["as_of"] == "2026-03-10T12:30:00+01:00"
    at_open = ledger.client.get(url, params={"as_of": opened_at.isoformat()}, headers=ledger.owner)
    assert at_open.json()["version"] == 1
    before = ledger.client.get(url, params={"as_of": "2026-03-10T10:00:00Z"}, headers=ledger.owner)
    assert before.status_code == 404
    naive = ledger.client.get(url, params={"as_of": "2026-03-10T12:30:00"}, headers=ledger.owner)
    assert naive.status_code == 422
    assert naive.headers["content-type"] == "application/problem+json"


def test_a_reduction_is_scheduled_and_applied_at_the_next_period_start(ledger):
    cloud_id = ledger.open_cloud(seats=5)["cloud_id"]
    url = f"/v1/clouds/{cloud_id}"
    for user in ("a", "b", "c"):
        ledger.client.post(
            f"{url}/licenses",
            json={"user_id": user, "rights_group": "employee"},
            headers=ledger.owner,
        )
    reduced = ledger.client.post(f"{url}/seat-reductions", json={"seats": 2}, headers=ledger.owner)
    assert reduced.status_code == 201
    assert reduced.json()["scheduled_reduction"] == {"seats": 2, "effective_date": "2026-03-31"}
    ledger.clock.now = ledger.clock.now.replace(month=4, day=2)
    assert ledger.components.scheduler.run_once() == 1
    cloud = ledger.client.get(url, headers=ledger.owner).json()
    assert cloud["seats"] == 3  # never below the three licenses assigned
    assert cloud["scheduled_reduction"] is None
    renewal = ledger.client.get(f"{url}/events", headers=ledger.admin).json()["events"][-1]
    assert renewal["data"]["seats"] == 3
    assert renewal["data"]["licenses_assigned"] == 3


def test_the_owner_overview_lists_each_cloud_with_seats_and_licenses(ledger):
    first = ledger.open_cloud(seats=2)["cloud_id"]
    second = ledger.open_cloud(seats=4, name="Acme Labs")["cloud_id"]
    ledger.open_cloud(owner_id="someone-else")
    ledger.client.post(
        f"/v1/clouds/{first}/licenses",
        json={"user_id": "a", "rights_group": "admin"},
        headers=ledger.owner,
    )
    overview = ledger.client.get("/v1/owners/owner-1/clouds", headers=ledger.owner)
    assert overview.status_code == 200
    clouds = {c["cloud_id"]: c for c in overview.json()["clouds"]}
    assert set(clouds) == {first, second}
    assert (
        clouds[first]["seats"],
        clouds[first]["licenses_assigned"],
        clouds[first]["licenses_free"],
    ) == (2, 1, 1)
    other = ledger.client.get("/v1/owners/owner-1/clouds", headers=ledger.headers("intruder"))
    assert other.status_code == 403


def test_the_billing_email_is_changed_by_the_owner(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    changed = ledger.client.put(
        f"/v1/clouds/{cloud_id}/billing-email",
        json={"billing_email": "ap@acme.example"},
        headers=ledger.owner,
    )
    assert changed.status_code == 200
    assert changed.json()["billing_email"] == "ap@acme.example"
    bad = ledger.client.put(
        f"/v1/clouds/{cloud_id}/billing-email", json={"billing_email": "nope"}, headers=ledger.owner
    )
    assert bad.status_code == 422


def test_health_readiness_and_metrics_are_served(ledger):
    assert ledger.client.get("/healthz").json() == {"status": "ok"}
    assert ledger.client.get("/readyz").json()["status"] == "ready"
    cloud_id = ledger.open_cloud()["cloud_id"]
    ledger.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "a", "rights_group": "nope"},
        headers=ledger.owner,
    )
    text = ledger.client.get("/metrics").text
    assert 'seatledger_ledger_commands_total{command="open_cloud",outcome="success"} 1.0' in text
    assert (
        'seatledger_ledger_commands_total{command="assign_license",outcome="rejected"} 1.0' in text
    )
    assert 'seatledger_ledger_events_appended_total{event_type="ContractOpened"} 1.0' in text
    assert "seatledger_ledger_command_duration_seconds_bucket" in text
    assert "seatledger_ledger_concurrency_conflicts_total 0.0" in text
    assert ledger.client.get("/openapi.json").json()["paths"][
        "/v1/clouds/{cloud_id}/seat-purchases"
    ]


def test_one_canonical_log_line_per_request_without_emails_or_tokens(ledger, json_logs):
    configure_logging("INFO", "json")
    json_logs()
    cloud_id = ledger.open_cloud()["cloud_id"]
    ledger.client.put(
        f"/v1/clouds/{cloud_id}/billing-email",
        json={"billing_email": "secret-person@acme.example"},
        headers={**ledger.owner, "X-Request-ID": "req-123"},
    )
    err = json_logs()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 2
    put = requests[-1]
    assert put["request_id"] == "req-123"
    assert put["cloud_id"] == cloud_id
    assert put["outcome"] == "success"
    assert put["status"] == 200
    assert put["duration_s"] >= 0
    assert put["route"] == "/v1/clouds/{cloud_id}/billing-email"
    assert requests[0]["cloud_id"] == cloud_id  # the created cloud's id
    assert "acme.example" not in err
    assert "Bearer" not in err
    assert "eyJ" not in err


def test_expired_quotes_are_purged_by_the_scheduler(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    quote = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-quotes", json={"seats": 4}, headers=ledger.owner
    ).json()
    store = ledger.components.service.quotes
    assert store.get(UUID(quote["quote_id"])) is not None
    ledger.clock.advance(days=2)
    ledger.components.scheduler.run_once()
    assert store.get(UUID(quote["quote_id"])) is None


def test_an_idempotent_replay_is_logged_with_its_cloud_id(ledger, json_logs):
    configure_logging("INFO", "json")
    cloud_id = ledger.open_cloud()["cloud_id"]
    headers = {**ledger.owner, "Idempotency-Key": "log-1"}
    body = {"user_id": "a", "rights_group": "admin"}
    ledger.client.post(f"/v1/clouds/{cloud_id}/licenses", json=body, headers=headers)
    json_logs()
    ledger.client.post(f"/v1/clouds/{cloud_id}/licenses", json=body, headers=headers)
    lines = [json.loads(x) for x in json_logs().splitlines() if x.startswith("{")]
    (replayed,) = [x for x in lines if x.get("event") == "request"]
    assert replayed["cloud_id"] == cloud_id
    assert replayed["status"] == 201


def test_the_running_scheduler_renews_a_due_cloud_by_itself(ledgers):
    node = ledgers(scheduler_interval_s=0.05)
    cloud_id = node.open_cloud()["cloud_id"]
    node.components.start(scheduler=True)
    node.clock.now = node.clock.now.replace(month=4, day=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cloud = node.client.get(f"/v1/clouds/{cloud_id}", headers=node.owner).json()
        if not cloud["renewal_pending"]:
            break
        time.sleep(0.05)
    assert cloud["renewal_pending"] is False
    assert cloud["recorded_period"] == {"index": 2, "start": "2026-03-31", "end": "2026-04-30"}
    assert cloud["current_period"] == cloud["recorded_period"]
    assert cloud["version"] == 2  # PeriodRenewed recorded
    node.components.scheduler.stop()
