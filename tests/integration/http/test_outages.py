"""While the ledger's PostgreSQL refuses connections, requests are answered 503 problems with
Retry-After and a request id (never a 500), nothing is recorded, and the Idempotency-Key of
such a request is free for the retry once the database is back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seatledger.auth import mint_token
from seatledger.config import load_settings
from seatledger.metrics import new_registry
from services.ledger.bootstrap import build_ledger, create_ledger_app
from tests.integration.ledger.conftest import CLOUD_BODY
from tests.outages import set_connections

SECRET = "outage-test-secret-0123456789abcdef0123"


@pytest.fixture
def ledger(postgres_url: str, tmp_path: Any):
    settings = load_settings(
        database_url=postgres_url,
        data_dir=tmp_path,
        jwt_secret=SECRET,
        kafka_bootstrap_servers=None,
    )
    registry = new_registry("ledger")
    components = build_ledger(
        settings,
        registry,
        # Fail fast while the database refuses connections (the event store retries 10 times).
        env_overrides={"POSTGRES_CONNECT_TIMEOUT": "2"},
    )
    app = create_ledger_app(components, registry)
    yield settings, components, TestClient(app, raise_server_exceptions=False)
    components.close()


def test_a_database_outage_is_answered_503_with_retry_after_and_keys_stay_free(
    ledger, postgres_admin_url, postgres_url
):
    settings, components, client = ledger
    admin = {
        "Authorization": "Bearer "
        + mint_token(settings, subject="admin-1", scopes=["billing:admin"])
    }
    assert client.post("/v1/clouds", json=CLOUD_BODY, headers=admin).status_code == 201
    events_before = components.app.recorder.max_notification_id()
    dbname = postgres_url.rsplit("/", 1)[1]
    set_connections(postgres_admin_url, dbname, allowed=False)
    try:
        plain = client.post("/v1/clouds", json=CLOUD_BODY, headers=admin)
        keyed = client.post(
            "/v1/clouds", json=CLOUD_BODY, headers={**admin, "Idempotency-Key": "during-outage"}
        )
    finally:
        set_connections(postgres_admin_url, dbname, allowed=True)
    for response in (plain, keyed):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert response.headers["x-request-id"]
        assert response.json()["type"].endswith("/service-unavailable")
    # Back: the retry with the same key runs (the key was never left in flight).
    deadline = time.monotonic() + 20
    retry = client.post(
        "/v1/clouds", json=CLOUD_BODY, headers={**admin, "Idempotency-Key": "during-outage"}
    )
    while retry.status_code in (409, 503) and time.monotonic() < deadline:
        time.sleep(0.5)
        retry = client.post(
            "/v1/clouds", json=CLOUD_BODY, headers={**admin, "Idempotency-Key": "during-outage"}
        )
    assert retry.status_code == 201, retry.text
    assert components.app.recorder.max_notification_id() == events_before + 1
