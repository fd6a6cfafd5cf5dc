"""Issuing: gapless numbers per series and year, exactly one invoice per billing event, the
position recorded with it, the contract mapping and the handler's dispatch (in memory)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from schemas.registry import check_cloud_event
from seatledger.consumer import PoisonMessage
from seatledger.tracking import Position
from services.invoicer.application import InvoicerApplication, IssueStatus
from services.invoicer.contract import cloud_event_id, invoice_issued, to_cloud_event
from services.invoicer.domain import InvalidPrefixError, seat_purchase_invoice
from services.invoicer.handlers import LedgerEventHandler
from services.invoicer.metrics import InvoicerMetrics
from tests.unit.invoicer.ledger_events import (
    envelope,
    license_assigned,
    period_renewed,
    seats_increased,
    terms,
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))


@pytest.fixture
def app(clock):
    application = InvoicerApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    yield application
    application.close()


def _purchase(day: date = date(2026, 11, 28), **kwargs):
    return seat_purchase_invoice(seats_increased(day, **kwargs), uuid.uuid4())


def test_numbers_are_sequential_and_gapless_from_000001(app):
    numbers = [
        app.issue(_purchase(), Position("seatledger.ledger.v1:0", offset)).invoice.number
        for offset in range(5)
    ]
    assert numbers == [f"SL-2026-{n:06d}" for n in range(1, 6)]
    assert app.series_count(2026) == 5


def test_each_year_has_its_own_series_by_the_local_issue_date(app, clock):
    app.issue(_purchase(), Position("p", 1))
    # 23:30 UTC on Dec 31 is already Jan 1 in Berlin: the invoice belongs to 2027.
    clock.now = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    result = app.issue(_purchase(), Position("p", 2))
    assert result.invoice.number == "SL-2027-000001"
    assert result.invoice.issue_date == date(2027, 1, 1)
    assert (app.series_count(2026), app.series_count(2027)) == (1, 1)


def test_a_configured_prefix_names_the_series(clock):
    app = InvoicerApplication(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, number_prefix="ACME", clock=clock
    )
    assert app.issue(_purchase(), Position("p", 1)).invoice.number == "ACME-2026-000001"
    with pytest.raises(InvalidPrefixError):
        InvoicerApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, number_prefix="sl-")


def test_a_redelivered_message_issues_nothing(app):
    draft = _purchase()
    first = app.issue(draft, Position("t:0", 7))
    again = app.issue(draft, Position("t:0", 7))
    assert first.status is IssueStatus.ISSUED
    assert again.status is IssueStatus.DUPLICATE
    assert app.series_count(2026) == 1


def test_the_same_event_at_another_position_is_not_invoiced_twice_but_advances(app):
    draft = _purchase()
    app.issue(draft, Position("t:0", 7))
    again = app.issue(draft, Position("t:0", 9))
    assert again.status is IssueStatus.ALREADY_INVOICED
    assert again.invoice.number == "SL-2026-000001"
    assert app.position("t:0") == 9
    assert app.series_count(2026) == 1


def test_an_earlier_position_than_the_stored_one_is_a_duplicate(app):
    app.issue(_purchase(), Position("t:0", 7))
    assert app.issue(_purchase(), Position("t:0", 3)).status is IssueStatus.DUPLICATE
    assert app.series_count(2026) == 1


def test_an_invoice_is_stored_whole_and_listed_under_its_cloud(app):
    cloud = uuid.uuid4()
    first = app.issue(_purchase(cloud_id=cloud), Position("p", 1)).invoice
    app.issue(_purchase(), Position("p", 2))  # another cloud
    second = app.issue(
        seat_purchase_invoice(seats_increased(date(2026, 11, 29), cloud_id=cloud), uuid.uuid4()),
        Position("p", 3),
    ).invoice
    assert [i.number for i in app.invoices_of_cloud(cloud)] == [first.number, second.number]
    stored = app.find_invoice(first.id)
    assert stored is not None
    assert stored.version == 1  # issued once, never edited
    assert stored.lines == first.lines
    assert stored.lines[0].unrounded_amount == Decimal("4")
    assert app.invoices_of_cloud(uuid.uuid4()) == []
    assert app.find_invoice(uuid.uuid4()) is None


def test_the_published_event_carries_everything_and_keeps_its_id(app):
    invoice = app.issue(_purchase(), Position("p", 1)).invoice
    notifications = app.notification_log.select(start=1, limit=10)
    domain_events = [app.mapper.to_domain_event(n) for n in notifications]
    published = [e for e in (to_cloud_event(d) for d in domain_events) if e is not None]
    assert len(published) == 1  # the number series and the cloud index are internal
    (cloud_event,) = published
    parsed = check_cloud_event(cloud_event)  # meets the published contract
    data = parsed.data
    assert cloud_event.source == "/seatledger/invoicer"
    assert cloud_event.type == "seatledger.invoicer.InvoiceIssued.v1"
    assert cloud_event.subject == str(invoice.cloud_id)
    assert cloud_event.id == str(cloud_event_id(invoice.id, 1))
    assert data == invoice_issued(invoice)
    assert data.invoice_number == "SL-2026-000001"
    assert data.customer.billing_email == "ap@example.com"
    assert data.customer.locale == "de"
    assert (data.net, data.tax, data.gross) == (Decimal("4.00"), Decimal("0.76"), Decimal("4.76"))
    assert data.lines[0].remaining_days == 2
    assert data.lines[0].period_days == 30
    assert data.issue_date == date(2026, 11, 28)
    # Mapping the stored event again (a re-publication) gives the same event id.
    again = [e for e in (to_cloud_event(d) for d in domain_events) if e is not None]
    assert again[0].id == cloud_event.id


def test_the_handler_invoices_purchases_and_renewals_and_only_advances_on_others(app):
    registry = CollectorRegistry()
    handler = LedgerEventHandler(app, InvoicerMetrics(registry))
    cloud = uuid.uuid4()
    events = [
        license_assigned(cloud),
        seats_increased(date(2026, 11, 28), cloud_id=cloud),
        period_renewed(10, cloud_id=cloud),
    ]
    for offset, event in enumerate(events):
        cloud_event = envelope(event)
        handler(cloud_event, check_cloud_event(cloud_event).data, Position("t:0", offset))
    assert app.position("t:0") == 2
    kinds = [i.kind for i in app.invoices_of_cloud(cloud)]
    assert kinds == ["seat_purchase", "renewal"]
    sample = registry.get_sample_value
    assert (
        sample("seatledger_invoicer_invoices_issued_total", {"currency": "EUR", "kind": "renewal"})
        == 1
    )
    assert sample("seatledger_invoicer_ledger_events_total", {"outcome": "ignored"}) == 1
    assert (
        sample(
            "seatledger_invoicer_invoiced_net_amount_total", {"currency": "EUR", "kind": "renewal"}
        )
        == 150.0
    )
    assert (
        sample("seatledger_invoicer_processing_latency_seconds_count", {"kind": "seat_purchase"})
        == 1
    )


def test_the_handler_refuses_an_event_that_contradicts_its_terms_as_poison(app):
    handler = LedgerEventHandler(app)
    event = seats_increased(date(2026, 11, 28), contract=terms()).model_copy(
        update={"seats_after": 99}
    )
    cloud_event = envelope(event)
    with pytest.raises(PoisonMessage, match="seats_after"):
        handler(cloud_event, event, Position("t:0", 0))
    assert app.position("t:0") is None  # nothing recorded: the consumer dead-letters it
    bad_subject = cloud_event.model_copy(update={"subject": str(uuid.uuid4())})
    with pytest.raises(PoisonMessage, match="subject"):
        handler(bad_subject, event, Position("t:0", 0))


def test_a_long_series_is_loaded_from_snapshots_and_keeps_counting(app):
    for offset in range(205):
        app.issue(_purchase(), Position("p", offset))
    assert app.series_count(2026) == 205
    series_id = app._series(2026).id
    snapshots = list(app.snapshots.get(series_id))
    assert [s.originator_version for s in snapshots] == [100, 200]
    assert app.issue(_purchase(), Position("p", 205)).invoice.number == "SL-2026-000206"
