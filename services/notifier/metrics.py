"""The notifier's Prometheus metrics, built once against an injected registry.

They observe from outside: the sender calls :meth:`NotifierMetrics.attempt_finished` (its
observer hook), and the queue gauges read the delivery queue when scraped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notifier.sender import DeliveryQueue

OUTCOMES = ("sent", "retry", "failed")


class NotifierMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        queue: DeliveryQueue,
        clock: Callable[[], datetime],
    ) -> None:
        self.emails = Counter(
            "seatledger_notifier_emails_total",
            "Invoice e-mail attempts by outcome (sent; retry: a temporary failure; "
            "failed: a permanent failure, never retried)",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.emails.labels(outcome=outcome)
        self.smtp_seconds = Histogram(
            "seatledger_notifier_smtp_duration_seconds",
            "Time to hand one message to the SMTP server (connect to final reply)",
            ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.leases_lost = Counter(
            "seatledger_notifier_leases_lost_total",
            "Attempts whose sender gave its lease up (could not renew it in time, or found the "
            "attempt taken over) and cut the hand-over in progress",
            registry=registry,
        )
        self.oldest_unsent = Gauge(
            "seatledger_notifier_oldest_unsent_invoice_age_seconds",
            "Age of the oldest issued invoice whose e-mail is not sent yet (0 if none)",
            registry=registry,
        )
        self.oldest_unsent.set_function(lambda: self._oldest_age(queue, clock))
        self.pending = Gauge(
            "seatledger_notifier_pending_deliveries",
            "Invoice e-mails not sent yet (nor failed for good)",
            registry=registry,
        )
        self.pending.set_function(lambda: float(queue.size()))
        self.retry_queue = Gauge(
            "seatledger_notifier_retry_queue_size",
            "Invoice e-mails waiting for a retry after a temporary failure",
            registry=registry,
        )
        self.retry_queue.set_function(lambda: float(queue.retrying()))

    @staticmethod
    def _oldest_age(queue: DeliveryQueue, clock: Callable[[], datetime]) -> float:
        oldest = queue.oldest_issued_at()
        if oldest is None:
            return 0.0
        return max(0.0, (clock() - oldest).total_seconds())

    def attempt_finished(self, outcome: str, reason: str | None, seconds: float) -> None:
        self.emails.labels(outcome=outcome).inc()
        if seconds > 0:
            self.smtp_seconds.labels(outcome=outcome).observe(seconds)

    def lease_lost(self) -> None:
        self.leases_lost.inc()
