"""``create_app`` without an authenticator: the health and metrics surface works (the notifier
builds its HTTP app this way); a route that needs the caller is refused when the app is built."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from seatledger.http import CurrentPrincipal, create_app
from seatledger.metrics import new_registry
from services.notifier.http import create_http_app


def test_the_notifier_surface_serves_health_readiness_and_metrics_without_jwt_settings():
    registry = new_registry("notifier")
    ready = {"store": True}
    app = create_http_app(registry, {"store": lambda: ready["store"], "sender": lambda: True})
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {
            "status": "ready",
            "checks": {"store": "ok", "sender": "ok"},
        }
        ready["store"] = False
        failing = client.get("/readyz")
        assert failing.status_code == 503
        assert failing.headers["content-type"].startswith("application/problem+json")
        assert failing.json()["checks"] == {"store": "failing", "sender": "ok"}
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "seatledger_http_requests_total" in metrics.text
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/docs").status_code == 404


def test_a_check_that_raises_counts_as_failing():
    def broken() -> bool:
        raise ConnectionError("store down")

    with TestClient(create_http_app(new_registry("notifier"), {"store": broken})) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"store": "failing"}


def test_a_route_needing_the_caller_is_refused_at_startup_without_an_authenticator():
    router = APIRouter()

    @router.get("/v1/mine")
    def mine(principal: CurrentPrincipal) -> dict[str, str]:
        return {"sub": principal.subject}

    with pytest.raises(ValueError, match="/v1/mine"):
        create_app(title="t", routers=[router], registry=new_registry("t"))


def test_idempotency_stores_are_refused_without_an_authenticator():
    with pytest.raises(ValueError, match="authenticator"):
        create_app(
            title="t",
            routers=[],
            registry=new_registry("t"),
            idempotency_stores={"/v1": object()},  # type: ignore[dict-item]
        )
