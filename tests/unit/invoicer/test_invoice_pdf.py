"""The one invoice renderer: a PDF from the InvoiceIssued data alone, worded per locale."""

from __future__ import annotations

import io
from decimal import Decimal
from uuid import UUID

import pytest
from pypdf import PdfReader

from schemas.invoices import CausingEvent, InvoiceIssued
from seatledger.rendering import format_money, render_invoice_pdf
from tests.samples import make_invoice


def _invoice(
    locale: str = "de", currency: str = "EUR", name: str = "Müller & Söhne GmbH"
) -> InvoiceIssued:
    """The shared sample purchase, with fixed ids (the renderer's output is compared byte for
    byte)."""
    return make_invoice(
        locale=locale,
        name=name,
        invoice_id=UUID("00000000-0000-4000-8000-000000000001"),
        cloud_id=UUID("00000000-0000-4000-8000-0000000000c1"),
        currency=currency,
        caused_by=CausingEvent(
            event_id=UUID("00000000-0000-4000-8000-0000000000e1"),
            event_type="seatledger.ledger.SeatsIncreased.v1",
        ),
    )


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_german_invoice_pdf_is_worded_and_formatted_in_german():
    pdf = render_invoice_pdf(_invoice("de"))
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    assert "Rechnung SL-2026-000042" in text
    assert "Müller & Söhne GmbH" in text
    assert "1.234,50" in text  # unit price, German grouping and decimal comma
    assert "440,72" in text
    assert "USt. (19 %)" in text
    assert "3 / 30" in text  # R / D
    assert "28.11.2026" in text


def test_english_invoice_pdf_is_worded_and_formatted_in_english():
    text = _text(render_invoice_pdf(_invoice("en")))
    assert "Invoice SL-2026-000042" in text
    assert "€1,234.50" in text
    assert "€440.72" in text
    assert "Tax (19 %)" in text
    assert "Rechnung" not in text


def test_same_invoice_renders_to_the_same_bytes():
    assert render_invoice_pdf(_invoice()) == render_invoice_pdf(_invoice())


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (Decimal("1234.50"), "EUR", "de", "1.234,50\u00a0€"),
        (Decimal("1234.50"), "EUR", "en", "€1,234.50"),
        (Decimal("1500"), "JPY", "de", "1.500\u00a0¥"),
        (Decimal("1.250"), "KWD", "en", "KWD1.250"),
        (Decimal("0.00"), "EUR", "de", "0,00\u00a0€"),
        (Decimal("12.3456"), "EUR", "en", "€12.3456"),
    ],
)
def test_money_is_formatted_per_locale_without_rounding_again(amount, currency, locale, expected):
    assert format_money(amount, currency, locale) == expected


def test_an_unsupported_locale_is_refused():
    with pytest.raises(ValueError, match="unsupported locale"):
        format_money(Decimal(1), "EUR", "fr")


def test_an_unrounded_amount_is_shown_exactly_or_cut_with_an_ellipsis_never_rounded():
    from seatledger.rendering import format_exact

    assert format_exact(Decimal("5.005"), "de", max_decimals=8) == "5,005"
    third = Decimal(4) / Decimal(3)
    assert format_exact(third, "en", max_decimals=8) == "1.33333333…"
    assert format_exact(Decimal("0.6666666666666"), "de", max_decimals=8) == "0,66666666…"


def test_the_pdf_line_shows_quantity_unit_price_period_r_and_d_and_both_amounts():
    invoice = _invoice("en")
    line = invoice.lines[0].model_copy(
        update={
            "unrounded_amount": Decimal(370) + Decimal(1) / Decimal(3),
            "amount": Decimal("370.33"),
        }
    )
    text = " ".join(_text(render_invoice_pdf(invoice.model_copy(update={"lines": [line]}))).split())
    assert "370.33333333…" in text  # unrounded, cut not rounded
    assert "€370.33" in text  # rounded
    assert "€1,234.50" in text  # unit price
    assert "3 / 30" in text  # R / D
    assert "1 Nov 2026 – 30 Nov 2026" in text  # the period, its last day inclusive
    assert "charged from 28 Nov 2026" in text
