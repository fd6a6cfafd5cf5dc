"""The app factory every service's HTTP API is built with.

``create_app`` assembles routers from one or several services (the embedded default serves the
ledger and the invoicer in one app) with the shared behaviour: problem+json for every error,
a request id and one canonical log line per request, ``/healthz``, ``/readyz``, ``/metrics``,
bearer authentication (:data:`CurrentPrincipal`) and the ``Idempotency-Key`` mechanism.

A service without authenticated routes (the notifier's health and metrics surface) passes no
authenticator and needs no JWT settings. Then a route that depends on the caller
(:data:`CurrentPrincipal`) or an idempotency store cannot work: ``create_app`` refuses to
build such an app (:class:`ValueError` at startup, naming the routes) rather than answering
requests with errors later.
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
from seatledger.http.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    RequestLimits,
    RequestLimitsMiddleware,
)
from seatledger.http.problems import (
    Problem,
    install_problem_handlers,
    problem_response,
    raw_problem,
)
from seatledger.http.requestlog import HttpMetrics, RequestLogMiddleware
from seatledger.metrics import render

#: A readiness check: returns True when the dependency it checks answers.
ReadinessCheck = Callable[[], bool]


def create_app(
    *,
    title: str,
    routers: Iterable[APIRouter],
    registry: CollectorRegistry,
    authenticator: Authenticator | None = None,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    idempotency_stores: Mapping[str, IdempotencyStore] | None = None,
    service: str = "seatledger",
    version: str = "1",
    on_shutdown: Sequence[Callable[[], None]] = (),
    openapi: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> FastAPI:
    """A FastAPI app serving ``routers``.

    ``idempotency_stores`` maps path prefixes (e.g. ``"/v1/clouds"``) to the store of the
    service owning those paths; ``readiness_checks`` name the checks ``/readyz`` runs;
    ``openapi=False`` serves neither ``/openapi.json`` nor ``/docs``. ``max_body_bytes``,
    ``body_timeout_s`` and ``max_response_bytes`` bound each request
    (:mod:`seatledger.http.limits`; ``app.state.request_limits``, which
    :func:`seatledger.serving.serve_until_stopped` sets from the settings). Without an
    ``authenticator``, routes needing the caller and idempotency stores are refused
    (:class:`ValueError`).
    """
    routers = list(routers)
    if authenticator is None:
        needing = [path for router in routers for path in _routes_needing_principal(router)]
        if needing:
            raise ValueError(
                "these routes need an authenticated caller but the app has no authenticator: "
                + ", ".join(needing)
            )
        if idempotency_stores:
            raise ValueError("idempotency keys are scoped per caller: they need an authenticator")
    checks = dict(readiness_checks or {})
    app = FastAPI(
        title=title,
        version=version,
        openapi_url="/openapi.json" if openapi else None,
        docs_url="/docs" if openapi else None,
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

    if idempotency_stores and authenticator is not None:
        app.add_middleware(
            IdempotencyMiddleware,
            stores=idempotency_stores,
            principal_of=authenticator.subject_of,
            problem=raw_problem,
        )
    # Outermost last: the request log (request id, errors), then the request's bounds (a body
    # arrived whole, one Authorization header), then the idempotency keys, then the routes.
    app.state.request_limits = RequestLimits(max_body_bytes, body_timeout_s, max_response_bytes)
    app.add_middleware(RequestLimitsMiddleware, limits=app.state.request_limits)
    app.add_middleware(
        RequestLogMiddleware,
        metrics=HttpMetrics(registry),
        service=service,
    )
    return app


def _depends_on(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(
        dep.call is call or _depends_on(dep, call) for dep in getattr(dependant, "dependencies", ())
    )


def _routes_needing_principal(router: APIRouter) -> list[str]:
    return [
        f"{sorted(getattr(route, 'methods', ()) or ())} {getattr(route, 'path', route)}"
        for route in router.routes
        if _depends_on(getattr(route, "dependant", None), get_principal)
    ]


async def get_principal(request: Request) -> Principal:
    """The verified caller of a request (401 problem+json otherwise). Verification is CPU
    work of microseconds: it runs on the event loop, not in the thread pool."""
    authenticator: Authenticator | None = request.app.state.authenticator
    if authenticator is None:  # create_app refuses such routes; a route added later lands here
        raise Problem(500, "Internal Server Error", "this service authenticates no caller")
    principal = authenticator.verify_header(request.headers.get("authorization"))
    request.state.principal = principal
    return principal


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator | None = request.app.state.authenticator
    if authenticator is None:
        raise Problem(500, "Internal Server Error", "this service authenticates no caller")
    return authenticator


#: Route parameter type of the authenticated caller.
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]

__all__: list[Any] = ["CurrentPrincipal", "ReadinessCheck", "create_app", "get_principal"]
