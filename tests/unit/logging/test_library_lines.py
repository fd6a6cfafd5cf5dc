"""Records of libraries that log through the standard library (uvicorn, asyncio) are rendered
as the process's own JSON lines: one line each, a traceback included as a field."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from seatledger.logging import configure_logging, flush_logs


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()
    logging.basicConfig(force=True)


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("buffered", [False, True])
def test_a_library_traceback_is_one_json_line(capsys, buffered: bool) -> None:
    configure_logging("INFO", "json", buffered=buffered)
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    flush_logs()
    err = capsys.readouterr().err
    lines = _lines(err)  # every line is JSON: no bare traceback lines
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "Exception in ASGI application"
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "error"
    assert "ValueError" in json.dumps(line["exception"])


def test_a_library_warning_carries_the_bound_context(capsys) -> None:
    configure_logging("INFO", "json")
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    (line,) = _lines(capsys.readouterr().err)
    assert line["event"] == "Invalid HTTP request received."
    assert line["level"] == "warning"
    assert line["request_id"] == "r-1"
    assert "timestamp" in line


def test_library_records_below_warning_are_not_written(capsys) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("uvicorn.error").info("Started server process")
    assert capsys.readouterr().err == ""
