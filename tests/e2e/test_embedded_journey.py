"""The seat-license story against `seatledger serve`, the embedded default, as a real process:
SQLite files, no Kafka, e-mails as .eml files in the outbox."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.journey import BILLING_EMAIL, Journey
from tests.e2e.support import (
    JWT_SECRET,
    ServiceProcess,
    Tokens,
    check_invoice_email,
    free_port,
    metric_sum,
    parse_email,
    wait_for,
)

pytestmark = pytest.mark.e2e


def serve(data_dir: Path, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(
        ["serve"],
        {
            "SEATLEDGER_DATA_DIR": str(data_dir),
            "SEATLEDGER_JWT_SECRET": JWT_SECRET,
            "SEATLEDGER_LOG_LEVEL": "INFO",
        },
        free_port(),
        log_dir / "serve.log",
    )


def delivery_events(data_dir: Path) -> dict[str, int]:
    """The notifier's recorded delivery events by kind, read from its store (read-only)."""
    uri = f"file:{data_dir / 'notifier.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute("SELECT topic, COUNT(*) FROM stored_events GROUP BY topic").fetchall()
    return {topic.rsplit(".", 1)[-1]: count for topic, count in rows}


def outbox(data_dir: Path) -> list[Path]:
    folder = data_dir / "outbox"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_seat_license_story_on_the_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = serve(data_dir, tmp_path).start()
    try:
        journey = Journey(server.url, server.url, Tokens())
        cloud_id = journey.before_purchase()
        quote = journey.buy_three_seats(cloud_id)
        (invoice,) = journey.wait_for_invoices(cloud_id, 1)
        journey.check_invoice(invoice, quote)
        (eml,) = wait_for(lambda: outbox(data_dir), what="the invoice e-mail")
        check_invoice_email(parse_email(eml.read_bytes()), invoice, BILLING_EMAIL)
        journey.after_purchase(cloud_id)
        journey.check_group_moves_in_history(cloud_id)
        assert journey.history_types(cloud_id) == [
            "ContractOpened",
            *["LicenseAssigned"] * 5,
            "SeatsIncreased",
            *["LicenseAssigned"] * 3,
            "LicenseReleased",
        ]
        metrics = server.metrics()
        assert metric_sum(metrics, "seatledger_invoicer_invoices_issued_total") == 1
        assert metric_sum(metrics, "seatledger_notifier_emails_total", outcome="sent") == 1
        assert metric_sum(metrics, "seatledger_ledger_commands_total", outcome="success") == 11
        assert "rechnung@" not in server.tail(10_000)  # no e-mail addresses in the logs
    finally:
        assert server.stop() == 0, server.tail()


def test_a_killed_embedded_process_completes_the_story_after_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = serve(data_dir, tmp_path).start()
    journey = Journey(server.url, server.url, Tokens())
    cloud_id = journey.before_purchase()
    quote = journey.buy_three_seats(cloud_id)
    server.kill()  # SIGKILL right after the purchase was acknowledged

    server = serve(data_dir, tmp_path).start()
    try:
        journey = Journey(server.url, server.url, Tokens())
        (invoice,) = journey.wait_for_invoices(cloud_id, 1)
        journey.check_invoice(invoice, quote)
        journey.after_purchase(cloud_id)
        # A second purchase after the restart: the series goes on without a gap.
        more = journey.purchase(cloud_id, 9, None)
        assert more.status_code == 201, more.text
        invoices = journey.wait_for_invoices(cloud_id, 2)
        numbers = sorted(i["invoice_number"] for i in invoices)
        assert [n[-6:] for n in numbers] == ["000001", "000002"]
        emails = wait_for(lambda: len(outbox(data_dir)) >= 2 and outbox(data_dir))
        wait_for(lambda: delivery_events(data_dir).get("Sent") == 2, what="two deliveries sent")
        server.kill()  # once more, after everything was sent
    finally:
        if server.process and server.process.poll() is None:
            server.stop()

    recorded = delivery_events(data_dir)
    # One delivery per invoice, each sent once. The SIGKILL right after the purchase may have
    # caught the first e-mail in flight: then it was attempted twice (same Message-ID, the
    # documented crash window), never more.
    assert (recorded["Requested"], recorded["Sent"]) == (2, 2)
    assert 2 <= recorded["AttemptStarted"] <= 3
    server = serve(data_dir, tmp_path).start()
    try:
        journey = Journey(server.url, server.url, Tokens())
        assert len(journey.invoices(cloud_id)) == 2
        time.sleep(2)  # time for a notifier that wrongly re-sends to do so
        assert delivery_events(data_dir) == recorded  # nothing attempted again after restart
        assert len(outbox(data_dir)) == 2
        subjects = sorted(parse_email(path.read_bytes())["Subject"] for path in emails)
        assert all(any(n in s for s in subjects) for n in numbers)
    finally:
        assert server.stop() == 0, server.tail()
