"""The invoice e-mail: headers, refusal of CR/LF, both bodies in both locales, the PDF."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy
from uuid import UUID

import pytest
from pypdf import PdfReader

from seatledger.rendering import render_invoice_pdf
from services.notifier.message import (
    HeaderInjection,
    InvalidAddress,
    MessageBuilder,
    Templates,
    validate,
)
from tests.samples import make_invoice

NOW = datetime(2026, 11, 28, 12, 0, 7, tzinfo=UTC)
INVOICE_ID = UUID("00000000-0000-4000-8000-000000000042")


@pytest.fixture(scope="module")
def builder() -> MessageBuilder:
    return MessageBuilder("billing@seatledger.example", render_invoice_pdf, Templates())


@pytest.mark.parametrize(
    "field",
    ["email", "name", "number"],
)
@pytest.mark.parametrize("injected", ["\r\nBcc: victim@example.org", "\nX-Evil: 1", "\rX: y"])
def test_a_cr_or_lf_in_any_header_value_is_refused(builder, field, injected):
    values = {"email": "ap@example.com", "name": "Acme", "number": "SL-2026-000001"}
    values[field] = values[field] + injected
    invoice = make_invoice(email=values["email"], name=values["name"], number=values["number"])

    with pytest.raises(HeaderInjection):
        validate(invoice)
    with pytest.raises(HeaderInjection):
        builder.build(invoice, NOW)


def test_other_control_characters_in_a_header_value_are_refused_too():
    with pytest.raises(HeaderInjection):
        validate(make_invoice(name="Acme\x00Ltd"))
    with pytest.raises(HeaderInjection):
        validate(make_invoice(number="SL-2026\x0b-1"))


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "@example.com", "ap@", "ap@localhost", "a b@example.com", "a@b@"]
)
def test_an_unusable_billing_address_is_refused(email):
    with pytest.raises(InvalidAddress):
        validate(make_invoice(email=email))


def test_the_message_goes_to_the_billing_address_with_the_invoice_number_in_the_subject(builder):
    invoice = make_invoice(locale="en", number="SL-2026-000042", email="ap@example.com")

    message = builder.build(invoice, NOW)

    assert message["To"].addresses[0].addr_spec == "ap@example.com"
    assert message["To"].addresses[0].display_name == "Acme Ltd"
    assert message["Subject"] == "Your invoice SL-2026-000042"
    assert message["From"].addresses[0].addr_spec == "billing@seatledger.example"


def test_the_message_id_is_derived_from_the_invoice_id_and_stable_across_builds(builder):
    invoice = make_invoice(invoice_id=INVOICE_ID)

    first = builder.build(invoice, NOW)
    again = builder.build(invoice, datetime(2026, 12, 1, tzinfo=UTC))

    expected = "<invoice-00000000-0000-4000-8000-000000000042@seatledger.example>"
    assert first["Message-ID"] == expected
    assert again["Message-ID"] == expected
    assert builder.build(make_invoice(), NOW)["Message-ID"] != expected


def test_the_serialized_message_has_one_header_block_that_parses_back(builder):
    invoice = make_invoice(locale="de", name="Müller & Söhne GmbH")

    raw = builder.build(invoice, NOW).as_bytes()
    parsed = message_from_bytes(raw, policy=default_policy)

    assert parsed["Subject"] == "Ihre Rechnung SL-2026-000042"
    assert parsed["To"].addresses[0].display_name == "Müller & Söhne GmbH"
    assert [part.get_content_type() for part in parsed.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]


def test_the_attachment_is_the_invoice_pdf_that_parses(builder):
    invoice = make_invoice(locale="en", number="SL-2026-000077")

    message = builder.build(invoice, NOW)
    attachments = list(message.iter_attachments())

    assert len(attachments) == 1
    assert attachments[0].get_filename() == "SL-2026-000077.pdf"
    pdf = attachments[0].get_content()
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "SL-2026-000077" in text


def test_english_bodies_state_what_was_bought_the_period_the_prorated_days_and_totals():
    bodies = Templates().render(make_invoice(locale="en", name="Acme Ltd"))

    for body in (bodies.text, bodies.html):
        assert "Hello Acme Ltd" in body
        assert "SL-2026-000042" in body
        assert "Additional seats: 3 additional seats" in body
        assert "€1,234.50" in body
        assert "1 Nov 2026" in body
        assert "30 Nov 2026" in body
        assert "3 of 30 days" in body
        assert "28 Nov 2026" in body
        assert "€370.35" in body
        assert "€70.37" in body
        assert "€440.72" in body
        assert "Tax (19 %)" in body
    assert "Net:" in bodies.text
    assert "Total:" in bodies.text


def test_german_bodies_state_what_was_bought_the_period_the_prorated_days_and_totals():
    bodies = Templates().render(make_invoice(locale="de", name="Müller GmbH"))

    for body in (bodies.text, bodies.html):
        assert "Guten Tag Müller GmbH" in body
        assert "Rechnung" in body
        assert "SL-2026-000042" in body
        assert "Zusätzliche Plätze" in body
        assert "1.234,50\u00a0€" in body
        assert "01.11.2026 bis 30.11.2026" in body
        assert "3 von 30 Tagen" in body
        assert "370,35\u00a0€" in body
        assert "70,37\u00a0€" in body
        assert "440,72\u00a0€" in body
        assert "USt. (19 %)" in body
    assert "Netto:" in bodies.text
    assert "Gesamt:" in bodies.text


def test_a_renewal_for_the_whole_period_is_worded_as_a_full_period():
    invoice = make_invoice(locale="en")
    line = invoice.lines[0].model_copy(
        update={
            "kind": "renewal",
            "charge_date": invoice.lines[0].period.start,
            "remaining_days": 30,
        }
    )
    renewal = invoice.model_copy(update={"kind": "renewal", "lines": [line]})

    text = Templates().render(renewal).text

    assert "Renewal: " in text
    assert "Full period: 30 days" in text
    assert "of 30 days" not in text


def test_the_html_body_escapes_markup_from_the_event():
    bodies = Templates().render(make_invoice(name="<script>alert(1)</script>"))

    assert "<script>" not in bodies.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in bodies.html
