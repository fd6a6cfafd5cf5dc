"""The renewal scheduler: records ``PeriodRenewed`` for every cloud whose period has ended.

Each tick walks the clouds (from the owner index, i.e. the notification log) whose known period
end has passed in their local time zone and runs a renewal command for each. The command
records one ``PeriodRenewed`` per missed period (catching up after downtime). Two schedulers
(or a scheduler and a purchase) racing on one cloud cannot renew a period twice: both append
the same version, the store's optimistic concurrency refuses the second, whose command is
reloaded and finds nothing left to renew.

One cloud never stops the others: a cloud whose renewal fails (its period cannot be computed,
its aggregate does not load, its command is refused) is logged with its id, counted
(``seatledger_ledger_renewal_failures_total``) and *parked*: it is skipped until its backoff is
over (``park_initial_s``, doubled on every further failure up to ``park_max_s``), so a cloud
that can never renew costs one attempt per backoff, not one per tick. The tick goes on with
the other clouds. A parked cloud that renews again is unparked. The number of parked clouds is
``seatledger_ledger_renewals_parked_clouds``.

An outage is not the cloud's failure: when the store does not answer (or the cloud is
contended, see :func:`seatledger.consumer.is_outage`) the tick ends there, nothing is parked or
counted as a failed renewal, and the next tick tries every due cloud again, so the clouds renew
as soon as the store is back.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol
from uuid import UUID

from seatledger.billing import local_date
from seatledger.consumer import is_outage
from seatledger.logging import get_logger
from services.ledger.application import ConcurrencyConflict, LedgerService, LedgerUnavailable


class RenewalObserver(Protocol):
    def renewal_failed(self, stage: str) -> None: ...

    def clouds_parked(self, count: int) -> None: ...


class _NoObserver:
    def renewal_failed(self, stage: str) -> None:
        pass

    def clouds_parked(self, count: int) -> None:
        pass


@dataclass
class _Parked:
    """A cloud whose renewal failed: skipped until ``until`` (monotonic seconds)."""

    failures: int
    until: float
    error_type: str


class RenewalScheduler:
    def __init__(
        self,
        service: LedgerService,
        *,
        interval_s: float = 30.0,
        observer: RenewalObserver | None = None,
        park_initial_s: float = 60.0,
        park_max_s: float = 6 * 3600.0,
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.observer: RenewalObserver = observer or _NoObserver()
        self.park_initial_s = park_initial_s
        self.park_max_s = park_max_s
        self._next_due: dict[UUID, tuple[date, str]] = {}
        self._parked: dict[UUID, _Parked] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log = get_logger("seatledger.ledger.scheduler")

    @property
    def parked(self) -> dict[UUID, str]:
        """The clouds skipped for now after a failed renewal, with their last error's type."""
        return {cloud_id: parked.error_type for cloud_id, parked in self._parked.items()}

    def run_once(self) -> int:
        """Renew every cloud that is due now; returns how many periods were renewed."""
        now = self.service.clock()
        started = time.monotonic()
        pending: list[tuple[UUID, int, Future[Any]]] = []
        try:
            clouds = self.service.index.all()
        except Exception as exc:
            if not is_outage(exc):
                raise
            self.log.warning("renewal_tick_deferred", error_type=type(exc).__name__)
            return 0
        for cloud_id in clouds:
            parked = self._parked.get(cloud_id)
            if parked is not None and parked.until > started:
                continue
            try:
                due = self._due(cloud_id, now)
                if due is not None:
                    pending.append((cloud_id, due, self.service.submit_renewal(cloud_id)))
            except Exception as exc:
                if is_outage(exc):
                    self._deferred(cloud_id, "check", exc)
                    break
                self._failed(cloud_id, "check", exc)
        renewed = 0
        for cloud_id, index_before, future in pending:
            try:
                cloud = self.service.wait(future)
                end, zone = cloud.current_period.end, cloud.terms.time_zone
            except Exception as exc:
                if is_outage(exc) or isinstance(exc, (LedgerUnavailable, ConcurrencyConflict)):
                    self._deferred(cloud_id, "renew", exc)
                else:
                    self._failed(cloud_id, "renew", exc)
                continue
            renewed += max(cloud.period_index - index_before, 0)
            self._next_due[cloud_id] = (end, zone)
            if self._parked.pop(cloud_id, None) is not None:
                self.log.info("renewal_resumed", cloud_id=str(cloud_id))
        self.observer.clouds_parked(len(self._parked))
        if renewed:
            self.log.info("periods_renewed", count=renewed)
        try:
            self.service.quotes.purge_expired(now - timedelta(days=1))
        except Exception as exc:
            self.log.warning("quote_purge_failed", error_type=type(exc).__name__)
        return renewed

    def _due(self, cloud_id: UUID, now: Any) -> int | None:
        """The period index of a cloud that is due (None: not due, or no such cloud)."""
        known = self._next_due.get(cloud_id)
        if known is not None and local_date(now, known[1]) < known[0]:
            return None
        cloud = self.service.app.find(cloud_id)
        if cloud is None:
            return None
        if local_date(now, cloud.terms.time_zone) >= cloud.current_period.end:
            return int(cloud.period_index)
        self._next_due[cloud_id] = (cloud.current_period.end, cloud.terms.time_zone)
        return None

    def _deferred(self, cloud_id: UUID, stage: str, exc: Exception) -> None:
        """An outage or contention: nothing is parked or counted, the next tick retries."""
        self._next_due.pop(cloud_id, None)
        self.log.warning(
            "renewal_deferred",
            cloud_id=str(cloud_id),
            stage=stage,
            error_type=type(exc).__name__,
            error=str(exc)[:300],
        )

    def _failed(self, cloud_id: UUID, stage: str, exc: Exception) -> None:
        """Park the cloud (longer after each failure) and go on with the others."""
        previous = self._parked.get(cloud_id)
        failures = 1 if previous is None else previous.failures + 1
        backoff = min(self.park_max_s, self.park_initial_s * 2 ** (failures - 1))
        self._parked[cloud_id] = _Parked(failures, time.monotonic() + backoff, type(exc).__name__)
        self._next_due.pop(cloud_id, None)
        self.observer.renewal_failed(stage)
        self.log.error(
            "renewal_failed",
            cloud_id=str(cloud_id),
            stage=stage,
            error_type=type(exc).__name__,
            error=str(exc)[:300],
            failures=failures,
            parked_for_s=backoff,
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                self.log.error("renewal_tick_failed", error_type=type(exc).__name__)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="ledger-renewals", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
