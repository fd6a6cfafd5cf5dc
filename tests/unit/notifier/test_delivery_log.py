"""The delivery log on a real (SQLite) store, sending to the outbox folder: acceptance with
the consumer position, redelivery, refusal, the lease and the crash window, the contract."""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from schemas.envelope import CloudEvent
from schemas.notifications import EmailFailed, EmailSent
from schemas.registry import check_cloud_event
from seatledger.config import load_settings
from seatledger.metrics import new_registry
from seatledger.tracking import Position
from services.notifier.application import Accepted
from services.notifier.bootstrap import Notifier, build_notifier
from services.notifier.contract import to_cloud_event
from services.notifier.domain import RetryPolicy, delivery_id_for
from services.notifier.sender import Outcome
from tests.samples import make_invoice
from tests.unit.notifier.invoices import ManualClock

TOPIC = "seatledger.invoices.v1"


def envelope(invoice) -> CloudEvent:
    return CloudEvent.of(
        invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
    )


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
        settings,
        new_registry("notifier"),
        clock=clock,
        retry_policy=RetryPolicy(base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=4)),
        lease=timedelta(seconds=30),
        rng=random.Random(3),
        workers=1,
    )
    yield built
    built.close()


def outbox(notifier: Notifier):
    return sorted((notifier.settings.data_dir / "outbox").glob("*.eml"))


def deliver(notifier: Notifier, invoice, offset: int, partition: int = 0) -> None:
    notifier.handle(envelope(invoice), invoice, Position.kafka(TOPIC, partition, offset))


def test_an_accepted_invoice_is_pending_with_its_position_then_sent_to_the_outbox(notifier):
    invoice = make_invoice(email="ap@example.com")

    deliver(notifier, invoice, offset=7)

    assert notifier.app.position(f"{TOPIC}:0") == 7
    assert notifier.app.delivery_of(invoice.invoice_id).state == "pending"
    assert notifier.sender.run_once()[Outcome.SENT] == 1
    delivery = notifier.app.delivery_of(invoice.invoice_id)
    assert delivery.state == "sent"
    files = outbox(notifier)
    assert len(files) == 1
    message = message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert message["To"].addresses[0].addr_spec == "ap@example.com"
    assert message["Message-ID"] == delivery.message_id


def test_the_same_message_redelivered_at_its_position_records_nothing(notifier):
    invoice = make_invoice()
    deliver(notifier, invoice, offset=3)
    version = notifier.app.delivery_of(invoice.invoice_id).version

    outcome = notifier.app.accept(invoice, Position.kafka(TOPIC, 0, 3), notifier.clock())

    assert outcome is Accepted.REDELIVERED
    assert notifier.app.delivery_of(invoice.invoice_id).version == version


def test_the_same_invoice_published_twice_sends_one_message(notifier):
    invoice = make_invoice()
    deliver(notifier, invoice, offset=1)
    notifier.sender.run_once()

    deliver(notifier, invoice, offset=2)  # the relay re-published it after a crash
    notifier.sender.run_once()

    assert notifier.accepted[Accepted.KNOWN] == 1
    assert notifier.app.position(f"{TOPIC}:0") == 2
    assert notifier.app.delivery_of(invoice.invoice_id).attempts == 1
    assert len(outbox(notifier)) == 1


def test_an_invoice_with_cr_lf_in_a_header_value_is_recorded_failed_and_never_sent(notifier):
    invoice = make_invoice(email="ap@example.com\r\nBcc: everyone@example.org")

    deliver(notifier, invoice, offset=0)
    counts = notifier.sender.run_once()

    delivery = notifier.app.delivery_of(invoice.invoice_id)
    assert delivery.state == "failed"
    assert delivery.failure_reason == "header_injection"
    assert delivery.attempts == 0
    assert counts[Outcome.SENT] == counts[Outcome.FAILED] == 0
    assert outbox(notifier) == []


def test_a_leased_attempt_that_never_finished_is_sent_again_after_the_lease_with_the_same_id(
    notifier, clock
):
    invoice = make_invoice()
    deliver(notifier, invoice, offset=0)
    delivery_id = delivery_id_for(invoice.invoice_id)
    # A sender takes the lease and dies before recording the outcome.
    assert notifier.app.claim(delivery_id, clock(), timedelta(seconds=30)) is not None
    notifier.queue.catch_up()

    assert notifier.sender.run_once()[Outcome.SENT] == 0  # the lease holds
    clock.advance(seconds=31)
    assert notifier.sender.run_once()[Outcome.SENT] == 1

    delivery = notifier.app.delivery_of(invoice.invoice_id)
    assert delivery.attempts == 2
    assert delivery.message_id == notifier.sender.builder.message_id(invoice.invoice_id)
    assert len(outbox(notifier)) == 1


def test_two_senders_on_one_store_send_a_due_delivery_once(notifier, clock):
    invoice = make_invoice()
    deliver(notifier, invoice, offset=0)
    delivery_id = delivery_id_for(invoice.invoice_id)

    rival = notifier.app.find(delivery_id)  # a second instance loaded it at the same time
    first = notifier.app.claim(delivery_id, clock(), timedelta(seconds=30))
    rival.start_attempt(clock(), timedelta(seconds=30))

    assert first is not None
    assert notifier.app._save_if_current(rival) is False


def test_sent_and_failed_map_onto_the_published_outcome_events_and_nothing_else_does(notifier):
    good, bad = make_invoice(), make_invoice(email="not an address")
    deliver(notifier, good, offset=0)
    deliver(notifier, bad, offset=1)
    notifier.sender.run_once()

    published = []
    for notification in notifier.app.recorder.select_notifications(None, 100):
        cloud_event = to_cloud_event(notifier.app.mapper.to_domain_event(notification))
        if cloud_event is not None:
            published.append(check_cloud_event(cloud_event).data)

    assert len(published) == 2
    sent = next(e for e in published if isinstance(e, EmailSent))
    failed = next(e for e in published if isinstance(e, EmailFailed))
    assert (sent.invoice_id, sent.cloud_id, sent.attempts) == (good.invoice_id, good.cloud_id, 1)
    assert sent.message_id == f"<invoice-{good.invoice_id}@seatledger.example>"
    assert (failed.invoice_id, failed.reason) == (bad.invoice_id, "invalid_address")
    assert "not an address" not in failed.detail


def test_published_outcomes_validate_against_the_checked_in_json_schemas_alone(notifier):
    deliver(notifier, make_invoice(), offset=0)
    deliver(notifier, make_invoice(email="ap@example.com\nBcc: x@example.org"), offset=1)
    notifier.sender.run_once()
    folder = Path(__file__).resolve().parents[3] / "schemas" / "json"
    envelope_schema = json.loads((folder / "cloudevent.json").read_text())

    checked = 0
    for notification in notifier.app.recorder.select_notifications(None, 100):
        cloud_event = to_cloud_event(notifier.app.mapper.to_domain_event(notification))
        if cloud_event is None:
            continue
        document = json.loads(cloud_event.to_json_bytes())
        jsonschema.validate(document, envelope_schema, cls=Draft202012Validator)
        data_schema = json.loads((folder / f"{document['type']}.json").read_text())
        jsonschema.validate(document["data"], data_schema, cls=Draft202012Validator)
        checked += 1

    assert checked == 2


def test_the_cloud_event_id_of_an_outcome_is_stable_across_readings(notifier):
    invoice = make_invoice()
    deliver(notifier, invoice, offset=0)
    notifier.sender.run_once()

    def ids():
        return [
            ce.id
            for n in notifier.app.recorder.select_notifications(None, 100)
            if (ce := to_cloud_event(notifier.app.mapper.to_domain_event(n))) is not None
        ]

    assert ids() == ids()
    assert len(ids()) == 1


def test_queue_metrics_report_the_unsent_invoices_and_their_age(notifier, clock):
    invoice = make_invoice()
    deliver(notifier, invoice, offset=0)
    notifier.queue.catch_up()
    registry = notifier.registry

    assert registry.get_sample_value("seatledger_notifier_pending_deliveries") == 1
    age = (clock() - invoice.issued_at).total_seconds()
    assert registry.get_sample_value(
        "seatledger_notifier_oldest_unsent_invoice_age_seconds"
    ) == pytest.approx(age)

    notifier.sender.run_once()

    assert registry.get_sample_value("seatledger_notifier_pending_deliveries") == 0
    assert registry.get_sample_value("seatledger_notifier_oldest_unsent_invoice_age_seconds") == 0
    assert registry.get_sample_value("seatledger_notifier_emails_total", {"outcome": "sent"}) == 1
