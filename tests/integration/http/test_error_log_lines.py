"""A served app's errors reach the log as single JSON lines: a route's unhandled exception
and uvicorn's own complaints alike; no multi-line traceback is printed."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import structlog

from seatledger.logging import configure_logging
from tests.integration.http.conftest import raw_exchange


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()


def test_errors_of_a_served_app_are_logged_as_single_json_lines(serve, capsys):
    configure_logging("INFO", "json")
    served = serve()
    capsys.readouterr()
    response = httpx.get(f"{served.url}/v1/fail")
    assert response.status_code == 500
    garbage = raw_exchange(served.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400")
    time.sleep(0.3)
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    events = [line["event"] for line in lines]
    assert events.count("unhandled_error") == 1
    (failure,) = [line for line in lines if line["event"] == "unhandled_error"]
    assert failure["request_id"] == response.headers["x-request-id"]
    assert "RuntimeError" in json.dumps(failure["exception"])
    assert "Invalid HTTP request received." in events
    (request_line,) = [line for line in lines if line["event"] == "request"]
    assert request_line["status"] == 500
    assert "Exception in ASGI application" not in events  # the server saw no exception
