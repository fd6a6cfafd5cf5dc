"""The app factory every service's HTTP API is built with.

``create_app`` assembles routers from one or several services (the embedded default serves the
ledger and the invoicer in one app) with the shared behaviour: problem+json for every error,
a request id and one canonical log line per request, ``/healthz``, ``/readyz``, ``/metrics``,
bearer authentication (:data:`CurrentPrincipal`) and the ``Idempotency-Key`` mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from seatledger.auth import Authenticator, Principal
from seatledger.http.idempotency import IdempotencyMiddleware, IdempotencyStore
from seatledger.http.problems import install_problem_handlers, problem_response, raw_problem
from seatledger.http.requestlog import HttpMetrics, RequestLogMiddleware
from seatledger.metrics import render

#: A readiness check: returns True when the dependency it checks answers.
ReadinessCheck = Callable[[], bool]


def create_app(
    *,
    title: str,
    routers: Iterable[APIRouter],
    registry: CollectorRegistry,
    authenticator: Authenticator,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    idempotency_stores: Mapping[str, IdempotencyStore] | None = None,
    service: str = "seatledger",
    version: str = "1",
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """A FastAPI app serving ``routers``.

    ``idempotency_stores`` maps path prefixes (e.g. ``"/v1/clouds"``) to the store of the
    service owning those paths; ``readiness_checks`` name the checks ``/readyz`` runs.
    """
    checks = dict(readiness_checks or {})
    app = FastAPI(
        title=title,
        version=version,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # Metrics and logs are our own (Prometheus, structlog); no OpenTelemetry per request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.authenticator = authenticator
    install_problem_handlers(app)

    # The services' routes first: routing tries routes in order, and these carry the load.
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
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

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    for callback in on_shutdown:
        app.router.on_shutdown.append(callback)

    if idempotency_stores:
        app.add_middleware(
            IdempotencyMiddleware,
            stores=idempotency_stores,
            principal_of=authenticator.subject_of,
            problem=raw_problem,
        )
    app.add_middleware(
        RequestLogMiddleware,
        metrics=HttpMetrics(registry),
        service=service,
    )
    return app


async def get_principal(request: Request) -> Principal:
    """The verified caller of a request (401 problem+json otherwise). Verification is CPU
    work of microseconds: it runs on the event loop, not in the thread pool."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.verify_header(request.headers.get("authorization"))
    request.state.principal = principal
    return principal


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


#: Route parameter type of the authenticated caller.
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]

__all__: list[Any] = ["CurrentPrincipal", "ReadinessCheck", "create_app", "get_principal"]
