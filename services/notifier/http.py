"""The health and metrics surface of ``seatledger run notifier`` (the notifier has no API).

- ``GET /healthz``: the process answers (liveness).
- ``GET /readyz``: the store answers and every background worker runs; otherwise a 503
  ``application/problem+json`` naming the failing checks.
- ``GET /metrics``: the Prometheus exposition of the process's registry.

Built with the shared :func:`seatledger.http.create_app` without an authenticator (the
notifier has no authenticated routes, so it needs no JWT settings) and without OpenAPI docs.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from seatledger.http import ReadinessCheck, create_app


def create_http_app(
    registry: CollectorRegistry, readiness_checks: Mapping[str, ReadinessCheck]
) -> FastAPI:
    return create_app(
        title="seatledger notifier",
        routers=(),
        registry=registry,
        readiness_checks=readiness_checks,
        service="notifier",
        openapi=False,
    )
