"""The alert rules in deploy/prometheus name only metrics the product exposes, with the labels
it gives them: an alert on a misspelt metric would never fire."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from seatledger.config import load_settings
from seatledger.embedded import build_embedded
from seatledger.metrics import new_registry
from seatledger.relay import RelayMetrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
_METRIC = re.compile(r"\bseatledger_[a-z_]+\b")
_BY = re.compile(r"\bby \(([^)]*)\)")


def _exposed(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Every metric name the registry exposes (counters with ``_total``) and its labels."""
    names: dict[str, set[str]] = {}
    # A labelled metric without children yet exposes no sample: its label names are read
    # from the registered collector itself.
    collectors = list(registry._collector_to_names)
    for collector in collectors:
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.collect():
            base = family.name + ("_total" if family.type == "counter" else "")
            names[base] = labels | {key for sample in family.samples for key in sample.labels}
    return names


def _product_metrics(tmp_path: Path) -> dict[str, set[str]]:
    settings = load_settings(data_dir=tmp_path / "data", kafka_bootstrap_servers=None)
    registry = new_registry("seatledger")
    product = build_embedded(settings, registry)
    try:
        RelayMetrics.of(registry)  # the relays of the separate processes
        return _exposed(registry)
    finally:
        product.stop()


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_names_metrics_and_labels_the_product_exposes(tmp_path: Path) -> None:
    exposed = _product_metrics(tmp_path)
    rules = _rules()
    assert len(rules) >= 5
    for rule in rules:
        expr = rule["expr"]
        metrics = _METRIC.findall(expr)
        assert metrics, rule["alert"]
        for metric in metrics:
            assert metric in exposed, f"{rule['alert']}: {metric} is not exposed"
            for group in _BY.findall(expr):
                for label in (name.strip() for name in group.split(",")):
                    if label != "job":  # added by the scrape, not by the product
                        assert label in exposed[metric], f"{rule['alert']}: {metric} {label}"
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]


def test_the_poison_alerts_cover_dead_letters_stuck_consumers_and_renewals() -> None:
    watched = {metric for rule in _rules() for metric in _METRIC.findall(rule["expr"])}
    assert {
        "seatledger_consumer_stuck",
        "seatledger_consumer_dead_lettered_total",
        "seatledger_relay_dead_lettered_total",
        "seatledger_ledger_renewal_failures_total",
    } <= watched
