"""The invoice generator: a pure function of a billing event and the contract terms it carries.

Like Kill Bill's invoice generator it reads nothing and writes nothing: given the same ledger
event it always produces the same lines and totals. The invoicer calls it for every
``SeatsIncreased`` and ``PeriodRenewed``; an auditor can call :func:`rederive_invoices` on the
ledger's history alone and compare the result with the issued invoices.

Rules (``seatledger.billing`` computes every figure; nothing is re-implemented here):

- A seat purchase gives one line: ``seats_added x seat_price x R / D``, rounded once, half up
  (:func:`seatledger.billing.prorate`). A purchase made with a quote is charged exactly the
  quoted net, at the quote's pinned charge date.
- A renewal gives one line: every seat at the full period price
  (:func:`seatledger.billing.renewal_net`), ``R = D``.
- Tax at invoice level: ``tax = round_half_up(net x rate / 100)``, ``gross = net + tax``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.ledger import ContractTerms, LedgerEvent, PeriodRenewed, SeatsIncreased
from seatledger.billing import (
    BillingPeriod,
    Period,
    PeriodError,
    UnknownCurrencyError,
    period_at,
    period_containing,
    prorate,
    renewal_net,
    round_half_up,
    tax_amount,
)
from services.invoicer.domain.model import (
    CausingEvent,
    Customer,
    InvoiceKind,
    InvoiceLine,
    InvoicerError,
    invoice_id_for,
)


class InvalidBillingEventError(InvoicerError, ValueError):
    """A billing event that contradicts its own contract terms: it cannot be invoiced."""


#: The ledger events that cause an invoice.
BillingEvent = SeatsIncreased | PeriodRenewed


@dataclass(frozen=True)
class InvoiceDraft:
    """Everything of an invoice except what issuing adds (its number and issue date)."""

    invoice_id: UUID
    kind: InvoiceKind
    cloud_id: UUID
    time_zone: str
    customer: Customer
    currency: str
    tax_rate: Decimal
    lines: tuple[InvoiceLine, ...]
    net: Decimal
    tax: Decimal
    gross: Decimal
    caused_by: CausingEvent
    event_time: datetime
    quote_id: UUID | None = None
    #: The quoted net minus the net recomputed from the terms, when they differ (the quote wins).
    quote_deviation: Decimal | None = None


_WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "seat_purchase": ("{n} additional seat", "{n} additional seats"),
        "renewal": ("Renewal, {n} seat", "Renewal, {n} seats"),
        "quote": ("quote {quote}", "quote {quote}"),
    },
    "de": {
        "seat_purchase": ("{n} zusätzlicher Platz", "{n} zusätzliche Plätze"),
        "renewal": ("Verlängerung, {n} Platz", "Verlängerung, {n} Plätze"),
        "quote": ("Angebot {quote}", "Angebot {quote}"),
    },
}


def _describe(kind: InvoiceKind, locale: str, seats: int, quote_id: UUID | None) -> str:
    words = _WORDS.get(locale, _WORDS["en"])
    text = words[kind][0 if seats == 1 else 1].format(n=seats)
    if quote_id is not None:
        text += f" ({words['quote'][0].format(quote=quote_id)})"
    return text


def _billing_period(terms: ContractTerms) -> BillingPeriod:
    return BillingPeriod(terms.billing_period)


def _check_terms(terms: ContractTerms) -> None:
    try:
        ZoneInfo(terms.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidBillingEventError(f"unknown time zone {terms.time_zone!r}") from exc
    if terms.seat_price < 0:
        raise InvalidBillingEventError("a seat price is never negative")
    if terms.tax_rate < 0:
        raise InvalidBillingEventError("a tax rate is never negative")


def _customer(terms: ContractTerms) -> Customer:
    return Customer(
        name=terms.name,
        owner_id=terms.owner_id,
        billing_email=terms.billing_email,
        locale=terms.locale,
    )


def _totals(lines: tuple[InvoiceLine, ...], terms: ContractTerms) -> tuple[Decimal, Decimal]:
    net = sum((line.amount for line in lines), Decimal(0))
    return net, tax_amount(net, terms.tax_rate, terms.currency)


def seat_purchase_invoice(event: SeatsIncreased, event_id: UUID) -> InvoiceDraft:
    """The invoice of a seat purchase: one prorated line (or exactly the quoted net)."""
    terms = event.terms
    _check_terms(terms)
    if event.seats_after != event.seats_before + event.seats_added:
        raise InvalidBillingEventError(
            f"seats_after {event.seats_after} != seats_before {event.seats_before} "
            f"+ seats_added {event.seats_added}"
        )
    charge_date = event.quote.charge_date if event.quote else event.charge_date
    period = Period(event.period.start, event.period.end)
    try:
        expected = period_containing(terms.term_start, _billing_period(terms), charge_date)
    except PeriodError as exc:
        raise InvalidBillingEventError(str(exc)) from exc
    if expected != period:
        raise InvalidBillingEventError(
            f"the purchase on {charge_date.isoformat()} falls in the period "
            f"[{expected.start.isoformat()}, {expected.end.isoformat()}), "
            f"not [{period.start.isoformat()}, {period.end.isoformat()})"
        )
    try:
        proration = prorate(
            event.seats_added, terms.seat_price, period, charge_date, terms.currency
        )
    except (UnknownCurrencyError, PeriodError) as exc:
        raise InvalidBillingEventError(str(exc)) from exc
    amount = proration.net
    deviation: Decimal | None = None
    quote_id = event.quote.quote_id if event.quote else None
    if event.quote is not None:
        quoted = event.quote.net
        if quoted < 0 or round_half_up(quoted, terms.currency) != quoted:
            raise InvalidBillingEventError(
                f"quoted net {quoted} is not an amount in {terms.currency}'s minor units"
            )
        if quoted != proration.net:
            # The quote is a promise: the purchase is charged exactly the quoted amount.
            deviation = quoted - proration.net
            amount = round_half_up(quoted, terms.currency)
    line = InvoiceLine(
        kind="seat_purchase",
        description=_describe("seat_purchase", terms.locale, event.seats_added, quote_id),
        quantity=event.seats_added,
        unit_price=terms.seat_price,
        period_start=period.start,
        period_end=period.end,
        charge_date=charge_date,
        remaining_days=proration.remaining_days,
        period_days=proration.period_days,
        unrounded_amount=proration.unrounded,
        amount=amount,
    )
    return _draft(
        "seat_purchase",
        str(event_id),
        event,
        event_id,
        line,
        quote_id=quote_id,
        quote_deviation=deviation,
    )


def _draft(
    kind: InvoiceKind,
    identity: str,
    event: SeatsIncreased | PeriodRenewed,
    event_id: UUID,
    line: InvoiceLine,
    *,
    quote_id: UUID | None = None,
    quote_deviation: Decimal | None = None,
) -> InvoiceDraft:
    """The invoice of one line caused by ``event``; ``identity`` makes its id (one invoice
    per purchase event, one per renewed period)."""
    terms = event.terms
    lines = (line,)
    net, tax = _totals(lines, terms)
    return InvoiceDraft(
        invoice_id=invoice_id_for(kind, identity),
        kind=kind,
        cloud_id=event.cloud_id,
        time_zone=terms.time_zone,
        customer=_customer(terms),
        currency=terms.currency,
        tax_rate=terms.tax_rate,
        lines=lines,
        net=net,
        tax=tax,
        gross=net + tax,
        caused_by=CausingEvent(event_id=event_id, event_type=type(event).event_type()),
        event_time=event.occurred_at,
        quote_id=quote_id,
        quote_deviation=quote_deviation,
    )


def renewal_invoice(event: PeriodRenewed, event_id: UUID) -> InvoiceDraft:
    """The invoice of a renewed period: every seat at the full period price."""
    terms = event.terms
    _check_terms(terms)
    period = Period(event.period.start, event.period.end)
    expected = period_at(terms.term_start, _billing_period(terms), event.period_index)
    if expected != period:
        raise InvalidBillingEventError(
            f"period {event.period_index} of the term is "
            f"[{expected.start.isoformat()}, {expected.end.isoformat()}), "
            f"not [{period.start.isoformat()}, {period.end.isoformat()})"
        )
    try:
        amount = renewal_net(event.seats, terms.seat_price, terms.currency)
    except UnknownCurrencyError as exc:
        raise InvalidBillingEventError(str(exc)) from exc
    line = InvoiceLine(
        kind="renewal",
        description=_describe("renewal", terms.locale, event.seats, None),
        quantity=event.seats,
        unit_price=terms.seat_price,
        period_start=period.start,
        period_end=period.end,
        charge_date=period.start,
        remaining_days=period.days,
        period_days=period.days,
        unrounded_amount=Decimal(event.seats) * terms.seat_price,
        amount=amount,
    )
    # One invoice per renewed period of a cloud, whatever event announced it.
    return _draft("renewal", f"{event.cloud_id}:{period.start.isoformat()}", event, event_id, line)


def generate_invoice(event: LedgerEvent, event_id: UUID) -> InvoiceDraft | None:
    """The invoice a ledger event causes, or None for events that cause none."""
    if isinstance(event, SeatsIncreased):
        return seat_purchase_invoice(event, event_id)
    if isinstance(event, PeriodRenewed):
        return renewal_invoice(event, event_id)
    return None


def rederive_invoices(history: Iterable[tuple[UUID, LedgerEvent]]) -> list[InvoiceDraft]:
    """Every invoice a ledger history ``(event id, event)`` implies, in history order, one per
    purchase and one per renewed period (a repeated event gives no second invoice)."""
    drafts: dict[UUID, InvoiceDraft] = {}
    for event_id, event in history:
        draft = generate_invoice(event, event_id)
        if draft is not None and draft.invoice_id not in drafts:
            drafts[draft.invoice_id] = draft
    return list(drafts.values())


def issue_date_of(moment: datetime, time_zone: str) -> date:
    """The issue date of an invoice issued at ``moment``: the local date in the contract's zone."""
    return moment.astimezone(ZoneInfo(time_zone)).date()
