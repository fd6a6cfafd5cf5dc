"""The embedded default: the notifier follows the invoicer's notification log (SQLite files,
no broker, no SMTP server) and writes each invoice e-mail to the outbox folder once."""

from __future__ import annotations

import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from seatledger.config import load_settings
from seatledger.metrics import new_registry
from seatledger.persistence import application_env
from seatledger.runtime import Supervisor
from seatledger.tracking import Position
from services.invoicer.application import InvoicerApplication
from services.invoicer.contract import to_cloud_event as invoicer_to_cloud_event
from services.invoicer.domain import CausingEvent, Customer, InvoiceDraft, InvoiceLine
from services.notifier.bootstrap import build_notifier
from services.notifier.sender import Outcome
from tests.samples import make_invoice

pytestmark = pytest.mark.integration


def draft_of(contract) -> InvoiceDraft:
    """An invoicer draft with the figures of a contract invoice."""
    return InvoiceDraft(
        invoice_id=contract.invoice_id,
        kind=contract.kind,
        cloud_id=contract.cloud_id,
        time_zone=contract.time_zone,
        customer=Customer(**contract.customer.model_dump()),
        currency=contract.currency,
        tax_rate=contract.tax_rate,
        lines=tuple(
            InvoiceLine(
                kind=line.kind,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                period_start=line.period.start,
                period_end=line.period.end,
                charge_date=line.charge_date,
                remaining_days=line.remaining_days,
                period_days=line.period_days,
                unrounded_amount=line.unrounded_amount,
                amount=line.amount,
            )
            for line in contract.lines
        ),
        net=contract.net,
        tax=contract.tax,
        gross=contract.gross,
        caused_by=CausingEvent(
            event_id=contract.caused_by.event_id, event_type=contract.caused_by.event_type
        ),
        event_time=contract.issued_at,
    )


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        data_dir=tmp_path,
        database_url=None,
        kafka_bootstrap_servers=None,
        smtp_host=None,
        mail_from="billing@seatledger.example",
    )


@pytest.fixture
def invoicer(settings):
    app = InvoicerApplication(application_env(None, "invoicer", settings.data_dir))
    yield app
    app.close()


def test_an_issued_invoice_reaches_the_outbox_once_through_the_invoicers_log(settings, invoicer):
    first, second = make_invoice(locale="de"), make_invoice(locale="en")
    invoicer.issue(draft_of(first), Position("ledger", 1))
    invoicer.issue(draft_of(second), Position("ledger", 2))
    notifier = build_notifier(settings, new_registry("notifier"), poll_interval_s=0.05)
    supervisor = Supervisor()
    for name, work in notifier.embedded_workers(invoicer).items():
        supervisor.add(name, work)
    supervisor.start()
    try:
        deadline = time.monotonic() + 20
        outbox = settings.data_dir / "outbox"
        while len(list(outbox.glob("*.eml"))) < 2 or notifier.queue.size() > 0:
            assert time.monotonic() < deadline, "the e-mails did not reach the outbox"
            time.sleep(0.05)
    finally:
        assert supervisor.stop() == []

    files = sorted((settings.data_dir / "outbox").glob("*.eml"))
    messages = [message_from_bytes(f.read_bytes(), policy=default_policy) for f in files]
    subjects = sorted(m["Subject"] for m in messages)
    numbers = sorted(
        i.number
        for i in invoicer.invoices_of_cloud(first.cloud_id)
        + invoicer.invoices_of_cloud(second.cloud_id)
    )
    assert subjects == sorted([f"Ihre Rechnung {numbers[0]}", f"Your invoice {numbers[1]}"]) or (
        subjects == sorted([f"Ihre Rechnung {numbers[1]}", f"Your invoice {numbers[0]}"])
    )
    assert notifier.app.position("invoicer") == invoicer.recorder.max_notification_id()
    notifier.close()

    # A restart follows on from the stored position and sends nothing again.
    again = build_notifier(settings, new_registry("notifier"))
    follower = again.invoicer_follower(invoicer, invoicer_to_cloud_event)
    stop = threading.Event()
    assert follower.poll_once() == 0
    assert again.sender.run_once(stop)[Outcome.SENT] == 0
    assert len(list((settings.data_dir / "outbox").glob("*.eml"))) == 2
    again.close()
