"""The contract mapping: the invoicer's domain events onto ``schemas.invoices.InvoiceIssued``.

The relay publishes the invoicer's notification log to ``seatledger.invoices.v1`` through
:func:`to_cloud_event`; the HTTP API and the PDF use :func:`invoice_issued` on an invoice. The
CloudEvent id is derived from the domain event's originator id and version, so a
re-publication carries the same id and consumers dedupe on it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from schemas.envelope import ContractMapper, EnvelopeParts, stable_event_id
from schemas.invoices import CausingEvent, Customer, InvoiceIssued, InvoiceLine
from schemas.ledger import BillingPeriodRange
from services.invoicer.domain import Invoice
from services.invoicer.domain.model import INVOICER_NAMESPACE

SOURCE = "/seatledger/invoicer"


def _line(line: Any) -> InvoiceLine:
    return InvoiceLine(
        kind=line.kind,
        description=line.description,
        quantity=line.quantity,
        unit_price=line.unit_price,
        period=BillingPeriodRange(start=line.period_start, end=line.period_end),
        charge_date=line.charge_date,
        remaining_days=line.remaining_days,
        period_days=line.period_days,
        unrounded_amount=line.unrounded_amount,
        amount=line.amount,
    )


def _invoice_issued(invoice_id: UUID, source: Any) -> InvoiceIssued:
    """``source`` is an :class:`Invoice` or its ``Issued`` event: both carry the same fields."""
    return InvoiceIssued(
        invoice_id=invoice_id,
        invoice_number=source.number,
        cloud_id=source.cloud_id,
        kind=source.kind,
        issue_date=source.issue_date,
        issued_at=source.issued_at,
        time_zone=source.time_zone,
        customer=Customer(
            name=source.customer.name,
            owner_id=source.customer.owner_id,
            billing_email=source.customer.billing_email,
            locale=source.customer.locale,
        ),
        currency=source.currency,
        tax_rate=source.tax_rate,
        lines=[_line(line) for line in source.lines],
        net=source.net,
        tax=source.tax,
        gross=source.gross,
        caused_by=CausingEvent(
            event_id=source.caused_by.event_id, event_type=source.caused_by.event_type
        ),
    )


def invoice_issued(invoice: Invoice) -> InvoiceIssued:
    """The contract view of an issued invoice (what consumers and the PDF renderer see)."""
    return _invoice_issued(invoice.id, invoice)


def cloud_event_id(originator_id: UUID, originator_version: int) -> UUID:
    """The stable CloudEvent id of the domain event ``(originator_id, originator_version)``."""
    return UUID(_event_id(originator_id, originator_version))


def _event_id(originator_id: UUID, originator_version: int) -> str:
    return stable_event_id(INVOICER_NAMESPACE, f"cloud-event:{originator_id}:{originator_version}")


def envelope_parts(domain_event: Any) -> EnvelopeParts | None:
    """The published parts of an invoicer domain event (data, id, subject, time); None for
    internal events (number series, invoice indexes), which are not published."""
    issued_event_class: type[Any] = getattr(Invoice, "Issued")  # noqa: B009 (made by @event)
    if not isinstance(domain_event, issued_event_class):
        return None
    data = _invoice_issued(domain_event.originator_id, domain_event)
    event_id = _event_id(domain_event.originator_id, domain_event.originator_version)
    return data, event_id, str(data.cloud_id), data.issued_at


#: The published form of an invoicer domain event (``CloudEvent | None`` when called); the
#: outbox relay builds the message bytes from :func:`envelope_parts` directly.
to_cloud_event = ContractMapper(envelope_parts)
