"""Pure parts of the relay and consumer: backoff, per-registry metrics, batch bookkeeping."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from seatledger.consumer import ConsumerMetrics, RetryPolicy
from seatledger.relay import RelayMetrics, _Batch


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_s=0.1, max_s=1.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(0) == 0.1


def test_metrics_are_built_once_per_registry_and_shared_by_every_consumer() -> None:
    registry = CollectorRegistry()
    assert ConsumerMetrics.of(registry) is ConsumerMetrics.of(registry)
    assert RelayMetrics.of(registry) is RelayMetrics.of(registry)
    other = CollectorRegistry()
    assert ConsumerMetrics.of(other) is not ConsumerMetrics.of(registry)
    metrics = ConsumerMetrics.of(registry)
    metrics.dead_lettered.labels("invoicer", "not_json").inc()
    assert (
        registry.get_sample_value(
            "seatledger_consumer_dead_lettered_total",
            {"consumer": "invoicer", "reason": "not_json"},
        )
        == 1
    )


def test_metric_names_follow_the_house_conventions() -> None:
    registry = CollectorRegistry()
    ConsumerMetrics.of(registry)
    RelayMetrics.of(registry)
    for family in registry.collect():
        assert family.name.startswith("seatledger_")
    relay = RelayMetrics.of(registry)
    relay.published.labels("seatledger.ledger.v1").inc()
    ConsumerMetrics.of(registry).position.labels("invoicer", "seatledger.ledger.v1:3").set(7)
    labels = {label for family in registry.collect() for s in family.samples for label in s.labels}
    assert labels <= {"relay", "consumer", "source", "outcome", "reason", "le"}


def test_a_batch_is_done_when_every_message_is_acknowledged_or_failed() -> None:
    batch = _Batch(last_id=10, expected=3)
    assert not batch.done
    batch.on_delivery(None, None)  # type: ignore[arg-type]
    batch.on_delivery(None, None)  # type: ignore[arg-type]
    assert not batch.done
    batch.on_delivery("Local: Message timed out", None)  # type: ignore[arg-type]
    assert batch.done
    assert batch.acked == 2
    assert batch.errors == ["Local: Message timed out"]
    assert _Batch(last_id=11).done  # nothing published (only internal events)
