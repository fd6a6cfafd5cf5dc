"""A command committed by a process that died before it stored its answer (an opening, a
purchase, a reduction, a license assignment or release, a rights-group or billing e-mail
change): the client's retry with the same ``Idempotency-Key`` is answered with the committed
result, read back from the cloud's events, never run again nor refused as a conflict."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from services.ledger.application import request_identity
from tests.integration.ledger.conftest import CLOUD_BODY
from tests.integration.ledger.test_license_fast_path import _reference_client

pytestmark = pytest.mark.integration

LICENSES = ("provisioner", "billing:licenses")


@pytest.fixture(params=["fast path", "FastAPI routes"])
def licenses_client(request: pytest.FixtureRequest, ledger: Any) -> TestClient:
    """The app as served (plain license commands take its fast path), or its FastAPI routes
    alone."""
    client: TestClient = (
        ledger.client if request.param == "fast path" else _reference_client(ledger)
    )
    return client


def crash_before_the_answer_was_stored(ledger: Any, principal: str, key: str) -> None:
    """Leave the key's row as a process killed between committing the command and storing
    its answer leaves it: in flight, claimed by an instance that beats no more."""
    store = ledger.components.idempotency
    _, changed = store.db.execute(
        f"UPDATE {store._table} SET state = 'pending', instance = ?, created_at = ?"
        " WHERE principal = ? AND key = ?",
        ("killed-node", time.time() - 3600, principal, key),
    )
    assert changed == 1


def test_a_purchase_retried_after_a_crash_answers_the_committed_201(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    headers = {**ledger.owner, "Idempotency-Key": "buy-after-crash"}
    first = ledger.client.post(url, json={"seats": 5}, headers=headers)
    assert first.status_code == 201, first.text
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "owner-1", "buy-after-crash")
    ledger.clock.advance(minutes=5)

    retry = ledger.client.post(url, json={"seats": 5}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert "idempotent-replayed" not in retry.headers  # answered by the route, from the events
    assert ledger.event_count() == count
    # The answer is kept for the key now: a further retry is a plain replay.
    again = ledger.client.post(url, json={"seats": 5}, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


def test_a_purchase_with_a_quote_retried_after_a_crash_is_not_refused(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    quote = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-quotes", json={"seats": 6}, headers=ledger.owner
    ).json()
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    body = {"seats": 6, "quote_id": quote["quote_id"]}
    headers = {**ledger.owner, "Idempotency-Key": "quoted-buy"}
    first = ledger.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    # Something else happened on the cloud meanwhile.
    lic = ledger.headers("provisioner", "billing:licenses")
    assigned = ledger.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "u1", "rights_group": "employee"},
        headers=lic,
    )
    assert assigned.status_code == 201
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "owner-1", "quoted-buy")

    retry = ledger.client.post(url, json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()  # the cloud as the purchase left it
    assert ledger.event_count() == count


def test_a_reduction_retried_after_a_crash_answers_the_committed_201(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/seat-reductions"
    headers = {**ledger.owner, "Idempotency-Key": "reduce-after-crash"}
    first = ledger.client.post(url, json={"seats": 2}, headers=headers)
    assert first.status_code == 201, first.text
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "owner-1", "reduce-after-crash")

    retry = ledger.client.post(url, json={"seats": 2}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert ledger.event_count() == count


def test_another_key_runs_as_new_and_only_a_digest_of_the_key_is_recorded(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    first = ledger.client.post(
        url, json={"seats": 5}, headers={**ledger.owner, "Idempotency-Key": "k"}
    )
    assert first.status_code == 201
    other_key = ledger.client.post(
        url, json={"seats": 5}, headers={**ledger.owner, "Idempotency-Key": "k2"}
    )
    assert other_key.status_code == 409
    assert other_key.json()["code"] == "SeatsMustGrow"
    recorded = [
        getattr(event, "request_key", None)
        for event in ledger.components.service.history(UUID(cloud_id))
    ]
    assert request_identity("owner-1", "k") in recorded
    assert "k" not in recorded  # the key itself is never stored


def test_a_cloud_opened_without_an_id_and_retried_after_a_crash_is_the_same_cloud(ledger):
    headers = {**ledger.admin, "Idempotency-Key": "open-acme"}
    first = ledger.client.post("/v1/clouds", json=CLOUD_BODY, headers=headers)
    assert first.status_code == 201, first.text
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "admin-1", "open-acme")
    ledger.clock.advance(minutes=5)

    retry = ledger.client.post("/v1/clouds", json=CLOUD_BODY, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers["location"] == first.headers["location"]
    assert "idempotent-replayed" not in retry.headers
    assert ledger.event_count() == count
    overview = ledger.client.get("/v1/owners/owner-1/clouds", headers=ledger.admin).json()
    assert [c["cloud_id"] for c in overview["clouds"]] == [first.json()["cloud_id"]]
    # Another key is another request: another cloud.
    other = ledger.client.post(
        "/v1/clouds", json=CLOUD_BODY, headers={**ledger.admin, "Idempotency-Key": "open-2"}
    )
    assert other.status_code == 201
    assert other.json()["cloud_id"] != first.json()["cloud_id"]


def test_a_cloud_opened_with_its_id_and_retried_after_a_crash_answers_201_again(ledger):
    body = {**CLOUD_BODY, "cloud_id": "6f1c3a52-4a43-4c39-9a4e-5b8a1d6f0e21"}
    headers = {**ledger.admin, "Idempotency-Key": "open-with-id"}
    first = ledger.client.post("/v1/clouds", json=body, headers=headers)
    assert first.status_code == 201, first.text
    crash_before_the_answer_was_stored(ledger, "admin-1", "open-with-id")

    retry = ledger.client.post("/v1/clouds", json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    # Another caller's request naming the same cloud keeps the rule of an existing cloud.
    again = ledger.client.post("/v1/clouds", json=body, headers=ledger.admin)
    assert again.status_code == 200
    other_terms = ledger.client.post("/v1/clouds", json={**body, "seats": 4}, headers=ledger.admin)
    assert other_terms.status_code == 409
    assert other_terms.json()["code"] == "CloudAlreadyExists"


def test_a_license_assigned_and_retried_after_a_crash_answers_the_committed_201(
    ledger, licenses_client
):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/licenses"
    body = {"user_id": "u1", "rights_group": "employee"}
    headers = {**ledger.headers(*LICENSES), "Idempotency-Key": "assign-u1"}
    first = licenses_client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    second = licenses_client.post(
        url, json={"user_id": "u2", "rights_group": "admin"}, headers=ledger.headers(*LICENSES)
    )
    assert second.status_code == 201
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "provisioner", "assign-u1")

    retry = licenses_client.post(url, json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()  # the counts as the assignment left them
    assert ledger.event_count() == count


@pytest.mark.parametrize("params", [{}, {"rights_group": "guest"}], ids=["plain", "new group"])
def test_a_license_released_and_retried_after_a_crash_answers_the_committed_204(
    ledger, licenses_client, params
):
    cloud_id = ledger.open_cloud()["cloud_id"]
    lic = ledger.headers(*LICENSES)
    assigned = licenses_client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "u1", "rights_group": "employee"},
        headers=lic,
    )
    assert assigned.status_code == 201
    url = f"/v1/clouds/{cloud_id}/licenses/u1"
    headers = {**lic, "Idempotency-Key": "release-u1"}
    first = licenses_client.delete(url, params=params, headers=headers)
    assert first.status_code == 204, first.text
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "provisioner", "release-u1")

    retry = licenses_client.delete(url, params=params, headers=headers)
    assert retry.status_code == 204, retry.text
    assert ledger.event_count() == count


@pytest.mark.parametrize(
    ("held", "group", "outcome"),
    [
        (None, "employee", "assigned"),
        ("employee", "admin", "changed"),
        ("employee", "guest", "released"),
    ],
)
def test_a_rights_group_change_retried_after_a_crash_answers_the_committed_state(
    ledger, held, group, outcome
):
    cloud_id = ledger.open_cloud()["cloud_id"]
    lic = ledger.headers(*LICENSES)
    if held is not None:
        ledger.client.post(
            f"/v1/clouds/{cloud_id}/licenses",
            json={"user_id": "u1", "rights_group": held},
            headers=lic,
        ).raise_for_status()
    url = f"/v1/clouds/{cloud_id}/users/u1/rights-group"
    headers = {**lic, "Idempotency-Key": "group-u1"}
    first = ledger.client.put(url, json={"rights_group": group}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == outcome
    ledger.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "u2", "rights_group": "admin"},
        headers=lic,
    ).raise_for_status()
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "provisioner", "group-u1")

    retry = ledger.client.put(url, json={"rights_group": group}, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()  # not "unchanged": the state the change left
    assert ledger.event_count() == count


def test_a_billing_email_change_retried_after_a_crash_answers_the_committed_cloud(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    url = f"/v1/clouds/{cloud_id}/billing-email"
    body = {"billing_email": "ap@acme.example"}
    headers = {**ledger.headers("owner-1"), "Idempotency-Key": "email"}
    first = ledger.client.put(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    ledger.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "u1", "rights_group": "admin"},
        headers=ledger.headers(*LICENSES),
    ).raise_for_status()
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "owner-1", "email")

    retry = ledger.client.put(url, json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()  # the cloud as the change left it
    assert ledger.event_count() == count


def test_a_key_that_recorded_a_purchase_is_refused_for_a_reduction(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    headers = {**ledger.owner, "Idempotency-Key": "one-key"}
    bought = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": 5}, headers=headers
    )
    assert bought.status_code == 201, bought.text
    count = ledger.event_count()
    # The key's row is gone (as after a store restored without it): only the recorded
    # identity on the cloud remembers the key.
    store = ledger.components.idempotency
    store.db.execute(
        f"DELETE FROM {store._table} WHERE principal = ? AND key = ?", ("owner-1", "one-key")
    )

    reduced = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-reductions", json={"seats": 4}, headers=headers
    )
    assert reduced.status_code == 422, reduced.text
    assert reduced.json()["title"] == "Idempotency-Key reused"
    assert ledger.event_count() == count
    # The same problem as a key reused while its answer is still kept.
    kept = {**ledger.owner, "Idempotency-Key": "kept-key"}
    url = f"/v1/clouds/{cloud_id}/seat-purchases"
    assert ledger.client.post(url, json={"seats": 6}, headers=kept).status_code == 201
    reused = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-reductions", json={"seats": 4}, headers=kept
    )
    assert (reused.status_code, reused.json()["title"]) == (422, reduced.json()["title"])
    assert reused.json()["type"] == reduced.json()["type"]
    assert reused.json()["type"].endswith("/problems/idempotency-key-reused")
    cloud = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=ledger.owner).json()
    assert cloud["scheduled_reduction"] is None


def test_a_key_that_opened_a_cloud_is_refused_for_other_terms(ledger):
    headers = {**ledger.admin, "Idempotency-Key": "open-once"}
    first = ledger.client.post("/v1/clouds", json=CLOUD_BODY, headers=headers)
    assert first.status_code == 201, first.text
    count = ledger.event_count()
    store = ledger.components.idempotency
    store.db.execute(
        f"DELETE FROM {store._table} WHERE principal = ? AND key = ?", ("admin-1", "open-once")
    )

    other = ledger.client.post("/v1/clouds", json={**CLOUD_BODY, "seats": 9}, headers=headers)
    assert other.status_code == 422, other.text
    assert other.json()["title"] == "Idempotency-Key reused"
    assert ledger.event_count() == count


def test_an_opening_retried_after_a_crash_is_201_however_the_licensed_groups_are_spelt(ledger):
    # The configured groups may repeat or be respelt: the cloud records them normalised.
    ledger.components.service.licensed_rights_groups = ("admin", "employee", " admin")
    headers = {**ledger.admin, "Idempotency-Key": "open-groups"}
    first = ledger.client.post("/v1/clouds", json=CLOUD_BODY, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["licensed_rights_groups"] == ["admin", "employee"]
    count = ledger.event_count()
    crash_before_the_answer_was_stored(ledger, "admin-1", "open-groups")

    retry = ledger.client.post("/v1/clouds", json=CLOUD_BODY, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["cloud_id"] == first.json()["cloud_id"]
    assert ledger.event_count() == count
