"""The invoicer's domain: aggregates and the pure invoice generator. No I/O."""

from services.invoicer.domain.generator import (
    BillingEvent,
    InvalidBillingEventError,
    InvoiceDraft,
    generate_invoice,
    rederive_invoices,
    renewal_invoice,
    seat_purchase_invoice,
)
from services.invoicer.domain.model import (
    CausingEvent,
    CloudInvoices,
    Customer,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoicerError,
    NumberSeries,
    SeriesExhaustedError,
    format_number,
    invoice_id_for,
    series_id_for,
    validate_prefix,
)

__all__ = [
    "BillingEvent",
    "CausingEvent",
    "CloudInvoices",
    "Customer",
    "InvalidBillingEventError",
    "Invoice",
    "InvoiceDraft",
    "InvoiceKind",
    "InvoiceLine",
    "InvoicerError",
    "NumberSeries",
    "SeriesExhaustedError",
    "format_number",
    "generate_invoice",
    "invoice_id_for",
    "rederive_invoices",
    "renewal_invoice",
    "seat_purchase_invoice",
    "series_id_for",
    "validate_prefix",
]
