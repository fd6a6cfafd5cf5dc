"""The health and metrics surface of ``seatledger run notifier`` (the notifier has no API).

- ``GET /healthz``: the process answers (liveness).
- ``GET /readyz``: the store answers and every background worker runs; otherwise a 503
  ``application/problem+json`` naming the failing checks.
- ``GET /metrics``: the Prometheus exposition of the process's registry.

``seatledger.http.create_app`` is not used here: it requires a JWT authenticator, which would
make a service without authenticated routes demand JWT settings to start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from seatledger.http.problems import install_problem_handlers, problem_response
from seatledger.metrics import render

ReadinessCheck = Callable[[], bool]


def create_http_app(
    registry: CollectorRegistry, readiness_checks: Mapping[str, ReadinessCheck]
) -> FastAPI:
    checks = dict(readiness_checks)
    app = FastAPI(title="seatledger notifier", docs_url=None, redoc_url=None, openapi_url=None)
    install_problem_handlers(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                ok = await anyio.to_thread.run_sync(check)
            except Exception:
                ok = False
            results[name] = "ok" if ok else "failing"
        if all(value == "ok" for value in results.values()):
            return JSONResponse({"status": "ready", "checks": results})
        return problem_response(
            503, "Service Unavailable", "a dependency does not answer", checks=results
        )

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    return app
