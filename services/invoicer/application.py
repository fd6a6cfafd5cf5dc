"""The ``invoicer`` application: issues invoices, numbered gaplessly, exactly once per billing
event.

One transaction (:meth:`~seatledger.tracking.TrackedApplication.save_tracked`) records the new
invoice, the number it took from its series, the cloud's invoice index and the position of the
ledger message that caused it. So:

- a redelivered message (same position) is refused by the tracking record and issues nothing;
- a re-published ledger event (same event id, another offset) maps to the same invoice id,
  which exists already, so only the position advances;
- two invoicer instances that take the same number collide on the series' version; the loser
  reloads and retries, so the series has neither gaps nor duplicates;
- a crash before the commit leaves nothing behind; the message is processed again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import JSONTranscoder

from seatledger.tracking import ConcurrencyConflict, Position, TrackedApplication
from seatledger.transcodings import DataclassAsDict, DateAsISO
from services.invoicer.domain import (
    CausingEvent,
    CloudInvoices,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    NumberSeries,
    series_id_for,
    validate_prefix,
)
from services.invoicer.domain.generator import issue_date_of
from services.invoicer.domain.model import cloud_invoices_id_for


def utc_now() -> datetime:
    return datetime.now(UTC)


class IssueStatus(StrEnum):
    ISSUED = "issued"
    #: This message's position was processed before: nothing recorded.
    DUPLICATE = "duplicate"
    #: The invoice exists (the event came again at another position): the position advanced.
    ALREADY_INVOICED = "already_invoiced"


@dataclass(frozen=True)
class IssueResult:
    status: IssueStatus
    invoice: Invoice | None = None
    attempts: int = 1


class RetriesExhaustedError(ConcurrencyConflict):
    """Too many concurrency conflicts in a row; the message stays unprocessed (contention, so
    the consumer retries it without bound and never dead-letters it)."""


class InvoicerApplication(TrackedApplication):
    """Invoices, their number series and each cloud's invoice index."""

    name = "invoicer"
    # Series and indexes grow by one event per invoice: snapshots keep loading them cheap.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        NumberSeries: 100,
        CloudInvoices: 100,
    }

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        number_prefix: str = "SL",
        clock: Callable[[], datetime] = utc_now,
        max_attempts: int = 50,
    ) -> None:
        super().__init__(env)
        self.number_prefix = validate_prefix(number_prefix)
        self.clock = clock
        self.max_attempts = max_attempts

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(DataclassAsDict(Customer, "invoicer_customer"))
        transcoder.register(DataclassAsDict(InvoiceLine, "invoicer_invoice_line"))
        transcoder.register(DataclassAsDict(CausingEvent, "invoicer_causing_event"))

    # Commands.

    def issue(self, draft: InvoiceDraft, position: Position) -> IssueResult:
        """Issue the invoice of ``draft`` and record ``position``, exactly once.

        Retries on concurrency conflicts (another instance took the same number), reloading
        the series each time."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._issue_once(draft, position, attempt)
            except ConcurrencyConflict:
                # Another writer won; back off a little (with jitter) and reload.
                time.sleep(min(0.2, 0.005 * attempt) * random.random())  # noqa: S311
        raise RetriesExhaustedError(
            f"invoice {draft.invoice_id}: {self.max_attempts} concurrency conflicts in a row"
        )

    def _issue_once(self, draft: InvoiceDraft, position: Position, attempt: int) -> IssueResult:
        if self.has_processed(position):
            return IssueResult(IssueStatus.DUPLICATE, attempts=attempt)
        existing = self.find_invoice(draft.invoice_id)
        if existing is not None:
            recorded = self.save_tracked(position)
            status = IssueStatus.ALREADY_INVOICED if recorded else IssueStatus.DUPLICATE
            return IssueResult(status, existing, attempt)
        issued_at = self.clock()
        issue_date = issue_date_of(issued_at, draft.time_zone)
        series = self._series(issue_date.year)
        if series is None:
            series = NumberSeries.open(self.number_prefix, issue_date.year)
            number = series.last_number
        else:
            number = series.take_next()
        invoice = Invoice(
            invoice_id=draft.invoice_id,
            number=number,
            cloud_id=draft.cloud_id,
            kind=draft.kind,
            issue_date=issue_date,
            issued_at=issued_at,
            time_zone=draft.time_zone,
            customer=draft.customer,
            currency=draft.currency,
            tax_rate=draft.tax_rate,
            lines=list(draft.lines),
            net=draft.net,
            tax=draft.tax,
            gross=draft.gross,
            caused_by=draft.caused_by,
            event_time=draft.event_time,
        )
        index = self._index(draft.cloud_id)
        if index is None:
            index = CloudInvoices(cloud_id=draft.cloud_id, first_invoice_id=invoice.id)
        else:
            index.add(invoice.id)
        if not self.save_tracked(position, series, index, invoice):
            return IssueResult(IssueStatus.DUPLICATE, attempts=attempt)
        return IssueResult(IssueStatus.ISSUED, invoice, attempt)

    def advance(self, position: Position) -> bool:
        """Record ``position`` alone (a message that causes no invoice). False if processed."""
        return self.save_tracked(position)

    # Queries.

    def find_invoice(self, invoice_id: UUID) -> Invoice | None:
        try:
            invoice: object = self.repository.get(invoice_id)
        except AggregateNotFoundError:
            return None
        return invoice if isinstance(invoice, Invoice) else None

    def invoices_of_cloud(self, cloud_id: UUID) -> list[Invoice]:
        """The cloud's invoices in issue order (empty if it has none)."""
        index = self._index(cloud_id)
        if index is None:
            return []
        return [self.repository.get(invoice_id) for invoice_id in index.invoice_ids]

    def series_count(self, year: int, prefix: str | None = None) -> int:
        """How many numbers the series of ``year`` has handed out."""
        series = self._series(year, prefix)
        return 0 if series is None else series.count

    def _series(self, year: int, prefix: str | None = None) -> NumberSeries | None:
        try:
            series: object = self.repository.get(series_id_for(prefix or self.number_prefix, year))
        except AggregateNotFoundError:
            return None
        assert isinstance(series, NumberSeries)
        return series

    def _index(self, cloud_id: UUID) -> CloudInvoices | None:
        try:
            index: object = self.repository.get(cloud_invoices_id_for(cloud_id))
        except AggregateNotFoundError:
            return None
        assert isinstance(index, CloudInvoices)
        return index
