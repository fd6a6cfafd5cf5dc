"""The inbound adapter: a ledger contract event in, an invoice (or just a new position) out.

The tracked consumer (Kafka) and the notification-log follower (embedded) both call
:class:`LedgerEventHandler` with a validated CloudEvent, its contract model and its position:

- ``SeatsIncreased`` and ``PeriodRenewed`` issue an invoice (generator + application, one
  transaction with the position);
- every other ledger event advances the position only;
- an event that contradicts its own terms (or is not a ledger event) raises
  :class:`~seatledger.consumer.PoisonMessage`: it is dead-lettered and nothing is recorded but
  the position;
- so does an event whose invoice cannot be computed at all: the generator is a pure function
  of the event, so a period beyond the calendar (``OverflowError``, ``ValueError``,
  :class:`~seatledger.billing.PeriodError`) or an amount decimal arithmetic refuses
  (``ArithmeticError``, e.g. ``decimal.InvalidOperation``) fails the same way on every attempt:
  it is dead-lettered at once instead of holding up the events behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from schemas._base import EventData
from schemas.envelope import CloudEvent
from schemas.ledger import LedgerEvent
from seatledger.consumer import PoisonMessage
from seatledger.logging import get_logger
from seatledger.tracking import Position
from services.invoicer.application import InvoicerApplication, IssueStatus
from services.invoicer.domain import InvalidBillingEventError, InvoiceDraft, generate_invoice
from services.invoicer.metrics import InvoicerMetrics

log = get_logger("services.invoicer")


class LedgerEventHandler:
    """Handles one ledger event; see the module documentation."""

    def __init__(
        self,
        app: InvoicerApplication,
        metrics: InvoicerMetrics | None = None,
        *,
        on_issued: Callable[[UUID], object] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.on_issued = on_issued

    def __call__(self, cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        try:
            draft = self._draft(cloud_event, data)
        except PoisonMessage:
            self._outcome("rejected")
            raise
        if draft is None:
            self._outcome("ignored" if self.app.advance(position) else "duplicate")
            return
        result = self.app.issue(draft, position)
        if self.metrics is not None and result.attempts > 1:
            self.metrics.number_conflicts.inc(result.attempts - 1)
        self._outcome(result.status.value)
        if result.status is not IssueStatus.ISSUED or result.invoice is None:
            log.info(
                "invoice_not_reissued",
                outcome=result.status.value,
                cloud_id=str(draft.cloud_id),
                invoice_id=str(draft.invoice_id),
                source=position.source,
                offset=position.offset,
            )
            return
        invoice = result.invoice
        if draft.quote_deviation is not None:
            log.warning(
                "quote_honoured_despite_deviation",
                cloud_id=str(invoice.cloud_id),
                invoice_number=invoice.number,
                quote_id=str(draft.quote_id),
                deviation=str(draft.quote_deviation),
            )
            if self.metrics is not None:
                self.metrics.quote_deviations.inc()
        issued_at: datetime = invoice.issued_at
        if self.metrics is not None:
            self.metrics.invoice_issued(
                invoice.currency,
                invoice.kind,
                invoice.net,
                invoice.gross,
                (issued_at - draft.event_time).total_seconds(),
            )
        log.info(
            "invoice_issued",
            invoice_number=invoice.number,
            invoice_id=str(invoice.id),
            cloud_id=str(invoice.cloud_id),
            kind=invoice.kind,
            currency=invoice.currency,
            net=str(invoice.net),
            gross=str(invoice.gross),
            source=position.source,
            offset=position.offset,
            attempts=result.attempts,
        )
        if self.on_issued is not None:
            self.on_issued(invoice.id)

    @staticmethod
    def _draft(cloud_event: CloudEvent, data: EventData) -> InvoiceDraft | None:
        """The invoice ``data`` causes (None: none); :class:`PoisonMessage` if it never can."""
        if not isinstance(data, LedgerEvent):
            raise PoisonMessage(f"{cloud_event.type} is not a ledger event")
        try:
            event_id = UUID(cloud_event.id)
        except ValueError as exc:
            raise PoisonMessage(f"event id {cloud_event.id!r} is not a UUID") from exc
        if cloud_event.subject != str(data.cloud_id):
            raise PoisonMessage(
                f"subject {cloud_event.subject!r} is not the event's cloud {data.cloud_id}"
            )
        try:
            return generate_invoice(data, event_id)
        except InvalidBillingEventError as exc:
            raise PoisonMessage(str(exc)) from exc
        except (ArithmeticError, ValueError) as exc:
            # OverflowError, decimal.InvalidOperation, PeriodError, "year 10000 is out of
            # range": deterministic, the same event fails the same way every time.
            raise PoisonMessage(
                f"the invoice of {cloud_event.type} cannot be computed: {type(exc).__name__}: {exc}"
            ) from exc

    def _outcome(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.outcome(outcome)
