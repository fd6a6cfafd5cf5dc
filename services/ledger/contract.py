"""From the ledger's domain events to the published contract (``schemas/ledger.py``).

The relay and the embedded followers call :func:`to_cloud_event` with events read from the
notification log (``app.mapper.to_domain_event(notification)``). The CloudEvent ``id`` is
derived from (cloud id, version), so a re-publication carries the same id.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from schemas import ledger as contract
from schemas.envelope import ContractMapper, EnvelopeParts, stable_event_id
from services.ledger.domain import Actor, Cloud, ContractTerms

SOURCE = "/seatledger/ledger"
#: Namespace of the ledger's event ids.
EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://seatledger.dev/ledger/events")


def event_id(cloud_id: UUID, version: int) -> UUID:
    """The stable id of the event number ``version`` of cloud ``cloud_id``."""
    return UUID(stable_event_id(EVENT_ID_NAMESPACE, f"{cloud_id}:{version}"))


def _actor(actor: Actor) -> contract.Actor:
    kind = actor.kind if actor.kind in ("user", "service", "system") else "user"
    return contract.Actor(kind=kind, id=actor.id)


def _terms(terms: ContractTerms) -> contract.ContractTerms:
    return contract.ContractTerms(
        name=terms.name,
        owner_id=terms.owner_id,
        billing_email=terms.billing_email,
        currency=terms.currency,
        seat_price=terms.seat_price,
        billing_period=terms.billing_period,
        term_start=terms.term_start,
        time_zone=terms.time_zone,
        tax_rate=terms.tax_rate,
        locale=terms.locale,
    )


def to_contract(domain_event: Any) -> contract.LedgerEvent | None:
    """The contract payload of a domain event; None for internal-only events."""
    base: dict[str, Any] = {
        "cloud_id": domain_event.originator_id,
        "occurred_at": domain_event.timestamp,
        "actor": _actor(domain_event.actor),
    }
    from seatledger.billing import BillingPeriod, period_at

    match domain_event:
        case Cloud.ContractOpened():
            terms = domain_event.terms
            first = period_at(
                terms.term_start,
                BillingPeriod(terms.billing_period),
                domain_event.first_period_index,
            )
            return contract.ContractOpened(
                **base,
                terms=_terms(terms),
                seats=domain_event.seats,
                licensed_rights_groups=list(domain_event.licensed_rights_groups),
                first_period=contract.BillingPeriodRange(start=first.start, end=first.end),
            )
        case Cloud.SeatsIncreased():
            quote = domain_event.quote
            return contract.SeatsIncreased(
                **base,
                seats_before=domain_event.seats_before,
                seats_after=domain_event.seats_after,
                seats_added=domain_event.seats_after - domain_event.seats_before,
                charge_date=domain_event.charge_date,
                period=contract.BillingPeriodRange(
                    start=domain_event.period_start, end=domain_event.period_end
                ),
                terms=_terms(domain_event.terms),
                quote=(
                    contract.QuoteHonoured(
                        quote_id=quote.quote_id, charge_date=quote.charge_date, net=quote.net
                    )
                    if quote is not None
                    else None
                ),
            )
        case Cloud.LicenseAssigned():
            return contract.LicenseAssigned(
                **base,
                user_id=domain_event.user_id,
                rights_group=domain_event.rights_group,
                previous_rights_group=domain_event.previous_rights_group,
                licenses_assigned=domain_event.licenses_assigned,
                seats=domain_event.seats,
            )
        case Cloud.LicenseReleased():
            return contract.LicenseReleased(
                **base,
                user_id=domain_event.user_id,
                previous_rights_group=domain_event.previous_rights_group,
                rights_group=domain_event.rights_group,
                licenses_assigned=domain_event.licenses_assigned,
                seats=domain_event.seats,
            )
        case Cloud.LicenseRightsGroupChanged():
            return contract.LicenseRightsGroupChanged(
                **base,
                user_id=domain_event.user_id,
                rights_group=domain_event.rights_group,
                previous_rights_group=domain_event.previous_rights_group,
                licenses_assigned=domain_event.licenses_assigned,
                seats=domain_event.seats,
            )
        case Cloud.PeriodRenewed():
            return contract.PeriodRenewed(
                **base,
                period_index=domain_event.period_index,
                period=contract.BillingPeriodRange(
                    start=domain_event.period_start, end=domain_event.period_end
                ),
                seats_before=domain_event.seats_before,
                seats=domain_event.seats,
                reduction_applied=domain_event.reduction_applied,
                requested_seats=domain_event.requested_seats,
                licenses_assigned=domain_event.licenses_assigned,
                terms=_terms(domain_event.terms),
            )
        case Cloud.SeatReductionScheduled():
            return contract.SeatReductionScheduled(
                **base,
                seats=domain_event.seats,
                seats_current=domain_event.seats_current,
                effective_date=domain_event.effective_date,
            )
        case Cloud.BillingEmailChanged():
            return contract.BillingEmailChanged(**base, billing_email=domain_event.billing_email)
    return None


def envelope_parts(domain_event: Any) -> EnvelopeParts | None:
    """The published parts of a domain event (data, id, subject, time); None for
    internal-only events."""
    payload = to_contract(domain_event)
    if payload is None:
        return None
    cloud_id = domain_event.originator_id
    event_id = stable_event_id(EVENT_ID_NAMESPACE, f"{cloud_id}:{domain_event.originator_version}")
    return payload, event_id, str(cloud_id), domain_event.timestamp


#: The CloudEvent published for a domain event (``CloudEvent | None`` when called); the outbox
#: relay builds the message bytes from :func:`envelope_parts` directly.
to_cloud_event = ContractMapper(envelope_parts)
