"""PUT /v1/clouds/{id}/users/{user}/rights-group: the rights group decides the license, on
SQLite and on the real PostgreSQL; the history carries both groups of every change."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

LICENSES = ("user-admin", "billing:licenses")


def put_group(ledger, cloud_id: str, user: str, body: dict[str, Any], headers=None):
    return ledger.client.put(
        f"/v1/clouds/{cloud_id}/users/{user}/rights-group",
        json=body,
        headers=ledger.headers(*LICENSES) if headers is None else headers,
    )


def history(ledger, cloud_id: str) -> list[dict[str, Any]]:
    response = ledger.client.get(f"/v1/clouds/{cloud_id}/events", headers=ledger.admin)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_a_user_moved_through_groups_gets_keeps_and_releases_a_license(ledger):
    cloud_id = ledger.open_cloud(seats=2)["cloud_id"]

    r = put_group(
        ledger, cloud_id, "u1", {"rights_group": "employee", "previous_rights_group": "guest"}
    )
    assert r.status_code == 200, r.text
    assert r.json() | {"version": 0} == {
        "cloud_id": cloud_id,
        "user_id": "u1",
        "rights_group": "employee",
        "holds_license": True,
        "outcome": "assigned",
        "seats": 2,
        "licenses_assigned": 1,
        "licenses_free": 1,
        "version": 0,
    }
    assert r.json()["version"] == 2

    r = put_group(ledger, cloud_id, "u1", {"rights_group": "admin"})
    assert (r.status_code, r.json()["outcome"], r.json()["holds_license"]) == (200, "changed", True)
    assert r.json()["licenses_assigned"] == 1

    r = put_group(ledger, cloud_id, "u1", {"rights_group": "guest"})
    assert r.status_code == 200, r.text
    assert (r.json()["outcome"], r.json()["holds_license"]) == ("released", False)
    assert (r.json()["licenses_assigned"], r.json()["licenses_free"], r.json()["version"]) == (
        0,
        2,
        4,
    )

    events = history(ledger, cloud_id)
    assert [e["type"] for e in events[1:]] == [
        "seatledger.ledger.LicenseAssigned.v1",
        "seatledger.ledger.LicenseRightsGroupChanged.v1",
        "seatledger.ledger.LicenseReleased.v1",
    ]
    assigned, changed, released = (e["data"] for e in events[1:])
    assert (assigned["rights_group"], assigned["previous_rights_group"]) == ("employee", "guest")
    assert (changed["rights_group"], changed["previous_rights_group"]) == ("admin", "employee")
    assert (released["previous_rights_group"], released["rights_group"]) == ("admin", "guest")


def test_the_same_state_again_answers_200_and_records_nothing(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    assert put_group(ledger, cloud_id, "u1", {"rights_group": "employee"}).status_code == 200
    before = ledger.event_count()
    again = put_group(ledger, cloud_id, "u1", {"rights_group": "employee"})
    guest = put_group(ledger, cloud_id, "u2", {"rights_group": "guest"})
    assert (again.status_code, again.json()["outcome"], again.json()["holds_license"]) == (
        200,
        "unchanged",
        True,
    )
    assert (guest.status_code, guest.json()["outcome"], guest.json()["holds_license"]) == (
        200,
        "unchanged",
        False,
    )
    assert ledger.event_count() == before


def test_no_free_seat_is_a_409_problem_and_records_nothing(ledger):
    cloud_id = ledger.open_cloud(seats=1)["cloud_id"]
    assert put_group(ledger, cloud_id, "u1", {"rights_group": "employee"}).status_code == 200
    before = ledger.event_count()
    r = put_group(ledger, cloud_id, "u2", {"rights_group": "admin"})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "NoFreeSeat"
    assert ledger.event_count() == before


def test_the_owner_may_set_groups_others_are_refused_and_nothing_is_recorded(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    owner = put_group(ledger, cloud_id, "u1", {"rights_group": "employee"}, ledger.owner)
    assert owner.status_code == 200, owner.text
    before = ledger.event_count()
    body = {"rights_group": "admin"}
    stranger = put_group(ledger, cloud_id, "u1", body, ledger.headers("mallory"))
    auditor = put_group(ledger, cloud_id, "u1", body, ledger.headers("audit-1", "billing:audit"))
    anonymous = put_group(ledger, cloud_id, "u1", body, {})
    assert stranger.status_code == 404
    assert auditor.status_code == 403
    assert anonymous.status_code == 401
    for r in (stranger, auditor, anonymous):
        assert r.headers["content-type"].startswith("application/problem+json")
    assert ledger.event_count() == before


def test_a_malformed_body_or_unknown_cloud_is_a_problem(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    before = ledger.event_count()
    for body in ({}, {"rights_group": ""}, {"rights_group": "employee", "extra": 1}):
        r = put_group(ledger, cloud_id, "u1", body)
        assert r.status_code == 422, body
        assert r.headers["content-type"].startswith("application/problem+json")
    unknown = put_group(
        ledger, "00000000-0000-4000-8000-000000000000", "u1", {"rights_group": "employee"}
    )
    assert unknown.status_code == 404
    assert ledger.event_count() == before


def test_an_idempotency_key_replays_the_first_answer(ledger):
    cloud_id = ledger.open_cloud(seats=2)["cloud_id"]
    headers = {**ledger.headers(*LICENSES), "Idempotency-Key": "group-change-1"}
    first = put_group(ledger, cloud_id, "u1", {"rights_group": "employee"}, headers)
    after_first = ledger.event_count()
    second = put_group(ledger, cloud_id, "u1", {"rights_group": "employee"}, headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    other = put_group(ledger, cloud_id, "u1", {"rights_group": "admin"}, headers)
    assert other.status_code == 422
    assert ledger.event_count() == after_first


def test_a_release_may_name_the_users_new_group(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    headers = ledger.headers(*LICENSES)
    for user in ("u1", "u2"):
        r = ledger.client.post(
            f"/v1/clouds/{cloud_id}/licenses",
            json={"user_id": user, "rights_group": "employee"},
            headers=headers,
        )
        assert r.status_code == 201, r.text
    before = ledger.event_count()
    refused = ledger.client.delete(
        f"/v1/clouds/{cloud_id}/licenses/u1", params={"rights_group": "admin"}, headers=headers
    )
    assert refused.status_code == 422
    assert ledger.event_count() == before
    r1 = ledger.client.delete(
        f"/v1/clouds/{cloud_id}/licenses/u1", params={"rights_group": "guest"}, headers=headers
    )
    r2 = ledger.client.delete(f"/v1/clouds/{cloud_id}/licenses/u2", headers=headers)
    assert (r1.status_code, r2.status_code) == (204, 204)
    released = [e["data"] for e in history(ledger, cloud_id)[-2:]]
    assert [(d["user_id"], d["rights_group"]) for d in released] == [("u1", "guest"), ("u2", None)]
