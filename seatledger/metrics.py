"""Prometheus plumbing: one :class:`~prometheus_client.CollectorRegistry` per process, built
in the composition root and injected; domain code never imports ``prometheus_client``."""

from __future__ import annotations

import threading
import weakref
from typing import Any, ClassVar, Self

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


class PerRegistry:
    """Metric families built once per registry and shared by every user in the process.

    Several relays, consumers or followers of one process register their families once and
    tell themselves apart by a label; a second registration of the same names would be
    refused by ``prometheus_client``. Subclasses build their families in ``__init__``.
    """

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, Any]]
    _lock: ClassVar[threading.Lock]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._by_registry = weakref.WeakKeyDictionary()
        cls._lock = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        raise NotImplementedError

    @classmethod
    def of(cls, registry: CollectorRegistry | None) -> Self:
        """The metrics of ``registry`` (a private registry when None)."""
        if registry is None:
            return cls(CollectorRegistry(auto_describe=True))
        with cls._lock:
            metrics = cls._by_registry.get(registry)
            if metrics is None:
                metrics = cls(registry)
                cls._by_registry[registry] = metrics
            return metrics
