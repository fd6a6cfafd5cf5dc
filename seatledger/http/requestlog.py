"""One canonical structlog line per request, a request id, and HTTP metrics.

This middleware is the outermost layer of every app: every answer, errors included, carries
``X-Request-Id``. An exception nothing inside answered is answered here (a 503 problem with
``Retry-After`` for an unavailable store or broker, else a 500 problem, see
:func:`seatledger.http.problems.error_answer`) and logged as one structured line; it never
reaches the HTTP server, which would print its own multi-line traceback.

The line carries the request id, method, route template, status, outcome, duration and, when a
route names one, the cloud id; never e-mail addresses or tokens (the query string and headers
are not logged). Routes add fields with :func:`annotate`.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from seatledger.http.problems import PROBLEM_CONTENT_TYPE, error_answer, log_error
from seatledger.logging import get_logger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_LOG_FIELDS = "log_fields"
_CLOUD_IN_PATH = re.compile(r"/clouds/([0-9a-fA-F-]{36})(?:/|$)")


def annotate(request: Any, **fields: Any) -> None:
    """Add fields (e.g. ``cloud_id``) to the request's canonical log line."""
    state = request.scope.setdefault("state", {})
    state.setdefault(_LOG_FIELDS, {}).update(fields)


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    if status < 500:
        return "rejected"
    return "error"


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "seatledger_http_requests_total",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "seatledger_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, service: str) -> None:
        self.app = app
        self.metrics = metrics
        self.service = service
        self.log = get_logger("seatledger.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name.lower() == REQUEST_ID_HEADER.encode():
                candidate = value.decode("latin-1")
                if _SAFE_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        # Not a secret, only unique: 128 random bits without a system call per request.
        request_id = request_id or f"{random.getrandbits(128):032x}"
        scope.setdefault("state", {})[_LOG_FIELDS] = {}
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                status_for_error, body, extra = error_answer(exc)
                log_error(exc, status_for_error)
                if not started_response:
                    body["instance"] = scope.get("path", "")
                    payload = json.dumps(body).encode()
                    headers = [
                        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                        (b"content-length", str(len(payload)).encode()),
                        *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                    ]
                    await send_with_id(
                        {
                            "type": "http.response.start",
                            "status": status_for_error,
                            "headers": headers,
                        }
                    )
                    await send_with_id({"type": "http.response.body", "body": payload})
        finally:
            duration = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            fields: dict[str, Any] = dict(scope.get("state", {}).get(_LOG_FIELDS, {}))
            path_params = scope.get("path_params") or {}
            if "cloud_id" not in fields:
                if "cloud_id" in path_params:
                    fields["cloud_id"] = str(path_params["cloud_id"])
                elif match := _CLOUD_IN_PATH.search(scope.get("path", "")):
                    # Answered before routing (e.g. an idempotent replay).
                    fields["cloud_id"] = match.group(1)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(duration)
            self.log.info(
                "request",
                service=self.service,
                method=method,
                route=route,
                status=status,
                outcome=outcome_of(status),
                duration_s=round(duration, 6),
                **fields,
            )
            structlog.contextvars.unbind_contextvars("request_id")
