"""The lease of an attempt in progress, on PostgreSQL and a real SMTP server: a live sender
whose server is slower than the lease keeps its attempt (renewed, never taken over), and a
sender that cannot renew (its store does not answer) cuts the hand-over before its lease
ends, so another sender's attempt never overlaps it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from schemas.envelope import CloudEvent
from seatledger.tracking import Position
from services.notifier.domain import delivery_event_name, delivery_id_for
from services.notifier.sender import Outcome
from tests.integration.notifier.smtp import RecordingHandler
from tests.samples import make_invoice

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=2)


@dataclass
class HoldingHandler(RecordingHandler):
    """Holds the first reply at ``stage`` (``"RCPT"`` or ``"DATA"``) until released; at DATA the
    message is taken first, the ``250`` is what waits."""

    stage: str = "DATA"
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    cut: threading.Event = field(default_factory=threading.Event)

    async def _hold(self) -> None:
        if self.reached.is_set():
            return
        self.reached.set()
        try:
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:  # the client cut the connection
            self.cut.set()
            raise

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.stage == "RCPT":
            await self._hold()
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.stage == "DATA":
            await self._hold()
        return reply


@pytest.fixture
def smtp_handler() -> HoldingHandler:
    return HoldingHandler()


def accept_one(notifier):
    invoice = make_invoice()
    cloud_event = CloudEvent.of(
        invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
    )
    notifier.handle(cloud_event, invoice, Position("seatledger.invoices.v1:0", 0))
    return invoice


def event_names(notifier) -> list[str | None]:
    return [
        delivery_event_name(notifier.app.mapper.to_domain_event(n))
        for n in notifier.app.recorder.select_notifications(None, 1000)
    ]


def in_background(function) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(function()), daemon=True)
    thread.start()
    return thread, results


def test_a_live_sender_slower_than_its_lease_keeps_the_attempt_and_the_message_goes_once(
    make_notifier, smtp_server, smtp_handler
):
    smtp_server.start()
    sender_a, sender_b = make_notifier(), make_notifier()  # two instances, one store
    sender_a.sender.lease = sender_b.sender.lease = LEASE
    invoice = accept_one(sender_a)
    delivery_id = delivery_id_for(invoice.invoice_id)

    thread, outcome = in_background(lambda: sender_a.sender.process(delivery_id))
    assert smtp_handler.reached.wait(10), "the message never reached DATA"
    # The server holds its 250 for twice the lease (and less than the SMTP timeout, 5 s).
    held_until = time.monotonic() + 2 * LEASE.total_seconds()
    while time.monotonic() < held_until:
        assert sender_b.sender.run_once()[Outcome.SENT] == 0
        time.sleep(0.1)
    smtp_handler.release.set()
    thread.join(10)

    assert outcome == [Outcome.SENT]
    assert len(smtp_handler.messages()) == 1
    delivery = sender_b.app.find(delivery_id)
    assert (delivery.state, delivery.attempts) == ("sent", 1)
    assert event_names(sender_b).count("LeaseRenewed") >= 4


def test_a_sender_whose_store_stops_answering_cuts_the_hand_over_before_its_lease_ends(
    make_notifier, smtp_server, smtp_handler, postgres_url
):
    smtp_handler.stage = "RCPT"
    smtp_server.start()
    sender_a, sender_b = make_notifier(), make_notifier()
    sender_a.sender.lease = sender_b.sender.lease = LEASE
    invoice = accept_one(sender_a)
    delivery_id = delivery_id_for(invoice.invoice_id)

    with psycopg.connect(postgres_url) as blocker:
        row = blocker.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'notifier'"
            " AND tablename LIKE '%events'"
        ).fetchone()
        assert row is not None, "the notifier's events table"
        (table,) = row
        blocker.commit()
        thread, outcome = in_background(lambda: sender_a.sender.process(delivery_id))
        assert smtp_handler.reached.wait(10), "the message never reached RCPT"
        # The store stops taking writes (a lock; reads go on): no renewal gets through.
        blocker.execute(
            sql.SQL("LOCK TABLE notifier.{} IN EXCLUSIVE MODE").format(sql.Identifier(table))
        )
        locked_at = time.monotonic()
        # The sender gives up 2/5 of the lease before it ends, and cuts the connection.
        cut = smtp_handler.cut.wait(2 * LEASE.total_seconds())
        cut_after = time.monotonic() - locked_at
        time.sleep(max(0.0, 3.0 - cut_after))  # held past the lease, shorter than lock_timeout
        blocker.rollback()
    thread.join(15)
    smtp_handler.release.set()

    assert cut, "the sender kept its SMTP transaction going without a lease"
    # Before any other sender could take the attempt over (the lease ends 2 s after its last
    # renewal, at most 2 s after the lock).
    assert cut_after < LEASE.total_seconds(), f"the connection was cut after {cut_after:.2f} s"
    assert outcome == [Outcome.RETRY]
    assert smtp_handler.messages() == []  # nothing was handed over
    delivery = sender_b.app.find(delivery_id)
    assert delivery.failure_reason == "lease_lost"
    assert sender_a.registry.get_sample_value("seatledger_notifier_leases_lost_total") == 1

    deadline = time.monotonic() + 30
    while sender_b.app.find(delivery_id).state != "sent":
        assert time.monotonic() < deadline, "the delivery was never sent after the lost lease"
        sender_b.sender.run_once()
        time.sleep(0.2)
    assert len(smtp_handler.messages()) == 1
