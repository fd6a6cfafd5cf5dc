"""The notifier's event-sourced application (name ``notifier``): the delivery log.

Its store holds one :class:`~services.notifier.domain.Delivery` per invoice and, through
:class:`~seatledger.tracking.TrackedApplication`, the position of every ``InvoiceIssued``
message it accepted, saved in the same transaction as the delivery it created.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from schemas.invoices import InvoiceIssued
from seatledger.tracking import ConcurrencyConflict, Position, TrackedApplication
from services.notifier.domain import Delivery, delivery_id_for
from services.notifier.message import InvalidMessageInput, validate

APPLICATION_NAME = "notifier"


class Accepted(enum.Enum):
    """What became of an ``InvoiceIssued`` message."""

    #: A new delivery, pending: the sender will send it.
    NEW = "new"
    #: A new delivery, failed at once: its header values cannot be used (never sent).
    REFUSED = "refused"
    #: The invoice has a delivery already (the same event published again): nothing is sent;
    #: only the position is recorded.
    KNOWN = "known"
    #: This very message was processed already (a redelivery of its position): nothing recorded.
    REDELIVERED = "redelivered"


class NotifierApplication(TrackedApplication):
    name = APPLICATION_NAME

    # -- inbound ------------------------------------------------------------------------------

    def accept(self, invoice: InvoiceIssued, position: Position, now: datetime) -> Accepted:
        """Record the delivery of ``invoice`` and ``position`` in one transaction."""
        if self.has_processed(position):
            return Accepted.REDELIVERED
        if self.find(delivery_id_for(invoice.invoice_id)) is not None:
            return self.skip(position, Accepted.KNOWN)
        delivery = Delivery(
            invoice_id=invoice.invoice_id,
            invoice_number=invoice.invoice_number,
            cloud_id=invoice.cloud_id,
            issued_at=invoice.issued_at,
            requested_at=now,
            invoice=invoice.model_dump(mode="json"),
        )
        outcome = Accepted.NEW
        try:
            validate(invoice)
        except InvalidMessageInput as exc:
            delivery.mark_failed(now, exc.reason, str(exc))
            outcome = Accepted.REFUSED
        try:
            saved = self.save_tracked(position, delivery)
        except ConcurrencyConflict:
            # Another instance recorded this invoice's delivery first (the same event read
            # from two positions at once): it sends; this one only records its position.
            return self.skip(position, Accepted.KNOWN)
        return outcome if saved else Accepted.REDELIVERED

    def skip(self, position: Position, outcome: Accepted = Accepted.KNOWN) -> Accepted:
        """Record ``position`` alone (a message that changes nothing here)."""
        return outcome if self.save_tracked(position) else Accepted.REDELIVERED

    # -- the sender's commands ----------------------------------------------------------------

    def find(self, delivery_id: UUID) -> Delivery | None:
        try:
            delivery: Delivery = self.repository.get(delivery_id)
        except AggregateNotFoundError:
            return None
        return delivery

    def delivery_of(self, invoice_id: UUID) -> Delivery | None:
        return self.find(delivery_id_for(invoice_id))

    def claim(self, delivery_id: UUID, now: datetime, lease: timedelta) -> Delivery | None:
        """Take the lease of the delivery's next attempt; None if it is not due or another
        sender took it first."""
        delivery = self.find(delivery_id)
        if delivery is None or not delivery.is_due(now):
            return None
        delivery.start_attempt(now, lease)
        if not self._save_if_current(delivery):
            return None
        return delivery

    def renew_lease(
        self, delivery: Delivery, attempt: int, now: datetime, lease: timedelta
    ) -> bool:
        """Extend the lease of ``attempt``, in progress; False when another sender changed the
        delivery since it was loaded (the attempt was taken over: the lease is lost)."""
        delivery.renew_lease(attempt, now, lease)
        return self._save_if_current(delivery)

    def record_sent(self, delivery: Delivery, now: datetime, message_id: str) -> bool:
        delivery.mark_sent(now, message_id)
        return self._save_if_current(delivery)

    def record_retry(
        self, delivery: Delivery, now: datetime, reason: str, detail: str, retry_at: datetime
    ) -> bool:
        delivery.attempt_failed(now, reason, detail, retry_at)
        return self._save_if_current(delivery)

    def record_failed(
        self,
        delivery: Delivery,
        now: datetime,
        reason: str,
        detail: str,
        message_id: str | None = None,
    ) -> bool:
        delivery.mark_failed(now, reason, detail, message_id)
        return self._save_if_current(delivery)

    def _save_if_current(self, aggregate: Any) -> bool:
        """Save; False when another sender changed the delivery since it was loaded."""
        try:
            self.save(aggregate)
        except IntegrityError:
            return False
        return True
