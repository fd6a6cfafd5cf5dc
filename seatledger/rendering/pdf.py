"""The invoice as a PDF (reportlab), rendered from the ``InvoiceIssued`` data alone.

The invoicer serves it over HTTP and the notifier attaches it to the invoice e-mail: both call
:func:`render_invoice_pdf`, so the two are the same document. The output is reproducible: the
same invoice gives the same bytes.
"""

from __future__ import annotations

import io
import threading
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from schemas.invoices import InvoiceIssued
from seatledger.rendering.formatting import InvoiceView, invoice_view

# Bitstream Vera ships with reportlab and covers Latin scripts, the euro and the yen sign.
_FONT = "SeatledgerVera"
_FONT_BOLD = "SeatledgerVeraBold"
_fonts_lock = threading.Lock()
_fonts_registered = False


def _register_fonts() -> None:
    global _fonts_registered
    with _fonts_lock:
        if _fonts_registered:
            return
        pdfmetrics.registerFont(TTFont(_FONT, "Vera.ttf"))
        pdfmetrics.registerFont(TTFont(_FONT_BOLD, "VeraBd.ttf"))
        _fonts_registered = True


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=_FONT, fontSize=9, leading=11.5)
    return {
        "base": base,
        "title": ParagraphStyle("title", parent=base, fontName=_FONT_BOLD, fontSize=18, leading=22),
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8, leading=10),
        "cell_right": ParagraphStyle(
            "cell_right", parent=base, fontSize=8, leading=10, alignment=TA_RIGHT
        ),
        "head": ParagraphStyle("head", parent=base, fontName=_FONT_BOLD, fontSize=8, leading=10),
        "head_right": ParagraphStyle(
            "head_right",
            parent=base,
            fontName=_FONT_BOLD,
            fontSize=8,
            leading=10,
            alignment=TA_RIGHT,
        ),
        "total": ParagraphStyle("total", parent=base, fontName=_FONT_BOLD, alignment=TA_RIGHT),
        "right": ParagraphStyle("right", parent=base, alignment=TA_RIGHT),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def _story(view: InvoiceView) -> list[object]:
    st = _styles()
    words = view.labels
    header = Table(
        [
            [_p(words["invoice_number"], st["head"]), _p(view.invoice_number, st["base"])],
            [_p(words["issue_date"], st["head"]), _p(view.issue_date, st["base"])],
            [_p(words["customer"], st["head"]), _p(view.customer_name, st["base"])],
            [_p(words["cloud"], st["head"]), _p(view.cloud_id, st["base"])],
            [_p(words["caused_by"], st["head"]), _p(view.reference, st["base"])],
        ],
        colWidths=[40 * mm, 130 * mm],
        hAlign="LEFT",
    )
    header.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))

    columns = ("description", "quantity", "unit_price", "period", "days", "unrounded", "amount")
    right = {"quantity", "unit_price", "days", "unrounded", "amount"}
    rows: list[list[object]] = [
        [_p(words[c], st["head_right" if c in right else "head"]) for c in columns]
    ]
    for line in view.lines:
        values = {
            "description": line.description,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "period": line.period,
            "days": line.days,
            "unrounded": line.unrounded,
            "amount": line.amount,
        }
        rows.append([_p(values[c], st["cell_right" if c in right else "cell"]) for c in columns])
    lines = Table(
        rows,
        colWidths=[30 * mm, 15 * mm, 22 * mm, 35 * mm, 13 * mm, 31 * mm, 24 * mm],
        repeatRows=1,
        hAlign="LEFT",
    )
    lines.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.grey),
            ]
        )
    )

    totals = Table(
        [
            [_p(words["net"], st["right"]), _p(view.net, st["right"])],
            [_p(view.tax_label, st["right"]), _p(view.tax, st["right"])],
            [_p(words["gross"], st["total"]), _p(view.gross, st["total"])],
        ],
        colWidths=[40 * mm, 30 * mm],
        hAlign="RIGHT",
    )
    totals.setStyle(TableStyle([("LINEABOVE", (0, 2), (-1, 2), 0.6, colors.black)]))

    return [
        _p(f"{view.title} {view.invoice_number}", st["title"]),
        Spacer(1, 6 * mm),
        header,
        Spacer(1, 8 * mm),
        lines,
        Spacer(1, 5 * mm),
        totals,
        Spacer(1, 8 * mm),
        _p(view.formula, st["small"]),
    ]


def render_invoice_pdf(invoice: InvoiceIssued) -> bytes:
    """The PDF of ``invoice``, worded and formatted in the customer's locale (de or en)."""
    _register_fonts()
    view = invoice_view(invoice)
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=f"{view.title} {view.invoice_number}",
        author="seatledger",
        subject=view.customer_name,
        lang=view.locale,
        invariant=1,
    )
    document.build(_story(view))
    return buffer.getvalue()
