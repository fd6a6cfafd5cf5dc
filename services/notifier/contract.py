"""The notifier's contract mapping: its domain events onto the published outcome events.

Only the two final events of a delivery leave the service: ``Sent`` becomes ``EmailSent``,
``Failed`` becomes ``EmailFailed`` (both on ``seatledger.notifications.v1``, keyed by the cloud
id). ``Requested``, ``AttemptStarted``, ``LeaseRenewed`` and ``AttemptFailed`` are internal and
map to None.
"""

from __future__ import annotations

from typing import Any, get_args
from uuid import UUID

from schemas._base import EventData
from schemas.envelope import ContractMapper, EnvelopeParts, stable_event_id
from schemas.notifications import EmailFailed, EmailSent, FailureReason
from services.notifier.domain import DELIVERY_NAMESPACE, delivery_event_name

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


def cloud_event_id(originator_id: UUID, originator_version: int) -> UUID:
    """The stable CloudEvent id of the domain event ``(originator_id, originator_version)``."""
    return UUID(_event_id(originator_id, originator_version))


def _event_id(originator_id: UUID, originator_version: int) -> str:
    return stable_event_id(DELIVERY_NAMESPACE, f"cloud-event:{originator_id}:{originator_version}")


def envelope_parts(domain_event: Any) -> EnvelopeParts | None:
    """The published parts of a domain event (data, id, subject, time), or None.

    The event id is derived from the domain event's identity (delivery id and version), so a
    re-publication after a relay crash carries the same id.
    """
    data = to_contract(domain_event)
    if data is None:
        return None
    event_id = _event_id(domain_event.originator_id, domain_event.originator_version)
    return data, event_id, str(domain_event.cloud_id), domain_event.timestamp


#: The published envelope of a domain event (the relay's mapper; ``CloudEvent | None`` when
#: called); the outbox relay builds the message bytes from :func:`envelope_parts` directly.
to_cloud_event = ContractMapper(envelope_parts)
