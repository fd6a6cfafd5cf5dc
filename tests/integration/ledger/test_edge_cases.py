"""Idempotency keys, malformed bodies and unknown clouds: clear problem+json, nothing recorded."""

from __future__ import annotations

import threading
import time

import pytest

from seatledger.http.idempotency import request_fingerprint
from tests.integration.ledger.conftest import CLOUD_BODY

pytestmark = pytest.mark.integration


def test_the_same_key_and_body_replays_the_first_response_and_records_once(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    headers = {**ledger.owner, "Idempotency-Key": "purchase-1"}
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    first = ledger.client.post(url, json={"seats": 5}, headers=headers)
    count = ledger.event_count()
    ledger.clock.advance(minutes=1)
    again = ledger.client.post(url, json={"seats": 5}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert ledger.event_count() == count


def test_the_same_key_with_another_body_is_answered_422(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    headers = {**ledger.owner, "Idempotency-Key": "purchase-2"}
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    assert ledger.client.post(url, json={"seats": 5}, headers=headers).status_code == 201
    count = ledger.event_count()
    other = ledger.client.post(url, json={"seats": 6}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert ledger.event_count() == count


def test_the_same_key_still_in_flight_is_answered_409(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    body = b'{"seats": 5}'
    # Another node has claimed the key and not answered yet.
    store = ledger.components.idempotency
    digest = request_fingerprint("POST", url, b"", body)
    assert store.claim("owner-1", "purchase-3", digest).outcome == "new"
    response = ledger.client.post(
        url,
        content=body,
        headers={
            **ledger.owner,
            "Idempotency-Key": "purchase-3",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert ledger.event_count() == 1


def test_keys_are_scoped_by_caller(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/licenses"
    body = {"user_id": "a", "rights_group": "admin"}
    owner = ledger.client.post(url, json=body, headers={**ledger.owner, "Idempotency-Key": "k"})
    other = ledger.client.post(
        url,
        json=body,
        headers={**ledger.headers("provisioner", "billing:licenses"), "Idempotency-Key": "k"},
    )
    assert owner.status_code == 201
    assert other.status_code == 409  # processed on its own: the license is already held
    assert "idempotent-replayed" not in other.headers


def test_a_refusal_by_a_business_rule_is_replayed(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    headers = {**ledger.owner, "Idempotency-Key": "reduce-1"}
    url = f"/v1/clouds/{cloud_id}/seat-reductions"
    first = ledger.client.post(url, json={"seats": 7}, headers=headers)
    again = ledger.client.post(url, json={"seats": 7}, headers=headers)
    assert first.status_code == again.status_code == 409
    assert first.json()["code"] == "InvalidSeatReduction"
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


def test_the_step_up_retry_with_the_same_key_is_processed_not_replayed(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    key = {"Idempotency-Key": "purchase-step-up"}
    refused = ledger.client.post(
        url, json={"seats": 5}, headers={**ledger.headers("owner-1"), **key}
    )
    assert refused.status_code == 401
    assert 'error="insufficient_user_authentication"' in refused.headers["www-authenticate"]
    # RFC 9470: the client re-authenticates and retries the same request with its key.
    bought = ledger.client.post(url, json={"seats": 5}, headers={**ledger.owner, **key})
    assert bought.status_code == 201, bought.text
    assert "idempotent-replayed" not in bought.headers
    assert bought.json()["seats"] == 5
    again = ledger.client.post(url, json={"seats": 5}, headers={**ledger.owner, **key})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert ledger.event_count() == 2  # opened, one purchase


def test_a_forbidden_request_leaves_the_key_free_for_a_caller_granted_the_right(ledger):
    key = {"Idempotency-Key": "open-1"}
    body = {**CLOUD_BODY, "cloud_id": "3c9d6f0e-1a2b-4c5d-8e7f-9a0b1c2d3e4f"}
    forbidden = ledger.client.post(
        "/v1/clouds", json=body, headers={**ledger.headers("ops", "billing:audit"), **key}
    )
    assert forbidden.status_code == 403
    granted = ledger.client.post(
        "/v1/clouds", json=body, headers={**ledger.headers("ops", "billing:admin"), **key}
    )
    assert granted.status_code == 201, granted.text
    assert "idempotent-replayed" not in granted.headers
    assert ledger.event_count() == 1


def _seats_increased(ledger, cloud_id: str) -> int:
    history = ledger.client.get(f"/v1/clouds/{cloud_id}/events", headers=ledger.admin).json()
    return sum(e["type"] == "seatledger.ledger.SeatsIncreased.v1" for e in history["events"])


def test_a_concurrency_conflict_leaves_the_key_free_for_the_retry(ledgers):
    node_a, node_b = ledgers(max_attempts=1), ledgers()
    cloud_id = node_a.open_cloud()["cloud_id"]  # node A keeps the cloud it saved
    assign = node_b.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "b", "rights_group": "admin"},
        headers=node_b.owner,
    )
    assert assign.status_code == 201  # node A's copy is now behind
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    headers = {**node_a.owner, "Idempotency-Key": "purchase-conflict"}
    lost = node_a.client.post(url, json={"seats": 5}, headers=headers)
    assert lost.status_code == 409, lost.text
    assert lost.json()["code"] == "ConcurrencyConflict"
    retried = node_a.client.post(url, json={"seats": 5}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert _seats_increased(node_a, cloud_id) == 1


def test_a_purchase_answered_503_on_timeout_is_kept_for_its_key_until_it_commits(ledgers):
    ledger = ledgers(command_timeout_s=0.1)
    cloud_id = ledger.open_cloud()["cloud_id"]
    app = ledger.components.app
    save = app.save
    committed = threading.Event()

    def slow_save(*args, **kwargs):  # a store that takes longer than the command timeout
        time.sleep(1.0)
        try:
            return save(*args, **kwargs)
        finally:
            committed.set()

    app.save = slow_save
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    headers = {**ledger.owner, "Idempotency-Key": "purchase-slow"}
    first = ledger.client.post(url, json={"seats": 5}, headers=headers)
    assert first.status_code == 503, first.text
    in_flight = ledger.client.post(url, json={"seats": 5}, headers=headers)
    assert in_flight.status_code == 409
    assert in_flight.json()["title"] == "Request in progress"
    assert committed.wait(5)
    app.save = save
    deadline = time.monotonic() + 5
    while True:
        retried = ledger.client.post(url, json={"seats": 5}, headers=headers)
        if retried.status_code != 409 or retried.json()["title"] != "Request in progress":
            break
        assert time.monotonic() < deadline, "the key was never settled"
        time.sleep(0.02)
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["purchase"]["seats_after"] == 5
    assert _seats_increased(ledger, cloud_id) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seat_price": 31.0}, "seat_price"),  # money is never a float
        ({"seat_price": "abc"}, "seat_price"),
        ({"seats": 0}, "seats"),
        ({"seats": "3"}, "seats"),
        ({"billing_period": "weekly"}, "billing_period"),
        ({"term_start": "2026-02-30"}, "term_start"),
        ({"currency": "eur"}, "currency"),
        ({"unexpected": 1}, "unexpected"),
        ({"name": None}, "name"),
        ({"time_zone": "Mars/Base"}, "time_zone"),
        ({"tax_rate": "-1"}, "tax_rate"),
        ({"billing_email": "not-an-address"}, "billing_email"),
    ],
)
def test_a_malformed_cloud_is_answered_422_and_records_nothing(ledger, changes, field):
    response = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, **changes}, headers=ledger.admin
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert any(field in e["location"] for e in problem["errors"])
    assert ledger.event_count() == 0


@pytest.mark.parametrize(
    ("changes", "title"),
    [
        ({"currency": "XYZ"}, "Invalid contract"),
    ],
)
def test_invalid_terms_are_answered_422_and_record_nothing(ledger, changes, title):
    response = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, **changes}, headers=ledger.admin
    )
    assert response.status_code == 422
    assert response.json()["title"] == title
    assert ledger.event_count() == 0


def test_unparseable_json_and_unknown_routes_are_problems(ledger):
    bad = ledger.client.post(
        "/v1/clouds",
        content=b"{not json",
        headers={**ledger.admin, "Content-Type": "application/json"},
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    unknown = ledger.client.get("/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    wrong_method = ledger.client.patch("/v1/clouds")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert ledger.event_count() == 0


def test_unknown_clouds_are_answered_404_for_every_route(ledger):
    ghost = "00000000-0000-4000-8000-000000000000"
    calls = [
        ("get", f"/v1/clouds/{ghost}", None),
        ("get", f"/v1/clouds/{ghost}/events", None),
        ("post", f"/v1/clouds/{ghost}/seat-quotes", {"seats": 4}),
        ("post", f"/v1/clouds/{ghost}/seat-purchases", {"seats": 4}),
        ("post", f"/v1/clouds/{ghost}/seat-reductions", {"seats": 1}),
        ("post", f"/v1/clouds/{ghost}/licenses", {"user_id": "a", "rights_group": "admin"}),
        ("delete", f"/v1/clouds/{ghost}/licenses/a", None),
        ("put", f"/v1/clouds/{ghost}/billing-email", {"billing_email": "a@b.example"}),
    ]
    headers = ledger.headers("admin-1", "billing:admin", "billing:licenses", step_up=True)
    for method, url, body in calls:
        kwargs = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        response = getattr(ledger.client, method)(url, **kwargs)
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    not_uuid = ledger.client.get("/v1/clouds/not-a-uuid", headers=headers)
    assert not_uuid.status_code == 422
    assert ledger.event_count() == 0


def test_a_purchase_that_does_not_raise_the_seats_is_refused(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    response = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": 3}, headers=ledger.owner
    )
    assert response.status_code == 409
    assert response.json()["code"] == "SeatsMustGrow"
    assert ledger.event_count() == 1


def test_a_quote_for_a_past_or_out_of_period_date_is_refused(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/seat-quotes"
    past = ledger.client.post(
        url, json={"seats": 4, "effective_date": "2026-03-09"}, headers=ledger.owner
    )
    later = ledger.client.post(
        url, json={"seats": 4, "effective_date": "2026-04-05"}, headers=ledger.owner
    )
    ok = ledger.client.post(
        url, json={"seats": 4, "effective_date": "2026-03-30"}, headers=ledger.owner
    )
    assert (past.status_code, later.status_code, ok.status_code) == (422, 422, 200)
    assert ok.json()["net"] == "1.00"  # one day of one seat at 31.00 over 31 days
