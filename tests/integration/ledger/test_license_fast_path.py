"""The license commands' direct route answers exactly as the FastAPI routes do: the same
statuses, problem documents and headers, for the plain case and every refusal; the request
log and the HTTP metrics name the same route template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seatledger.http import create_app
from seatledger.metrics import new_registry
from services.ledger.fastpath import LicenseFastPath

pytestmark = pytest.mark.integration

LICENSES = ("provisioner", "billing:licenses")


def _reference_client(ledger) -> TestClient:
    """The same routes without the direct route: the behaviour it must reproduce."""
    c = ledger.components
    app = create_app(
        title="reference",
        routers=c.routers,
        registry=new_registry("reference"),
        authenticator=c.authenticator,
        idempotency_stores=c.idempotency_stores,
        service="ledger",
    )
    return TestClient(app)


def _journey(ledger, client: TestClient, cloud_id: str) -> list[tuple[Any, ...]]:
    lic = ledger.headers(*LICENSES)
    body = {"user_id": "u1", "rights_group": "employee"}
    url = f"/v1/clouds/{cloud_id}/licenses"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("post", url, {"json": body, "headers": lic}),
        ("post", url, {"json": body, "headers": lic}),  # already held
        ("post", url, {"json": {"user_id": "u2", "rights_group": "guest"}, "headers": lic}),
        ("post", url, {"json": {"user_id": "u2", "rights_group": "boss"}, "headers": lic}),
        ("post", url, {"json": {"user_id": "u2", "rights_group": "admin"}, "headers": lic}),
        ("post", url, {"json": {"user_id": "u3", "rights_group": "admin"}, "headers": lic}),
        ("post", url, {"json": {"user_id": "u4", "rights_group": "admin"}, "headers": lic}),
        ("post", url, {"json": body, "headers": ledger.headers("mallory")}),
        ("post", url, {"json": body, "headers": ledger.headers("audit-1", "billing:audit")}),
        ("post", url, {"json": body, "headers": {}}),
        ("post", url, {"json": body, "headers": {"Authorization": "Bearer nope"}}),
        ("post", url, {"json": {"user_id": "u5"}, "headers": lic}),
        ("post", url, {"json": {**body, "extra": 1}, "headers": lic}),
        (
            "post",
            url,
            {"content": b"{not json", "headers": {**lic, "Content-Type": "application/json"}},
        ),
        (
            "post",
            url,
            {"content": json.dumps(body), "headers": {**lic, "Content-Type": "text/plain"}},
        ),
        ("delete", f"{url}/u1", {"headers": ledger.headers("mallory")}),
        ("delete", f"{url}/u1", {"headers": {}}),
        ("delete", f"{url}/u1", {"headers": lic}),
        ("delete", f"{url}/u1", {"headers": lic}),  # holds none
        ("delete", f"{url}/u2", {"headers": lic, "params": {"rights_group": "guest"}}),
        (
            "post",
            "/v1/clouds/00000000-0000-4000-8000-000000000000/licenses",
            {"json": body, "headers": lic},
        ),
        (
            "post",
            f"/v1/clouds/{cloud_id.upper()}/licenses",
            {"json": {**body, "user_id": "u9"}, "headers": lic},
        ),
    ]
    answers = []
    for method, path, kwargs in calls:
        r = getattr(client, method)(path, **kwargs)
        text = r.text.replace(cloud_id, "CLOUD").replace(cloud_id.upper(), "CLOUD")
        answers.append(
            (
                method,
                path.replace(cloud_id, "CLOUD").replace(cloud_id.upper(), "CLOUD"),
                r.status_code,
                r.headers.get("content-type"),
                r.headers.get("www-authenticate"),
                json.loads(text) if text else None,
            )
        )
    return answers


def test_every_answer_matches_the_fastapi_routes(ledger):
    fast_cloud = ledger.open_cloud(seats=3)["cloud_id"]
    reference_cloud = ledger.open_cloud(seats=3)["cloud_id"]
    fast = _journey(ledger, ledger.client, fast_cloud)
    reference = _journey(ledger, _reference_client(ledger), reference_cloud)
    for got, expected in zip(fast, reference, strict=True):
        assert got == expected
    statuses = [answer[2] for answer in fast]
    assert statuses[:3] == [201, 409, 422]
    assert {401, 403, 404, 204} <= set(statuses)


def _fast_path_of(ledger) -> LicenseFastPath:
    ledger.client.get("/healthz")  # the middleware stack is built on the first request
    layer: Any = ledger.app.middleware_stack
    while not isinstance(layer, LicenseFastPath):
        layer = layer.app
    return layer


def test_plain_commands_never_reach_the_fastapi_routes_refusals_of_shape_do(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    fast_path = _fast_path_of(ledger)
    delegated: list[str] = []
    downstream = fast_path.app

    async def counting(scope, receive, send):
        delegated.append(f"{scope['method']} {scope['path']}")
        await downstream(scope, receive, send)

    fast_path.app = counting
    lic = ledger.headers(*LICENSES)
    url = f"/v1/clouds/{cloud_id}/licenses"
    body = {"user_id": "u1", "rights_group": "employee"}
    assert ledger.client.post(url, json=body, headers=lic).status_code == 201
    assert ledger.client.post(url, json=body, headers=lic).status_code == 409
    assert ledger.client.delete(f"{url}/u1", headers=lic).status_code == 204
    assert delegated == []
    assert ledger.client.post(url, json={"user_id": "u1"}, headers=lic).status_code == 422
    assert ledger.client.delete(f"{url}/u1", headers={}).status_code == 401
    assert delegated == [f"POST {url}", f"DELETE {url}/u1"]


def test_the_direct_route_is_counted_under_the_route_template(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    lic = ledger.headers(*LICENSES)
    body = {"user_id": "u1", "rights_group": "employee"}
    assert (
        ledger.client.post(f"/v1/clouds/{cloud_id}/licenses", json=body, headers=lic).status_code
        == 201
    )
    assert (
        ledger.client.delete(f"/v1/clouds/{cloud_id}/licenses/u1", headers=lic).status_code == 204
    )
    metrics = ledger.client.get("/metrics").text
    assert (
        'seatledger_http_requests_total{method="POST",route="/v1/clouds/{cloud_id}/licenses",'
        'status="201"} 1.0' in metrics
    )
    assert (
        'seatledger_http_requests_total{method="DELETE",'
        'route="/v1/clouds/{cloud_id}/licenses/{user_id:path}",status="204"} 1.0' in metrics
    )
