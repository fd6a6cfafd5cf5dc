"""Events the notifier publishes on ``seatledger.notifications.v1`` (key: the cloud id).

They tell what became of an invoice's e-mail. Neither carries the recipient's address: a
consumer that needs it joins on ``invoice_id`` with ``InvoiceIssued``.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from schemas._base import EventData, Timestamp

#: Why an e-mail failed for good (stable codes; a new code is an optional addition).
FailureReason = Literal[
    "smtp_5xx",
    "invalid_address",
    "header_injection",
    "invalid_invoice",
    "retries_exhausted",
    "delivery_refused",
]


class EmailOutcome(EventData):
    source_service = "notifier"

    invoice_id: UUID
    invoice_number: str
    cloud_id: UUID
    message_id: str | None = Field(
        description="the Message-ID header (derived from the invoice id); null if never built"
    )
    attempts: int = Field(ge=0, description="SMTP attempts made")


class EmailSent(EmailOutcome):
    """The invoice e-mail was accepted by the SMTP server (or written to the outbox)."""

    event_name = "EmailSent"

    sent_at: Timestamp


class EmailFailed(EmailOutcome):
    """The invoice e-mail cannot be delivered; it is not retried."""

    event_name = "EmailFailed"

    failed_at: Timestamp
    reason: FailureReason
    detail: str = Field(description="the SMTP reply or the refusal, one line, no address")
