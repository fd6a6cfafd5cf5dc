"""The servers' buffered log writer: lines are written in batches, yet never later than the
flush interval, at once for errors, and all of them at exit."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import structlog

from seatledger.logging import LineBuffer, configure_logging, flush_logs, get_logger


def test_lines_are_batched_then_written_within_the_interval():
    stream = io.StringIO()
    buffer = LineBuffer(stream, interval_s=0.05)
    buffer.write("a")
    buffer.write("b")
    assert stream.getvalue() == ""
    deadline = time.monotonic() + 2
    while stream.getvalue() != "a\nb\n" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "a\nb\n"
    buffer.close()


def test_an_error_line_is_written_at_once_with_the_lines_before_it():
    stream = io.StringIO()
    buffer = LineBuffer(stream, interval_s=60)
    buffer.write("info")
    buffer.write("boom", urgent=True)
    assert stream.getvalue() == "info\nboom\n"
    buffer.close()


def test_a_full_buffer_is_written_at_once():
    stream = io.StringIO()
    buffer = LineBuffer(stream, interval_s=60, max_bytes=10)
    buffer.write("12345")
    assert stream.getvalue() == ""
    buffer.write("67890")
    assert stream.getvalue() == "12345\n67890\n"
    buffer.close()


def test_structlog_error_lines_bypass_the_buffer(capsys):
    configure_logging("INFO", "json", buffered=True)
    try:
        log = get_logger("t")
        log.info("quiet")
        log.error("loud")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert [line["event"] for line in lines] == ["quiet", "loud"]
        log.info("later")
        flush_logs()
        assert json.loads(capsys.readouterr().err)["event"] == "later"
    finally:
        configure_logging("INFO", "json")
        structlog.reset_defaults()


def test_pending_lines_are_written_when_the_process_exits():
    code = (
        "from seatledger.logging import configure_logging, get_logger\n"
        "configure_logging('INFO', 'json', buffered=True)\n"
        "log = get_logger('t')\n"
        "[log.info('line', n=i) for i in range(500)]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    numbers = [json.loads(x)["n"] for x in done.stderr.splitlines()]
    assert numbers == list(range(500))
