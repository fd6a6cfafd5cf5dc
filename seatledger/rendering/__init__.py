"""The one invoice renderer: PDF (and the formatted texts behind it) from ``InvoiceIssued``.

The invoicer's HTTP API and the notifier's e-mails both use it, so a customer sees one
document whatever the channel.
"""

from seatledger.rendering.formatting import (
    InvoiceView,
    LineView,
    format_day,
    format_exact,
    format_money,
    invoice_view,
    labels,
)
from seatledger.rendering.pdf import render_invoice_pdf

__all__ = [
    "InvoiceView",
    "LineView",
    "format_day",
    "format_exact",
    "format_money",
    "invoice_view",
    "labels",
    "render_invoice_pdf",
]
