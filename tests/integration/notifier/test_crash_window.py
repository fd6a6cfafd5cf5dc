"""The documented crash window: a sender killed (SIGKILL) after the SMTP server accepted a
message but before ``Sent`` was committed sends that one message again after restart, with the
same Message-ID; every other invoice is sent exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.envelope import CloudEvent
from schemas.invoices import InvoiceIssued
from seatledger.config import load_settings
from seatledger.metrics import new_registry
from seatledger.tracking import Position
from services.notifier.bootstrap import Notifier, build_notifier
from tests.integration.notifier.smtp import RecordingHandler, SmtpServer
from tests.samples import make_invoice

pytestmark = pytest.mark.integration

SENDER = textwrap.dedent(
    """
    import threading
    from datetime import timedelta
    from seatledger.config import load_settings
    from seatledger.metrics import new_registry
    from services.notifier.bootstrap import build_notifier

    notifier = build_notifier(
        load_settings(), new_registry("notifier"), lease=timedelta(seconds=2), workers=1,
        poll_interval_s=0.05,
    )
    notifier.loop.run(threading.Event())
    """
)

#: A notifier's sender as wired by the product, with its defaults (lease, threads, polling).
NOTIFIER_SENDER = textwrap.dedent(
    """
    import threading
    from seatledger.config import load_settings
    from seatledger.metrics import new_registry
    from services.notifier.bootstrap import build_notifier

    notifier = build_notifier(load_settings(), new_registry("notifier"))
    notifier.loop.run(threading.Event())
    """
)


def notifier_settings(postgres_url: str, data_dir: Path, server: SmtpServer) -> dict[str, Any]:
    """The settings of a notifier on PostgreSQL that sends to ``server``."""
    return {
        "database_url": postgres_url,
        "data_dir": data_dir,
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port,
        "mail_from": "billing@seatledger.example",
    }


def process_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment of a notifier process with ``settings``."""
    return {**os.environ, **{f"SEATLEDGER_{k.upper()}": str(v) for k, v in settings.items()}}


def hand_over(notifier: Notifier, invoices: list[InvoiceIssued]) -> None:
    """Hand ``invoices`` to ``notifier`` as its consumer does, at offsets 0, 1, 2, ..."""
    for offset, invoice in enumerate(invoices):
        cloud_event = CloudEvent.of(
            invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
        )
        notifier.handle(cloud_event, invoice, Position("seatledger.invoices.v1:0", offset))


@dataclass
class StallingHandler(RecordingHandler):
    """Takes the first message, then stalls its 250 reply until released."""

    first_data: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if not self.first_data.is_set():
            self.first_data.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        return reply


def test_a_sender_killed_mid_message_repeats_only_that_message_with_the_same_message_id(
    postgres_url, tmp_path
):
    handler = StallingHandler()
    server = SmtpServer(handler)
    server.start()
    settings = notifier_settings(postgres_url, tmp_path, server)
    notifier = build_notifier(
        load_settings(**settings), new_registry("notifier"), lease=timedelta(seconds=2)
    )
    invoices = [make_invoice(number=f"SL-2026-{n:06d}") for n in range(1, 4)]
    hand_over(notifier, invoices)

    env = process_env(settings)
    process = subprocess.Popen([sys.executable, "-c", SENDER], env=env)
    try:
        assert handler.first_data.wait(30), "the sender never reached DATA"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        handler.release.set()

    try:
        deadline = time.monotonic() + 30
        while notifier.queue.size() > 0 or notifier.queue.catch_up() > 0:
            assert time.monotonic() < deadline, "not every invoice was sent after the restart"
            notifier.sender.run_once()
            time.sleep(0.1)
    finally:
        server.stop()
        notifier.close()

    counts = Counter(r.message["Message-ID"] for r in handler.messages())
    assert sorted(counts.values()) == [1, 1, 2]
    [(repeated, _)] = [item for item in counts.items() if item[1] == 2]
    repeated_invoice = next(i for i in invoices if str(i.invoice_id) in repeated)
    assert repeated == f"<invoice-{repeated_invoice.invoice_id}@seatledger.example>"


@dataclass
class HoldingHandler(RecordingHandler):
    """Takes messages, each answered after ``delay_s``; from the ``hold_after``-th on, it keeps
    every message it took but holds the ``250`` until released (the sender is killed then, with
    those messages in the server's hands and their ``Sent`` not committed)."""

    hold_after: int = 4
    delay_s: float = 0.1
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    taken_at: list[float] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.taken_at.append(time.monotonic())
            held = len(self.received) > self.hold_after
        await asyncio.sleep(self.delay_s)
        if held and not self.release.is_set():
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        return reply


def test_a_killed_notifier_resumes_every_delivery_within_15_s_of_its_restart_repeating_only_those_in_flight(  # noqa: E501
    postgres_url, tmp_path, record_property
):
    handler = HoldingHandler()
    server = SmtpServer(handler)
    server.start()
    settings = notifier_settings(postgres_url, tmp_path, server)
    observer = build_notifier(load_settings(**settings), new_registry("notifier"))
    workers = observer.sender.workers  # the product's defaults: 4 threads, a 10 s lease
    invoices = [make_invoice(number=f"SL-2026-{n:06d}") for n in range(1, 17)]
    hand_over(observer, invoices)

    env = process_env(settings)
    command = [sys.executable, "-c", NOTIFIER_SENDER]
    first_log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, env=env, stdout=first_log, stderr=subprocess.STDOUT)
    second = None
    try:
        assert handler.holding.wait(60), "the notifier never got to the held messages"
        time.sleep(3)  # long enough for the held attempts' leases to be renewed
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        handler.release.set()

        # What the kill left in flight: attempts started, no outcome recorded.
        in_flight = {
            invoice.invoice_id
            for invoice in invoices
            if (delivery := observer.app.delivery_of(invoice.invoice_id)).state == "pending"
            and delivery.attempts > 0
        }
        taken_before = Counter(r.message["Message-ID"] for r in handler.messages())

        restarted_at = time.monotonic()
        second_log = (tmp_path / "second.log").open("w")
        second = subprocess.Popen(command, env=env, stdout=second_log, stderr=subprocess.STDOUT)
        deadline = restarted_at + 40
        while any(
            observer.app.delivery_of(invoice.invoice_id).state != "sent" for invoice in invoices
        ):
            assert time.monotonic() < deadline, "not every invoice was sent after the restart"
            assert second.poll() is None, (tmp_path / "second.log").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        handler.release.set()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        server.stop()
        observer.close()

    with handler.lock:
        last_taken = max(handler.taken_at)
    recovery_s = last_taken - restarted_at
    counts = Counter(r.message["Message-ID"] for r in handler.messages())
    repeated = {message_id for message_id, n in counts.items() if n > 1}
    record_property("recovery_seconds", round(recovery_s, 2))
    record_property("repeated_messages", len(repeated))
    print(f"recovery {recovery_s:.2f} s, {len(repeated)} repeated, in flight {len(in_flight)}")

    assert recovery_s < 15, f"the last delivery came {recovery_s:.1f} s after the restart"
    assert set(counts) == {f"<invoice-{i.invoice_id}@seatledger.example>" for i in invoices}
    assert max(counts.values()) <= 2
    # Only messages the server had taken when the sender died, with no outcome recorded, are
    # repeated: at most one per sending thread.
    in_flight_ids = {f"<invoice-{invoice_id}@seatledger.example>" for invoice_id in in_flight}
    assert repeated <= in_flight_ids & set(taken_before)
    assert 1 <= len(repeated) <= workers
