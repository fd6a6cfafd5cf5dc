"""The delivery of one invoice e-mail: an event-sourced aggregate and its retry policy.

One :class:`Delivery` exists per invoice; its id is derived from the invoice id, so a
redelivered ``InvoiceIssued`` finds the delivery that already exists instead of creating a
second one. Its life::

    Requested --AttemptStarted--> (SMTP) --Sent-----------> sent (final)
        ^            ^   LeaseRenewed*  \\--AttemptFailed--> pending again, due after a backoff
        |                                \\-Failed---------> failed (final)
        '------ a lease that expired (the sender died) allows a new AttemptStarted

``AttemptStarted`` is a lease: it is saved *before* the SMTP transaction, with optimistic
concurrency on the aggregate's version, so of several notifier instances exactly one sends a
given attempt. The lease is short; the sender that holds it saves ``LeaseRenewed`` (same
optimistic concurrency) while its attempt is still in progress, so a live sender's attempt is
never taken over, and a dead sender's attempt is due again soon after its last renewal. If the
sender dies between the SMTP server's acceptance and the save of ``Sent``, the lease expires
and the message is sent again, with the same ``Message-ID``.

Pure domain: no I/O, no clock, no randomness (the caller passes times and jitter in).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

#: Namespace of the delivery ids (``uuid5(namespace, str(invoice_id))``).
DELIVERY_NAMESPACE = UUID("6f1c3a52-5d0e-4a57-9d43-2f8e1b7c0a91")

DeliveryState = Literal["pending", "sent", "failed"]


def delivery_id_for(invoice_id: UUID) -> UUID:
    """The id of the one delivery of an invoice."""
    return uuid5(DELIVERY_NAMESPACE, str(invoice_id))


class DeliveryError(Exception):
    """A command that the delivery's state does not allow."""


class AlreadyFinished(DeliveryError):
    """The delivery was sent or failed for good; nothing more happens to it."""


class NotDue(DeliveryError):
    """The delivery is leased by an attempt in flight or waits for its backoff."""


class AttemptOver(DeliveryError):
    """The attempt whose lease was to be renewed is no longer the one in flight."""


class Delivery(Aggregate):
    """The e-mail of one issued invoice."""

    @staticmethod
    def create_id(invoice_id: UUID, **_: Any) -> UUID:
        return delivery_id_for(invoice_id)

    @event("Requested")
    def __init__(
        self,
        invoice_id: UUID,
        invoice_number: str,
        cloud_id: UUID,
        issued_at: datetime,
        requested_at: datetime,
        invoice: dict[str, Any],
    ) -> None:
        self.invoice_id = invoice_id
        self.invoice_number = invoice_number
        self.cloud_id = cloud_id
        self.issued_at = issued_at
        self.requested_at = requested_at
        #: The ``InvoiceIssued`` data (JSON form): the message is rendered from it at send time.
        self.invoice = invoice
        self.state: DeliveryState = "pending"
        self.attempts = 0
        self.next_attempt_at: datetime = requested_at
        self.lease_until: datetime | None = None
        self.message_id: str | None = None
        self.finished_at: datetime | None = None
        self.failure_reason: str | None = None
        self.failure_detail: str | None = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state != "pending"

    def due_at(self) -> datetime:
        """When the next attempt may start: after the backoff and after any lease in flight."""
        if self.lease_until is not None and self.lease_until > self.next_attempt_at:
            return self.lease_until
        return self.next_attempt_at

    def is_due(self, now: datetime) -> bool:
        return not self.finished and self.due_at() <= now

    def in_attempt(self, attempt: int) -> bool:
        """Whether attempt number ``attempt`` is still in flight: started, and no outcome nor
        later attempt recorded since."""
        return not self.finished and self.attempts == attempt and self.lease_until is not None

    # -- commands ---------------------------------------------------------------------------

    def start_attempt(self, now: datetime, lease: timedelta) -> None:
        """Take the lease for one SMTP attempt (saved before the attempt)."""
        if self.finished:
            raise AlreadyFinished(f"delivery {self.id} is {self.state}")
        if not self.is_due(now):
            raise NotDue(f"delivery {self.id} is due at {self.due_at().isoformat()}")
        self._attempt_started(attempt=self.attempts + 1, started_at=now, lease_until=now + lease)

    @event("AttemptStarted")
    def _attempt_started(self, attempt: int, started_at: datetime, lease_until: datetime) -> None:
        self.attempts = attempt
        self.lease_until = lease_until

    def renew_lease(self, attempt: int, now: datetime, lease: timedelta) -> None:
        """Extend the lease of attempt ``attempt``, still in progress, to ``now + lease``."""
        if self.finished:
            raise AlreadyFinished(f"delivery {self.id} is {self.state}")
        if not self.in_attempt(attempt):
            raise AttemptOver(f"delivery {self.id} is not in attempt {attempt}")
        self._lease_renewed(attempt=attempt, renewed_at=now, lease_until=now + lease)

    @event("LeaseRenewed")
    def _lease_renewed(self, attempt: int, renewed_at: datetime, lease_until: datetime) -> None:
        self.lease_until = lease_until

    def attempt_failed(self, now: datetime, reason: str, detail: str, retry_at: datetime) -> None:
        """A temporary failure: the delivery stays pending and is due again at ``retry_at``."""
        if self.finished:
            raise AlreadyFinished(f"delivery {self.id} is {self.state}")
        self._attempt_failed(failed_at=now, reason=reason, detail=detail, retry_at=retry_at)

    @event("AttemptFailed")
    def _attempt_failed(
        self, failed_at: datetime, reason: str, detail: str, retry_at: datetime
    ) -> None:
        self.lease_until = None
        self.next_attempt_at = retry_at
        self.failure_reason = reason
        self.failure_detail = detail

    def mark_sent(self, now: datetime, message_id: str) -> None:
        if self.finished:
            raise AlreadyFinished(f"delivery {self.id} is {self.state}")
        self._sent(
            sent_at=now,
            message_id=message_id,
            invoice_id=self.invoice_id,
            invoice_number=self.invoice_number,
            cloud_id=self.cloud_id,
            attempts=self.attempts,
        )

    @event("Sent")
    def _sent(
        self,
        sent_at: datetime,
        message_id: str,
        invoice_id: UUID,
        invoice_number: str,
        cloud_id: UUID,
        attempts: int,
    ) -> None:
        self.state = "sent"
        self.message_id = message_id
        self.finished_at = sent_at
        self.lease_until = None

    def mark_failed(
        self, now: datetime, reason: str, detail: str, message_id: str | None = None
    ) -> None:
        """A permanent failure: recorded once, never retried."""
        if self.finished:
            raise AlreadyFinished(f"delivery {self.id} is {self.state}")
        self._failed(
            failed_at=now,
            reason=reason,
            detail=detail,
            message_id=message_id,
            invoice_id=self.invoice_id,
            invoice_number=self.invoice_number,
            cloud_id=self.cloud_id,
            attempts=self.attempts,
        )

    @event("Failed")
    def _failed(
        self,
        failed_at: datetime,
        reason: str,
        detail: str,
        message_id: str | None,
        invoice_id: UUID,
        invoice_number: str,
        cloud_id: UUID,
        attempts: int,
    ) -> None:
        self.state = "failed"
        self.message_id = message_id
        self.finished_at = failed_at
        self.failure_reason = reason
        self.failure_detail = detail
        self.lease_until = None


def delivery_event_name(domain_event: object) -> str | None:
    """``"Requested"``, ``"AttemptStarted"``, ``"LeaseRenewed"``, ``"AttemptFailed"``, ``"Sent"``
    or ``"Failed"`` for an event of a :class:`Delivery`; None for anything else."""
    qualname = type(domain_event).__qualname__
    owner, _, name = qualname.rpartition(".")
    return name if owner == Delivery.__qualname__ else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, and a limit after which a delivery fails for good.

    The delay before attempt ``n + 1`` after ``n`` failed attempts is drawn uniformly from
    ``[d/2, d]`` with ``d = min(max_delay, base_delay x 2^(n-1))`` ("equal jitter"): retries of
    many invoices after one outage spread out instead of arriving at the SMTP server together.
    """

    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(days=3)

    def __post_init__(self) -> None:
        if self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")

    def delay(self, failed_attempts: int, jitter: float) -> timedelta:
        """``jitter`` in ``[0, 1]`` (from the caller's random source)."""
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter is a fraction in [0, 1]")
        exponent = max(0, failed_attempts - 1)
        ceiling = self.max_delay
        if exponent < 32:  # beyond, the doubling has long passed any sensible cap
            ceiling = min(self.max_delay, self.base_delay * (2**exponent))
        return ceiling / 2 + (ceiling / 2) * jitter

    def next_attempt(
        self, requested_at: datetime, now: datetime, failed_attempts: int, rng: random.Random
    ) -> datetime | None:
        """When to try again, or None when the delivery has been retried long enough."""
        retry_at = now + self.delay(failed_attempts, rng.random())
        if retry_at - requested_at > self.give_up_after:
            return None
        return retry_at
