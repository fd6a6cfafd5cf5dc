"""A purchase or reduction committed by a process that died before it stored its answer: the
client's retry with the same ``Idempotency-Key`` is answered with the committed result, read
back from the cloud's events, never run again nor refused as a conflict."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest

from services.ledger.application import request_identity

pytestmark = pytest.mark.integration


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
