"""Hostile and careless input at the ledger's edge: every refusal is a 4xx problem that records
nothing, a caller without rights learns nothing from validation, and what an older release let
in (odd user ids, a term in the year 9999) never turns into a 500."""

from __future__ import annotations

import time
import uuid
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from services.ledger.domain import Actor, Cloud, ContractTerms
from tests.integration.ledger.conftest import CLOUD_BODY, T0

pytestmark = pytest.mark.integration

LICENSES = ("provisioner", "billing:licenses")


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def open_refused(ledger: Any, **changes: Any) -> dict[str, Any]:
    response = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, **changes}, headers=ledger.admin
    )
    problem = assert_problem(response, 422)
    assert ledger.event_count() == 0
    return problem


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {e["location"] for e in problem.get("errors", [])}


# --------------------------------------------------------------------------------------------
# Opening a contract: each field by its rule.


@pytest.mark.parametrize("term_start", ["9999-12-16", "2200-01-01", "1999-12-31", "0001-01-01"])
def test_a_term_start_outside_the_business_years_is_refused_and_records_nothing(ledger, term_start):
    assert "body.term_start" in fields_of(open_refused(ledger, term_start=term_start))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seat_price", "1" * 21),
        ("seat_price", "1" * 16),
        ("seat_price", "0E-5000000"),
        ("tax_rate", "0E-5000000"),
        ("seat_price", "1_000"),
        ("seat_price", "١٢"),
        ("seat_price", " 12 "),
        ("seat_price", "1e3"),
        ("seat_price", "+12"),
        ("seat_price", "-1"),
        ("seat_price", "1.123456789"),
        ("tax_rate", "100.01"),
        ("tax_rate", "19 "),
    ],
)
def test_a_decimal_in_another_spelling_or_out_of_bounds_is_refused(ledger, field, value):
    started = time.perf_counter()
    problem = open_refused(ledger, **{field: value})
    assert f"body.{field}" in fields_of(problem)
    assert len(str(problem)) < 2_000
    assert time.perf_counter() - started < 2


def test_the_largest_price_of_the_rule_is_accepted_and_answered_as_sent(ledger):
    cloud = ledger.open_cloud(seat_price="999999999999999.99999999", tax_rate="100")
    assert cloud["seat_price"] == "999999999999999.99999999"
    assert cloud["tax_rate"] == "100"


@pytest.mark.parametrize(
    "zone", ["localtime", "posixrules", "right/UTC", "posix/Europe/Berlin", "Factory"]
)
def test_a_zone_database_file_that_is_not_a_zone_is_refused(ledger, zone):
    assert "body.time_zone" in fields_of(open_refused(ledger, time_zone=zone))


@pytest.mark.parametrize(
    "address",
    [
        "a,b@example.com",
        "a\x01b@example.com",
        "a(b)@example.com",
        '"a b"@example.com',
        "Billing <billing@acme.example>",
        "billing@localhost",
    ],
)
def test_an_address_the_sender_cannot_deliver_is_refused_at_opening_and_change(ledger, address):
    assert "body.billing_email" in fields_of(open_refused(ledger, billing_email=address))
    cloud_id = ledger.open_cloud()["cloud_id"]
    count = ledger.event_count()
    response = ledger.client.put(
        f"/v1/clouds/{cloud_id}/billing-email",
        json={"billing_email": address},
        headers=ledger.owner,
    )
    assert "body.billing_email" in fields_of(assert_problem(response, 422))
    assert ledger.event_count() == count


def test_a_billing_address_is_stored_normalized(ledger):
    cloud = ledger.open_cloud(billing_email="Billing@ACME.Example")
    assert cloud["billing_email"] == "Billing@acme.example"


@pytest.mark.parametrize("name", ["Acme\x00GmbH", "Acme\nGmbH", "Acme\u202eHbmG", "   ", ""])
def test_a_name_with_control_characters_or_blank_is_refused(ledger, name):
    assert "body.name" in fields_of(open_refused(ledger, name=name))


@pytest.mark.parametrize("owner_id", ["a/b", "../x", "owner 1", "", ".", "owner\x00"])
def test_an_owner_id_outside_the_identifier_rule_is_refused(ledger, owner_id):
    assert "body.owner_id" in fields_of(open_refused(ledger, owner_id=owner_id))


def test_token_subjects_open_clouds_and_see_their_overview(ledger):
    for owner in ("auth0|123", "someone@example.com", str(uuid.uuid4())):
        cloud_id = ledger.open_cloud(owner_id=owner)["cloud_id"]
        response = ledger.client.get(
            f"/v1/owners/{quote(owner, safe='')}/clouds", headers=ledger.headers(owner)
        )
        assert response.status_code == 200, response.text
        assert [c["cloud_id"] for c in response.json()["clouds"]] == [cloud_id]


# --------------------------------------------------------------------------------------------
# User ids: refused for a new license, released when recorded by an older release.


@pytest.mark.parametrize("user_id", ["a/b", "../x", "a b", "", "ü"])
def test_a_license_for_a_user_id_outside_the_rule_is_refused(ledger, user_id):
    cloud_id = ledger.open_cloud()["cloud_id"]
    count = ledger.event_count()
    lic = ledger.headers(*LICENSES)
    response = ledger.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": user_id, "rights_group": "employee"},
        headers=lic,
    )
    assert "body.user_id" in fields_of(assert_problem(response, 422))
    put = ledger.client.put(
        f"/v1/clouds/{cloud_id}/users/{quote(user_id, safe='')}/rights-group",
        json={"rights_group": "employee"},
        headers=lic,
    )
    assert put.status_code in (404, 422), put.text
    assert put.headers["content-type"] == "application/problem+json"
    assert ledger.event_count() == count


def legacy_cloud(ledger: Any, *, owner_id: str = "owner-1", **changes: Any) -> Cloud:
    """A cloud recorded as an older release did: straight through the aggregate's events,
    without the field rules of today."""
    terms = ContractTerms(
        name="Legacy AG",
        owner_id=owner_id,
        billing_email="billing@legacy.example",
        currency="EUR",
        seat_price=Decimal("10.00"),
        billing_period="monthly",
        term_start=date(2026, 1, 1),
        time_zone="Europe/Berlin",
        tax_rate=Decimal("19"),
        locale="de",
    )
    terms = ContractTerms(**{**terms.__dict__, **changes})
    cloud: Cloud = Cloud._create(
        Cloud.ContractOpened,
        id=uuid.uuid4(),
        timestamp=T0,
        terms=terms,
        seats=5,
        licensed_rights_groups=("admin", "employee"),
        first_period_index=0,
        actor=Actor("user", "admin-1"),
    )
    return cloud


def record_legacy_license(cloud: Cloud, user_id: str) -> None:
    cloud.trigger_event(
        Cloud.LicenseAssigned,
        timestamp=T0,
        user_id=user_id,
        rights_group="employee",
        licenses_assigned=len(cloud.licenses) + 1,
        seats=cloud.seats,
        actor=Actor("user", "admin-1"),
    )


def test_licenses_recorded_for_ids_with_slashes_are_released_and_regrouped(ledger):
    cloud = legacy_cloud(ledger)
    for user_id in ("a/b", "../x", "c/d"):
        record_legacy_license(cloud, user_id)
    ledger.components.app.save(cloud)
    lic = ledger.headers(*LICENSES)
    base = f"/v1/clouds/{cloud.id}"

    released = ledger.client.delete(f"{base}/licenses/{quote('a/b', safe='')}", headers=lic)
    assert released.status_code == 204, released.text
    dotted = ledger.client.delete(
        f"{base}/licenses/{quote('../x', safe='')}?rights_group=guest", headers=lic
    )
    assert dotted.status_code == 204, dotted.text
    regrouped = ledger.client.put(
        f"{base}/users/{quote('c/d', safe='')}/rights-group",
        json={"rights_group": "admin"},
        headers=lic,
    )
    assert regrouped.status_code == 200, regrouped.text
    assert regrouped.json()["user_id"] == "c/d"
    assert regrouped.json()["outcome"] == "changed"

    state = ledger.client.get(base, headers=ledger.owner).json()
    assert state["licenses"] == [{"user_id": "c/d", "rights_group": "admin"}]
    assert state["licenses_free"] == 4


def test_an_owner_id_with_a_slash_recorded_before_the_rule_has_its_overview(ledger):
    cloud = legacy_cloud(ledger, owner_id="team/a")
    ledger.components.app.save(cloud)
    response = ledger.client.get(
        "/v1/owners/team%2Fa/clouds", headers=ledger.headers("audit-1", "billing:audit")
    )
    assert response.status_code == 200, response.text
    assert response.json()["owner_id"] == "team/a"
    assert [c["cloud_id"] for c in response.json()["clouds"]] == [str(cloud.id)]


# --------------------------------------------------------------------------------------------
# A cloud whose periods cannot be computed (a term recorded in the year 9999).


def test_an_unbillable_cloud_is_marked_in_the_overview_and_answers_problems(ledger):
    healthy = ledger.open_cloud()["cloud_id"]
    broken = legacy_cloud(ledger, term_start=date(9999, 12, 16))
    ledger.components.app.save(broken)
    count = ledger.event_count()

    overview = ledger.client.get("/v1/owners/owner-1/clouds", headers=ledger.owner)
    assert overview.status_code == 200, overview.text
    by_id = {c["cloud_id"]: c for c in overview.json()["clouds"]}
    assert by_id[healthy]["status"] == "active"
    assert by_id[healthy]["seats"] == 3
    assert by_id[str(broken.id)]["status"] == "unbillable"
    assert "9999-12-16" in by_id[str(broken.id)]["reason"]

    base = f"/v1/clouds/{broken.id}"
    problem = assert_problem(ledger.client.get(base, headers=ledger.owner), 409)
    assert problem["code"] == "UnbillableContract"
    for method, url, body in [
        ("post", f"{base}/seat-quotes", {"seats": 6}),
        ("post", f"{base}/seat-purchases", {"seats": 6}),
        ("post", f"{base}/seat-reductions", {"seats": 1}),
        ("put", f"{base}/billing-email", {"billing_email": "new@legacy.example"}),
    ]:
        response = getattr(ledger.client, method)(url, json=body, headers=ledger.owner)
        assert_problem(response, 409)
    lic = ledger.headers(*LICENSES)
    assign = ledger.client.post(
        f"{base}/licenses", json={"user_id": "u1", "rights_group": "employee"}, headers=lic
    )
    assert_problem(assign, 409)
    assert ledger.event_count() == count

    history = ledger.client.get(f"{base}/events", headers=ledger.headers("a", "billing:audit"))
    assert history.status_code == 200, history.text
    [opened] = history.json()["events"]
    assert opened["type"] is None
    assert "ContractOpened" in opened["unpublishable"]

    # The healthy cloud goes on as before.
    bought = ledger.client.post(
        f"/v1/clouds/{healthy}/seat-purchases", json={"seats": 4}, headers=ledger.owner
    )
    assert bought.status_code == 201, bought.text


# --------------------------------------------------------------------------------------------
# as_of: bounded work.


@pytest.mark.parametrize(
    "as_of",
    [
        "9999-12-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
    ],
)
def test_an_as_of_outside_the_business_years_is_refused_fast(ledger, as_of):
    cloud_id = ledger.open_cloud()["cloud_id"]
    started = time.perf_counter()
    response = ledger.client.get(
        f"/v1/clouds/{cloud_id}", params={"as_of": as_of}, headers=ledger.owner
    )
    assert time.perf_counter() - started < 1
    assert "query.as_of" in fields_of(assert_problem(response, 422))


def test_an_as_of_in_the_future_is_answered_with_the_state_now(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    started = time.perf_counter()
    response = ledger.client.get(
        f"/v1/clouds/{cloud_id}", params={"as_of": "2199-12-31T23:59:59Z"}, headers=ledger.owner
    )
    assert time.perf_counter() - started < 1
    assert response.status_code == 200, response.text
    body = response.json()
    now = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=ledger.owner).json()
    assert body["as_of"] == "2199-12-31T23:59:59+00:00"
    assert body["state_at"] == ledger.clock.now.isoformat()
    assert body["current_period"] == now["current_period"]
    assert body["renewal_pending"] is False


def test_an_as_of_in_the_past_still_shows_the_state_then(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    ledger.clock.advance(days=40)
    response = ledger.client.get(
        f"/v1/clouds/{cloud_id}", params={"as_of": T0.isoformat()}, headers=ledger.owner
    )
    assert response.status_code == 200, response.text
    assert response.json()["current_period"]["start"] == "2026-02-28"
    assert response.json()["state_at"] == T0.isoformat()


# --------------------------------------------------------------------------------------------
# Authorization before validation.


def test_a_stranger_with_an_invalid_body_gets_404_not_the_field_list(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    stranger = ledger.headers("mallory", step_up=True)
    base = f"/v1/clouds/{cloud_id}"
    calls = [
        ("post", f"{base}/seat-quotes", {"seats": "many"}),
        ("post", f"{base}/seat-purchases", {"seats": -1, "extra": True}),
        ("post", f"{base}/seat-reductions", {}),
        ("post", f"{base}/licenses", {"user_id": "a/b"}),
        ("put", f"{base}/users/u1/rights-group", {"rights_group": ""}),
        ("put", f"{base}/billing-email", {"billing_email": "a,b@example.com"}),
    ]
    for method, url, body in calls:
        response = getattr(ledger.client, method)(url, json=body, headers=stranger)
        problem = assert_problem(response, 404)
        assert "errors" not in problem, (url, problem)
    for url in (f"{base}/licenses/u1?rights_group=a%2Fb", f"{base}?as_of=9999-12-01T00:00:00Z"):
        method = "delete" if "licenses" in url else "get"
        response = getattr(ledger.client, method)(url, headers=stranger)
        assert "errors" not in assert_problem(response, 404), url
    broken_json = ledger.client.post(
        f"{base}/seat-purchases",
        content=b"{not json",
        headers={**stranger, "Content-Type": "application/json"},
    )
    assert "errors" not in assert_problem(broken_json, 404)
    assert ledger.event_count() == 1


def test_the_owner_without_the_right_gets_403_and_the_admin_scope_is_checked_first(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    auditor = ledger.headers("audit-1", "billing:audit")
    response = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": "x"}, headers=auditor
    )
    assert "errors" not in assert_problem(response, 403)
    not_admin = ledger.client.post(
        "/v1/clouds", json={**CLOUD_BODY, "seats": "x"}, headers=ledger.owner
    )
    assert "errors" not in assert_problem(not_admin, 403)
    no_token = ledger.client.post("/v1/clouds", json={**CLOUD_BODY, "seats": "x"})
    assert_problem(no_token, 401)


def test_a_caller_with_rights_still_gets_the_field_list(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    response = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": "x"}, headers=ledger.owner
    )
    assert "body.seats" in fields_of(assert_problem(response, 422))
    bad_id = ledger.client.get("/v1/clouds/not-a-uuid", headers=ledger.owner)
    assert "path.cloud_id" in fields_of(assert_problem(bad_id, 422))
