"""The invoicer's Prometheus metrics, built once against an injected registry.

The domain never imports ``prometheus_client``: the handler reports what happened through
:class:`InvoicerMetrics` (or nothing, when none is given).
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Event time -> invoice issued: usually well under a second, minutes when catching up.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class InvoicerMetrics:
    """Invoices issued (by currency and kind), amounts invoiced, latency and consumer lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.invoices_issued = Counter(
            "seatledger_invoicer_invoices_issued_total",
            "Invoices issued, by currency and kind",
            ["currency", "kind"],
            registry=registry,
        )
        self.net_invoiced = Counter(
            "seatledger_invoicer_invoiced_net_amount_total",
            "Net amounts invoiced, in the currency's major unit, by currency and kind",
            ["currency", "kind"],
            registry=registry,
        )
        self.gross_invoiced = Counter(
            "seatledger_invoicer_invoiced_gross_amount_total",
            "Gross amounts invoiced, in the currency's major unit, by currency and kind",
            ["currency", "kind"],
            registry=registry,
        )
        self.latency = Histogram(
            "seatledger_invoicer_processing_latency_seconds",
            "From the ledger event's time to the invoice's issue",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.outcomes = Counter(
            "seatledger_invoicer_ledger_events_total",
            "Ledger events handled, by outcome (issued, already_invoiced, duplicate, ignored, "
            "rejected)",
            ["outcome"],
            registry=registry,
        )
        self.quote_deviations = Counter(
            "seatledger_invoicer_quote_deviations_total",
            "Purchases whose quoted net differed from the net recomputed from the terms "
            "(the quote was honoured)",
            registry=registry,
        )
        self.number_conflicts = Counter(
            "seatledger_invoicer_number_conflicts_total",
            "Retries after another instance took the same invoice number first",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "seatledger_invoicer_consumer_lag_messages",
            "Ledger messages (Kafka) or notifications (embedded) not yet processed, per source "
            "(topic:partition or the upstream application)",
            ["source"],
            registry=registry,
        )

    def invoice_issued(
        self, currency: str, kind: str, net: Decimal, gross: Decimal, latency_s: float
    ) -> None:
        self.invoices_issued.labels(currency, kind).inc()
        # Prometheus samples are floats; the invoice itself keeps the exact Decimal.
        self.net_invoiced.labels(currency, kind).inc(float(net))
        self.gross_invoiced.labels(currency, kind).inc(float(gross))
        self.latency.labels(kind).observe(max(latency_s, 0.0))

    def outcome(self, outcome: str) -> None:
        self.outcomes.labels(outcome).inc()

    def lag(self, source: str, messages: int) -> None:
        self.consumer_lag.labels(source).set(max(messages, 0))
