"""Prometheus plumbing: one :class:`~prometheus_client.CollectorRegistry` per process, built
in the composition root and injected; domain code never imports ``prometheus_client``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import Info as _Info

from seatledger import __version__


def new_registry(service: str) -> CollectorRegistry:
    """A registry with the build info of this process."""
    registry = CollectorRegistry(auto_describe=True)
    info = _Info("seatledger_build", "Version of the running seatledger service", registry=registry)
    info.info({"version": __version__, "service": service})
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition text of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
