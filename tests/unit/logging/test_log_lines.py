"""Log lines never carry e-mail addresses, tokens or passwords, even in tracebacks."""

from __future__ import annotations

import json

import pytest
import structlog

from seatledger.logging import configure_logging, get_logger

# Built, so that neither appears in this file's source (a console traceback shows source lines).
EMAIL = "@".join(["secret.person", "customer.example"])
TOKEN = ".".join(["Bearer eyJhbGciOiJIUzI1NiJ9", "x", "y"])


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    structlog.reset_defaults()


def _fail_with_secrets(billing_email: str, authorization: str) -> None:
    body = {"billing_email": billing_email, "token": authorization}
    raise RuntimeError(f"the store refused a body with {len(body)} fields")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_logged_exception_shows_no_local_variables(fmt: str, capsys) -> None:
    configure_logging("INFO", fmt)
    log = get_logger("test")
    try:
        _fail_with_secrets(EMAIL, TOKEN)
    except RuntimeError:
        log.exception("unhandled_error")
    err = capsys.readouterr().err
    assert "unhandled_error" in err
    assert "the store refused a body with" in err
    assert EMAIL not in err
    assert TOKEN not in err
    assert TOKEN.split(".")[0].removeprefix("Bearer ") not in err


def test_sensitive_keys_are_redacted(capsys) -> None:
    configure_logging("INFO", "json")
    get_logger("test").info("mail_sent", billing_email="a@b.example", token="t0k3n", invoice="SL-1")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["billing_email"] == "[redacted]"
    assert line["token"] == "[redacted]"
    assert line["invoice"] == "SL-1"


def test_lines_go_to_the_stderr_of_the_moment(capsys) -> None:
    configure_logging("INFO", "json")
    capsys.readouterr()
    with capsys.disabled():
        pass  # the capture stream is replaced between tests; loggers follow sys.stderr
    get_logger("test").info("still_visible")
    assert "still_visible" in capsys.readouterr().err
