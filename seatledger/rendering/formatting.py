"""Locale-aware wording and number formatting of an invoice (German and English).

Everything a renderer shows is derived from the ``InvoiceIssued`` contract alone, so the PDF
the invoicer serves and the one the notifier attaches are the same document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from schemas.invoices import InvoiceIssued, InvoiceLine
from seatledger.billing import minor_units

#: Digits of an unrounded amount shown beyond the currency's minor units.
UNROUNDED_EXTRA_DIGITS = 6

#: The contract's locales and the Babel locale used to format numbers and dates in each.
BABEL_LOCALES: dict[str, str] = {"de": "de_DE", "en": "en_GB"}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Invoice",
        "invoice_number": "Invoice number",
        "issue_date": "Issue date",
        "customer": "Customer",
        "cloud": "Cloud",
        "caused_by": "Reference",
        "description": "Description",
        "quantity": "Seats",
        "unit_price": "Unit price",
        "period": "Period",
        "days": "R / D",
        "unrounded": "Exact amount",
        "amount": "Amount",
        "net": "Net",
        "tax": "Tax ({rate} %)",
        "gross": "Total",
        "formula": (
            "Amount = seats × unit price × R / D, rounded once, half up, to the currency's "
            "minor units. R: days charged (the charge date counted), D: days of the period."
        ),
        "seat_purchase": "Additional seats",
        "renewal": "Renewal",
        "period_range": "{start} – {end}",
        "charged_from": "charged from {date}",
    },
    "de": {
        "title": "Rechnung",
        "invoice_number": "Rechnungsnummer",
        "issue_date": "Rechnungsdatum",
        "customer": "Kunde",
        "cloud": "Cloud",
        "caused_by": "Referenz",
        "description": "Beschreibung",
        "quantity": "Plätze",
        "unit_price": "Einzelpreis",
        "period": "Zeitraum",
        "days": "R / D",
        "unrounded": "Exakter Betrag",
        "amount": "Betrag",
        "net": "Netto",
        "tax": "USt. ({rate} %)",
        "gross": "Gesamt",
        "formula": (
            "Betrag = Plätze × Einzelpreis × R / D, einmal kaufmännisch auf die kleinste "
            "Währungseinheit gerundet. R: berechnete Tage (Stichtag mitgezählt), "
            "D: Tage des Zeitraums."
        ),
        "seat_purchase": "Zusätzliche Plätze",
        "renewal": "Verlängerung",
        "period_range": "{start} – {end}",
        "charged_from": "berechnet ab {date}",
    },
}


def babel_locale(locale: str) -> str:
    try:
        return BABEL_LOCALES[locale]
    except KeyError:
        raise ValueError(
            f"unsupported locale {locale!r}: use one of {sorted(BABEL_LOCALES)}"
        ) from None


def labels(locale: str) -> dict[str, str]:
    babel_locale(locale)
    return LABELS[locale]


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """A rounded amount with its currency, e.g. ``1.234,50 €`` (de) or ``€1,234.50`` (en).

    At least the currency's minor digits are shown and no digit is ever dropped: formatting
    never rounds (invoice amounts are already rounded once; a unit price may have more
    digits)."""
    return format_currency(
        amount,
        currency,
        locale=babel_locale(locale),
        currency_digits=True,
        decimal_quantization=False,
    ).replace("\u202f", "\u00a0")


def format_exact(amount: Decimal, locale: str, max_decimals: int | None = None) -> str:
    """An unrounded amount with every digit it has, e.g. ``12,3456789`` (de).

    With ``max_decimals``, a longer fraction (a repeating one such as 1/3 carries 60 digits)
    is cut, never rounded, and marked with an ellipsis: ``1,33333333…``."""
    shown = amount
    cut = False
    if max_decimals is not None and -amount.as_tuple().exponent > max_decimals:  # type: ignore[operator]
        shown = amount.quantize(Decimal(1).scaleb(-max_decimals), rounding=ROUND_DOWN)
        cut = shown != amount
    text = format_decimal(shown, locale=babel_locale(locale), decimal_quantization=False)
    return text + "…" if cut else text


def format_percent(rate: Decimal, locale: str) -> str:
    return format_decimal(rate, locale=babel_locale(locale), decimal_quantization=False)


def format_day(day: date, locale: str) -> str:
    """A calendar date, e.g. ``28.11.2026`` (de) or ``28 Nov 2026`` (en)."""
    return format_date(day, format="medium", locale=babel_locale(locale))


@dataclass(frozen=True)
class LineView:
    description: str
    quantity: str
    unit_price: str
    period: str
    days: str
    unrounded: str
    amount: str


@dataclass(frozen=True)
class InvoiceView:
    """Every text of an invoice document, formatted for its locale."""

    locale: str
    title: str
    invoice_number: str
    issue_date: str
    customer_name: str
    cloud_id: str
    reference: str
    lines: tuple[LineView, ...]
    net: str
    tax_label: str
    tax: str
    gross: str
    formula: str
    labels: dict[str, str]


def _line_view(line: InvoiceLine, currency: str, locale: str) -> LineView:
    words = labels(locale)
    # The period is shown inclusive of its last day: [start, end) ends the day before ``end``.
    last_day = date.fromordinal(line.period.end.toordinal() - 1)
    period = words["period_range"].format(
        start=format_day(line.period.start, locale), end=format_day(last_day, locale)
    )
    if line.charge_date != line.period.start:
        period += ", " + words["charged_from"].format(date=format_day(line.charge_date, locale))
    return LineView(
        description=line.description,
        quantity=format_decimal(line.quantity, locale=babel_locale(locale)),
        unit_price=format_money(line.unit_price, currency, locale),
        period=period,
        days=f"{line.remaining_days} / {line.period_days}",
        unrounded=format_exact(
            line.unrounded_amount,
            locale,
            max_decimals=minor_units(currency) + UNROUNDED_EXTRA_DIGITS,
        ),
        amount=format_money(line.amount, currency, locale),
    )


def invoice_view(invoice: InvoiceIssued) -> InvoiceView:
    """The formatted texts of ``invoice`` in its customer's locale."""
    locale = invoice.customer.locale
    words = labels(locale)
    return InvoiceView(
        locale=locale,
        title=words["title"],
        invoice_number=invoice.invoice_number,
        issue_date=format_day(invoice.issue_date, locale),
        customer_name=invoice.customer.name,
        cloud_id=str(invoice.cloud_id),
        reference=str(invoice.caused_by.event_id),
        lines=tuple(_line_view(line, invoice.currency, locale) for line in invoice.lines),
        net=format_money(invoice.net, invoice.currency, locale),
        tax_label=words["tax"].format(rate=format_percent(invoice.tax_rate, locale)),
        tax=format_money(invoice.tax, invoice.currency, locale),
        gross=format_money(invoice.gross, invoice.currency, locale),
        formula=words["formula"],
        labels=words,
    )
