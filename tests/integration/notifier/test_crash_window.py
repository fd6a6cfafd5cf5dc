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

import pytest

from schemas.envelope import CloudEvent
from seatledger.config import load_settings
from seatledger.metrics import new_registry
from seatledger.tracking import Position
from services.notifier.bootstrap import build_notifier
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
    settings = {
        "database_url": postgres_url,
        "data_dir": tmp_path,
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port,
        "mail_from": "billing@seatledger.example",
    }
    notifier = build_notifier(
        load_settings(**settings), new_registry("notifier"), lease=timedelta(seconds=2)
    )
    invoices = [make_invoice(number=f"SL-2026-{n:06d}") for n in range(1, 4)]
    for offset, invoice in enumerate(invoices):
        cloud_event = CloudEvent.of(
            invoice, id=str(uuid.uuid4()), subject=str(invoice.cloud_id), time=invoice.issued_at
        )
        notifier.handle(cloud_event, invoice, Position("seatledger.invoices.v1:0", offset))

    env = {**os.environ, **{f"SEATLEDGER_{k.upper()}": str(v) for k, v in settings.items()}}
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
