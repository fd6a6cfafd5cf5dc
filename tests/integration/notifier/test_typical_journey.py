"""One invoice -> one e-mail at a real SMTP server, sent by the running sender loop."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from pypdf import PdfReader

from schemas.envelope import CloudEvent
from seatledger.runtime import Supervisor
from seatledger.tracking import Position
from tests.samples import make_invoice

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_one_invoice_becomes_one_message_with_both_bodies_and_the_pdf(
    make_notifier, smtp_server, smtp_handler
):
    smtp_server.start()
    notifier = make_notifier()  # the real clock
    supervisor = Supervisor()
    for name, work in notifier.workers().items():
        supervisor.add(name, work)
    supervisor.start()
    invoice = make_invoice(
        locale="de", number="SL-2026-000101", email="buchhaltung@example.com", name="Müller GmbH"
    )
    try:
        notifier.handle(
            CloudEvent.of(
                invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
            ),
            invoice,
            Position.kafka("seatledger.invoices.v1", 2, 40),
        )
        wait_for(lambda: len(smtp_handler.messages()) == 1)
        wait_for(lambda: notifier.app.delivery_of(invoice.invoice_id).state == "sent")
    finally:
        assert supervisor.stop() == []

    [received] = smtp_handler.messages()
    assert received.rcpt_tos == ["buchhaltung@example.com"]
    assert received.mail_from == "billing@seatledger.example"
    message = received.message
    assert message["Subject"] == "Ihre Rechnung SL-2026-000101"
    assert message["Message-ID"] == f"<invoice-{invoice.invoice_id}@seatledger.example>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "3 von 30 Tagen" in text
    assert "440,72\u00a0€" in text
    assert "<table>" in html
    assert "440,72\u00a0€" in html
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    pages = PdfReader(io.BytesIO(attachment.get_content())).pages
    assert "SL-2026-000101" in "\n".join(page.extract_text() for page in pages)
    assert notifier.app.position("seatledger.invoices.v1:2") == 40
    registry = notifier.registry
    assert registry.get_sample_value("seatledger_notifier_emails_total", {"outcome": "sent"}) == 1
    assert (
        registry.get_sample_value(
            "seatledger_notifier_smtp_duration_seconds_count", {"outcome": "sent"}
        )
        == 1
    )
