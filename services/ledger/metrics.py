"""Prometheus metrics of the ledger, observing the application through its hooks."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PrometheusLedgerObserver:
    """Implements :class:`services.ledger.application.LedgerObserver` and
    :class:`services.ledger.scheduler.RenewalObserver`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "seatledger_ledger_commands_total",
            "Ledger commands by type and outcome (success, rejected, conflict, error)",
            ["command", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "seatledger_ledger_command_duration_seconds",
            "Time from submitting a ledger command to its result",
            ["command"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.conflicts = Counter(
            "seatledger_ledger_concurrency_conflicts_total",
            "Saves refused because another writer changed a cloud first (then retried)",
            registry=registry,
        )
        self.events = Counter(
            "seatledger_ledger_events_appended_total",
            "Events appended to the ledger's store, by event type",
            ["event_type"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "seatledger_ledger_commands_per_save",
            "Commands whose events were saved in one transaction (group commit)",
            registry=registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
        )
        self.renewal_failures = Counter(
            "seatledger_ledger_renewal_failures_total",
            "Clouds whose renewal failed in a scheduler tick (the cloud is parked, the tick "
            "goes on), by stage (check: loading and reading its period, renew: the command)",
            ["stage"],
            registry=registry,
        )
        self.parked_clouds = Gauge(
            "seatledger_ledger_renewals_parked_clouds",
            "Clouds the renewal scheduler skips for now after a failed renewal",
            registry=registry,
        )

    def command_finished(self, command: str, outcome: str, seconds: float) -> None:
        self.commands.labels(command, outcome).inc()
        self.latency.labels(command).observe(seconds)

    def conflict(self) -> None:
        self.conflicts.inc()

    def events_appended(self, event_names: Sequence[str]) -> None:
        for name in event_names:
            self.events.labels(name).inc()

    def batch_saved(self, commands: int) -> None:
        self.batch_size.observe(commands)

    def renewal_failed(self, stage: str) -> None:
        self.renewal_failures.labels(stage).inc()

    def clouds_parked(self, count: int) -> None:
        self.parked_clouds.set(count)
