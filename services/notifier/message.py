"""The invoice e-mail, built from ``InvoiceIssued`` alone.

Headers are built by the standard library (``email.policy.default``). Every value that comes
from an event and reaches a header (the recipient, the customer's name, the invoice number)
is checked first: a CR or LF (or any other control character) is refused with
:class:`HeaderInjection`, so it can never split a header or add one. The ``Message-ID`` is
derived from the invoice id: a re-sent message carries the same one, so a receiving system can
drop the duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from schemas.invoices import InvoiceIssued
from seatledger.rendering import format_day, invoice_view, labels

#: Renders the invoice PDF (``seatledger.rendering.render_invoice_pdf``).
PdfRenderer = Callable[[InvoiceIssued], bytes]

SUBJECTS = {
    "de": "Ihre Rechnung {number}",
    "en": "Your invoice {number}",
}


class InvalidMessageInput(ValueError):
    """A value from the event cannot be put into the message; ``reason`` is a stable code."""

    reason = "invalid_input"


class HeaderInjection(InvalidMessageInput):
    """A value meant for a header contains CR, LF or another control character."""

    reason = "header_injection"


class InvalidAddress(InvalidMessageInput):
    """The billing e-mail is not a usable address."""

    reason = "invalid_address"


def check_header_value(field: str, value: str) -> str:
    """Return ``value`` if it can go into a header; refuse CR, LF and other controls."""
    for char in value:
        if char in "\r\n" or (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            raise HeaderInjection(f"{field} contains a control character (CR/LF refused)")
    return value


def recipient_of(invoice: InvoiceIssued) -> Address:
    """The contract's billing address, with the customer's name as display name."""
    email = check_header_value("customer.billing_email", invoice.customer.billing_email).strip()
    name = check_header_value("customer.name", invoice.customer.name).strip()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or "." not in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or any(c.isspace() or c in '<>(),;:"[]\\' for c in email)
    ):
        raise InvalidAddress("customer.billing_email is not an e-mail address")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError) as exc:  # the headerregistry's own refusals
        raise InvalidAddress("customer.billing_email is not an e-mail address") from exc


def message_id_for(invoice_id: UUID, domain: str) -> str:
    """The deterministic ``Message-ID`` of an invoice's e-mail."""
    return f"<invoice-{invoice_id}@{domain}>"


def sender_domain(mail_from: str) -> str:
    domain = mail_from.rpartition("@")[2].strip().strip(">")
    return domain or "seatledger.invalid"


def subject_of(invoice: InvoiceIssued) -> str:
    number = check_header_value("invoice_number", invoice.invoice_number)
    return SUBJECTS[invoice.customer.locale].format(number=number)


def validate(invoice: InvoiceIssued) -> None:
    """Refuse an invoice whose header values cannot be used (raises InvalidMessageInput)."""
    recipient_of(invoice)
    subject_of(invoice)


@dataclass(frozen=True)
class RenderedBodies:
    text: str
    html: str


class Templates:
    """The Jinja2 templates of the invoice e-mail (``templates/invoice.<locale>.{txt,html}``)."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("services.notifier", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, invoice: InvoiceIssued) -> RenderedBodies:
        view = _view(invoice)
        locale = invoice.customer.locale
        text = self._env.get_template(f"invoice.{locale}.txt").render(view)
        html = self._env.get_template(f"invoice.{locale}.html").render(view)
        return RenderedBodies(text=text, html=html)


@dataclass(frozen=True)
class MessageBuilder:
    """Builds the complete message (bodies, PDF attachment, headers) of an invoice."""

    mail_from: str
    render_pdf: PdfRenderer
    templates: Templates

    @cached_property
    def from_address(self) -> Address:
        check_header_value("mail_from", self.mail_from)
        local, _, domain = self.mail_from.rpartition("@")
        return Address(display_name="seatledger", username=local, domain=domain)

    def message_id(self, invoice_id: UUID) -> str:
        return message_id_for(invoice_id, sender_domain(self.mail_from))

    def build(self, invoice: InvoiceIssued, now: datetime) -> EmailMessage:
        recipient = recipient_of(invoice)
        subject = subject_of(invoice)
        bodies = self.templates.render(invoice)
        pdf = self.render_pdf(invoice)
        message = EmailMessage(policy=default_policy)
        message["From"] = self.from_address
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = self.message_id(invoice.invoice_id)
        message["Content-Language"] = invoice.customer.locale
        message.set_content(bodies.text, subtype="plain", charset="utf-8")
        message.add_alternative(bodies.html, subtype="html", charset="utf-8")
        message.add_attachment(
            pdf,
            maintype="application",
            subtype="pdf",
            filename=f"{invoice.invoice_number}.pdf",
        )
        return message


# -- the templates' view of an invoice ---------------------------------------------------------


def _view(invoice: InvoiceIssued) -> dict[str, Any]:
    """What the templates show, formatted by the one invoice renderer's formatting rules (the
    e-mail and the attached PDF show the same figures in the same words)."""
    locale = invoice.customer.locale
    document = invoice_view(invoice)
    words = labels(locale)
    lines = []
    for line, shown in zip(invoice.lines, document.lines, strict=True):
        lines.append(
            {
                "kind": words[line.kind],
                "description": line.description,
                "quantity": shown.quantity,
                "unit_price": shown.unit_price,
                "period_start": format_day(line.period.start, locale),
                # Periods are [start, end): the last day billed is the day before ``end``.
                "period_last_day": format_day(line.period.end - timedelta(days=1), locale),
                "charge_date": format_day(line.charge_date, locale),
                "remaining_days": line.remaining_days,
                "period_days": line.period_days,
                "prorated": line.remaining_days != line.period_days,
                "amount": shown.amount,
            }
        )
    return {
        "customer_name": invoice.customer.name,
        "invoice_number": invoice.invoice_number,
        "issue_date": document.issue_date,
        "kind": words[invoice.kind],
        "lines": lines,
        "tax_label": document.tax_label,
        "net": document.net,
        "tax": document.tax,
        "gross": document.gross,
        "attachment": f"{invoice.invoice_number}.pdf",
    }
