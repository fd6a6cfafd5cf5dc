"""The renewal scheduler: records ``PeriodRenewed`` for every cloud whose period has ended.

Each tick walks the clouds (from the owner index, i.e. the notification log) whose known period
end has passed in their local time zone and runs a renewal command for each. The command
records one ``PeriodRenewed`` per missed period (catching up after downtime). Two schedulers
(or a scheduler and a purchase) racing on one cloud cannot renew a period twice: both append
the same version, the store's optimistic concurrency refuses the second, whose command is
reloaded and finds nothing left to renew.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from seatledger.billing import local_date
from seatledger.logging import get_logger
from services.ledger.application import LedgerService


class RenewalScheduler:
    def __init__(self, service: LedgerService, *, interval_s: float = 30.0) -> None:
        self.service = service
        self.interval_s = interval_s
        self._next_due: dict[UUID, tuple[date, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log = get_logger("seatledger.ledger.scheduler")

    def run_once(self) -> int:
        """Renew every cloud that is due now; returns how many periods were renewed."""
        now = self.service.clock()
        pending: list[tuple[UUID, int, Future[Any]]] = []
        for cloud_id in self.service.index.all():
            known = self._next_due.get(cloud_id)
            if known is not None and local_date(now, known[1]) < known[0]:
                continue
            cloud = self.service.app.find(cloud_id)
            if cloud is None:
                continue
            if local_date(now, cloud.terms.time_zone) >= cloud.current_period.end:
                pending.append(
                    (cloud_id, cloud.period_index, self.service.submit_renewal(cloud_id))
                )
            else:
                self._next_due[cloud_id] = (cloud.current_period.end, cloud.terms.time_zone)
        renewed = 0
        for cloud_id, index_before, future in pending:
            try:
                cloud = self.service.wait(future)
            except Exception as exc:
                self.log.warning(
                    "renewal_failed", cloud_id=str(cloud_id), error_type=type(exc).__name__
                )
                continue
            renewed += max(cloud.period_index - index_before, 0)
            self._next_due[cloud_id] = (cloud.current_period.end, cloud.terms.time_zone)
        if renewed:
            self.log.info("periods_renewed", count=renewed)
        try:
            self.service.quotes.purge_expired(now - timedelta(days=1))
        except Exception as exc:
            self.log.warning("quote_purge_failed", error_type=type(exc).__name__)
        return renewed

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
