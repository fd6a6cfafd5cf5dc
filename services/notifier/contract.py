"""The notifier's contract mapping: its domain events onto the published outcome events.

Only the two final events of a delivery leave the service: ``Sent`` becomes ``EmailSent``,
``Failed`` becomes ``EmailFailed`` (both on ``seatledger.notifications.v1``, keyed by the cloud
id). ``Requested``, ``AttemptStarted`` and ``AttemptFailed`` are internal and map to None.
"""

from __future__ import annotations

from typing import Any, get_args

from schemas._base import EventData
from schemas.notifications import EmailFailed, EmailSent, FailureReason
from services.notifier.domain import delivery_event_name

_KNOWN_REASONS = frozenset(get_args(FailureReason))


def to_contract(domain_event: Any) -> EventData | None:
    """The contract event of a notifier domain event, or None if it is not published."""
    kind = delivery_event_name(domain_event)
    if kind == "Sent":
        return EmailSent(
            invoice_id=domain_event.invoice_id,
            invoice_number=domain_event.invoice_number,
            cloud_id=domain_event.cloud_id,
            message_id=domain_event.message_id,
            attempts=domain_event.attempts,
            sent_at=domain_event.sent_at,
        )
    if kind == "Failed":
        reason = domain_event.reason
        return EmailFailed(
            invoice_id=domain_event.invoice_id,
            invoice_number=domain_event.invoice_number,
            cloud_id=domain_event.cloud_id,
            message_id=domain_event.message_id,
            attempts=domain_event.attempts,
            failed_at=domain_event.failed_at,
            # Any other permanent refusal of a transport is published as delivery_refused.
            reason=reason if reason in _KNOWN_REASONS else "delivery_refused",
            detail=domain_event.detail,
        )
    return None


def subject_of(data: EventData) -> str:
    """The CloudEvents subject and Kafka key: the cloud id."""
    return str(getattr(data, "cloud_id"))  # noqa: B009
