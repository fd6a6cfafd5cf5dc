"""Explain an invoice: the ledger event behind it and the arithmetic of every line.

The invoice is read as stored (the invoicer's ``Invoice.Issued`` event), its causing event is
found in the ledger's history (the CloudEvent id is derived from the cloud and the event's
version), and the invoice is derived again from that event with the current code. Every figure
is shown twice where it can differ: as issued and as re-computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any
from uuid import UUID

from seatledger.audit.export import is_invoice_issued
from seatledger.audit.records import EventRecord, decode_state, to_record
from seatledger.audit.replay import Deriver, compare, draft_view, issued_view
from seatledger.audit.store import EventStore, StoredRow
from seatledger.billing import minor_units, round_half_up


class InvoiceNotFound(LookupError):
    """No issued invoice carries this number."""


@dataclass
class LineExplanation:
    number: int
    description: str
    quantity: int
    unit_price: str
    period_start: str
    period_end: str
    charge_date: str
    remaining_days: int
    period_days: int
    formula: str
    unrounded: str
    rounded: str
    charged: str
    issued_amount: str
    quoted: str | None = None


@dataclass
class Explanation:
    invoice_number: str
    invoice_id: str
    kind: str
    cloud_id: str
    issue_date: str
    issued_at: str
    currency: str
    minor_units: int
    tax_rate: str
    customer: dict[str, Any]
    event: EventRecord | None
    event_id: str
    event_type: str
    terms: dict[str, Any] | None
    lines: list[LineExplanation] = field(default_factory=list)
    net: str = ""
    tax_unrounded: str = ""
    tax: str = ""
    gross: str = ""
    issued_net: str = ""
    issued_tax: str = ""
    issued_gross: str = ""
    refused: str | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.event is not None and self.refused is None and not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "invoice_number": self.invoice_number,
            "invoice_id": self.invoice_id,
            "kind": self.kind,
            "cloud_id": self.cloud_id,
            "issue_date": self.issue_date,
            "issued_at": self.issued_at,
            "currency": self.currency,
            "minor_units": self.minor_units,
            "tax_rate": self.tax_rate,
            "customer": self.customer,
            "caused_by": {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "event": None if self.event is None else self.event.to_json(),
            },
            "lines": [vars(line) for line in self.lines],
            "totals": {
                "net": self.net,
                "tax_unrounded": self.tax_unrounded,
                "tax": self.tax,
                "gross": self.gross,
                "issued_net": self.issued_net,
                "issued_tax": self.issued_tax,
                "issued_gross": self.issued_gross,
            },
            "refused": self.refused,
            "differences": self.differences,
            "ok": self.ok,
        }


def find_invoice(invoicer: EventStore, number: str) -> tuple[StoredRow, dict[str, Any]]:
    """The stored ``Issued`` event of the invoice numbered ``number``."""
    needle = number.encode()
    for row in invoicer.iter_events():
        if needle not in row.state or not is_invoice_issued(row.topic):
            continue
        state = decode_state(row.state)
        if state.get("number") == number:
            return row, state
    raise InvoiceNotFound(f"no issued invoice is numbered {number}")


def find_ledger_event(ledger: EventStore, cloud_id: str, event_id: str) -> StoredRow | None:
    from services.ledger.contract import event_id as ledger_event_id

    try:
        cloud = UUID(cloud_id)
    except ValueError:
        return None
    for row in ledger.events_of(cloud_id):
        if str(ledger_event_id(cloud, row.originator_version)) == event_id:
            return row
    return None


def explain(ledger: EventStore, invoicer: EventStore, number: str) -> Explanation:
    row, state = find_invoice(invoicer, number)
    caused_by = state.get("caused_by") or {}
    cloud_id = str(state.get("cloud_id"))
    currency = str(state.get("currency"))
    try:
        digits = minor_units(currency)
    except ValueError:
        digits = -1
    result = Explanation(
        invoice_number=number,
        invoice_id=row.originator_id,
        kind=str(state.get("kind")),
        cloud_id=cloud_id,
        issue_date=str(state.get("issue_date")),
        issued_at=str(state.get("issued_at")),
        currency=currency,
        minor_units=digits,
        tax_rate=str(state.get("tax_rate")),
        customer=dict(state.get("customer") or {}),
        event=None,
        event_id=str(caused_by.get("event_id")),
        event_type=str(caused_by.get("event_type")),
        terms=None,
        issued_net=str(state.get("net")),
        issued_tax=str(state.get("tax")),
        issued_gross=str(state.get("gross")),
    )
    event_row = find_ledger_event(ledger, cloud_id, result.event_id)
    if event_row is None:
        result.differences.append(
            f"the ledger history of cloud {cloud_id} holds no event {result.event_id}: the "
            "invoice has no cause"
        )
        return result
    record = to_record(event_row)
    result.event = record
    terms = record.data.get("terms")
    result.terms = terms if isinstance(terms, dict) else None
    draft, refused = Deriver().derive(event_row)
    if draft is None:
        result.refused = refused or "the event causes no invoice"
        return result
    issued_lines = list(state.get("lines") or [])
    for index, line in enumerate(draft.lines, start=1):
        issued_line = issued_lines[index - 1] if index - 1 < len(issued_lines) else {}
        with localcontext() as ctx:
            ctx.prec = 60
            exact = Decimal(line.quantity) * line.unit_price * line.remaining_days
            exact /= line.period_days
        quoted = None
        if draft.quote_id is not None:
            quoted = (
                f"made with quote {draft.quote_id}, which pinned the charge date "
                f"{line.charge_date.isoformat()} and the net {line.amount}"
            )
            if draft.quote_deviation is not None:
                quoted += (
                    f"; the terms give {line.amount - draft.quote_deviation}, the quote wins "
                    f"(deviation {draft.quote_deviation})"
                )
        result.lines.append(
            LineExplanation(
                number=index,
                description=line.description,
                quantity=line.quantity,
                unit_price=str(line.unit_price),
                period_start=line.period_start.isoformat(),
                period_end=line.period_end.isoformat(),
                charge_date=line.charge_date.isoformat(),
                remaining_days=line.remaining_days,
                period_days=line.period_days,
                formula=(
                    f"{line.quantity} x {line.unit_price} x {line.remaining_days} / "
                    f"{line.period_days}"
                ),
                unrounded=_plain(exact),
                rounded=str(round_half_up(exact, draft.currency)),
                charged=str(line.amount),
                issued_amount=str(issued_line.get("amount")),
                quoted=quoted,
            )
        )
    with localcontext() as ctx:
        ctx.prec = 60
        tax_exact = draft.net * draft.tax_rate / Decimal(100)
    result.net = str(draft.net)
    result.tax_unrounded = _plain(tax_exact)
    result.tax = str(draft.tax)
    result.gross = str(draft.gross)
    result.differences.extend(compare(issued_view(state), draft_view(draft)))
    return result


def _plain(value: Decimal) -> str:
    """An exact decimal without exponent notation, trailing zeros removed."""
    return format(value.normalize(), "f")
