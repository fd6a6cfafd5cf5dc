"""The lease of an attempt in progress (a real SQLite store, the outbox transport): renewed
while the sender works, lost when another sender took the attempt over or when no renewal
succeeded in time, and a lost lease hands nothing over."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

import pytest

from schemas.envelope import CloudEvent
from schemas.invoices import InvoiceIssued
from seatledger.config import load_settings
from seatledger.metrics import new_registry
from seatledger.tracking import Position
from services.notifier.bootstrap import Notifier, build_notifier
from services.notifier.domain import AttemptOver, Delivery, delivery_event_name, delivery_id_for
from services.notifier.sender import DEFAULT_LEASE, LeaseKeeper, Outcome
from services.notifier.transport import LeaseLost
from tests.samples import make_invoice
from tests.unit.notifier.invoices import ManualClock

LEASE = timedelta(seconds=10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def notifier(tmp_path, clock):
    settings = load_settings(
        data_dir=tmp_path,
        database_url=None,
        smtp_host=None,
        kafka_bootstrap_servers=None,
        mail_from="billing@seatledger.example",
    )
    built = build_notifier(
        settings, new_registry("notifier"), clock=clock, rng=random.Random(5), workers=1
    )
    yield built
    built.close()


def claimed(notifier: Notifier, clock: ManualClock) -> Delivery:
    invoice = make_invoice()
    cloud_event = CloudEvent.of(
        invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
    )
    notifier.handle(cloud_event, invoice, Position.kafka("seatledger.invoices.v1", 0, 0))
    delivery = notifier.app.claim(delivery_id_for(invoice.invoice_id), clock(), LEASE)
    assert delivery is not None
    return delivery


def recorded_events(notifier: Notifier) -> list[str | None]:
    return [
        delivery_event_name(notifier.app.mapper.to_domain_event(n))
        for n in notifier.app.recorder.select_notifications(None, 100)
    ]


def test_the_default_lease_lets_a_dead_sender_s_attempt_resume_within_ten_seconds(notifier):
    assert timedelta(seconds=10) == DEFAULT_LEASE
    assert notifier.sender.lease == DEFAULT_LEASE


def test_a_renewed_lease_keeps_the_attempt_from_every_other_sender_past_its_first_end(
    notifier, clock
):
    delivery = claimed(notifier, clock)
    keeper = LeaseKeeper(notifier.app, delivery, LEASE, clock)

    clock.advance(seconds=4)
    keeper.tick()
    clock.advance(seconds=8)  # 12 s after the claim: the first lease has ended

    notifier.queue.catch_up()
    assert notifier.queue.due(clock(), 10) == []
    assert notifier.sender.run_once()[Outcome.SENT] == 0
    assert notifier.app.find(delivery.id).attempts == 1
    assert keeper.renewals == 1
    assert recorded_events(notifier)[-1] == "LeaseRenewed"

    clock.advance(seconds=3)  # 15 s: the renewed lease (until 14 s) has ended too
    assert notifier.sender.run_once()[Outcome.SENT] == 1
    assert notifier.app.find(delivery.id).attempts == 2


def test_a_renewal_after_another_sender_took_the_attempt_over_loses_the_lease_and_aborts(
    notifier, clock
):
    delivery = claimed(notifier, clock)
    keeper = LeaseKeeper(notifier.app, delivery, LEASE, clock, notifier.sender.observer.lease_lost)
    aborted = []
    keeper.on_lost(lambda: aborted.append("cut"))

    clock.advance(seconds=11)  # the lease ended (a stalled sender): another takes over
    assert notifier.app.claim(delivery.id, clock(), LEASE) is not None
    keeper.tick()

    assert keeper.lost
    assert aborted == ["cut"]
    assert notifier.registry.get_sample_value("seatledger_notifier_leases_lost_total") == 1
    with pytest.raises(LeaseLost):
        keeper.check()
    assert keeper.finish() is None  # the outcome belongs to the sender that took over


def test_without_a_renewal_the_sender_stops_handing_over_well_before_the_lease_ends(
    notifier, clock
):
    delivery = claimed(notifier, clock)
    keeper = LeaseKeeper(notifier.app, delivery, LEASE, clock)

    clock.advance(seconds=5.9)
    keeper.check()  # still safely held
    clock.advance(seconds=0.1)  # 4 s before the lease ends: another sender's clock may be ahead
    with pytest.raises(LeaseLost):
        keeper.check()


def test_a_lost_lease_hands_nothing_to_the_outbox_and_the_attempt_stays_recordable(notifier, clock):
    delivery = claimed(notifier, clock)
    keeper = LeaseKeeper(notifier.app, delivery, LEASE, clock)
    message = notifier.sender.builder.build(InvoiceIssued.model_validate(delivery.invoice), clock())
    clock.advance(seconds=7)  # no renewal for 7 s (the store did not answer)
    keeper.start()  # its watchdog gives the lease up at once
    deadline = time.monotonic() + 5
    while not keeper.lost:
        assert time.monotonic() < deadline, "the watchdog kept a lease it could not renew"
        time.sleep(0.01)

    with pytest.raises(LeaseLost):
        notifier.sender.transport.send(message, keeper)

    assert list((notifier.settings.data_dir / "outbox").glob("*")) == []
    # Nobody took the attempt over: its outcome is still this sender's to record.
    current = keeper.finish()
    assert current is not None
    assert current.in_attempt(delivery.attempts)


def test_an_attempt_whose_outcome_is_recorded_cannot_have_its_lease_renewed(notifier, clock):
    delivery = claimed(notifier, clock)
    retry_at = clock() + timedelta(seconds=30)
    assert notifier.app.record_retry(delivery, clock(), "smtp_4xx", "451 later", retry_at)

    with pytest.raises(AttemptOver):
        delivery.renew_lease(delivery.attempts, clock(), LEASE)
    current = notifier.app.find(delivery.id)
    assert current.due_at() == retry_at  # a late renewal moved nothing
