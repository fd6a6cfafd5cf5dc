"""Processes, tokens and checks shared by the journeys."""

from __future__ import annotations

import email
import email.policy
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pypdf import PdfReader

from seatledger.auth import mint_token
from seatledger.config import Settings

JWT_SECRET = "e2e-journeys-secret-0123456789abcdef-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """``seatledger <args>`` as a real child process with its own HTTP port."""

    args: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 60) -> ServiceProcess:
        env = {**os.environ, **self.env, "SEATLEDGER_HTTP_PORT": str(self.port)}
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "seatledger.cli", *self.args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.args} exited {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.args} not ready within {ready_timeout_s}s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._close_log()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"{self.args} did not stop on SIGTERM: {self.tail()}") from None
        finally:
            self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics``, by name and sorted labels."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        sample_name, _, rest = key.partition("{")
        if sample_name != name:
            continue
        have = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if part)
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


class Tokens:
    def __init__(self, secret: str = JWT_SECRET) -> None:
        self.settings = Settings(jwt_secret=secret)

    def __call__(self, sub: str, *scopes: str, step_up: bool = False) -> dict[str, str]:
        token = mint_token(self.settings, subject=sub, scopes=scopes, step_up=step_up)
        return {"Authorization": f"Bearer {token}"}


def term_start_for(today: date) -> date:
    """A term start 12 days before ``today`` (day of month <= 28, so the first period ends on
    the same day of the next month, with no month-end clamping)."""
    start = today - timedelta(days=12)
    if start.day > 28:
        start = start.replace(day=28)
    return start


def expected_purchase(
    seats_added: int, price: Decimal, term_start: date, today: date, tax_rate: Decimal
) -> tuple[Decimal, Decimal, Decimal, int, int]:
    """The proration rule, computed here on its own: ``(net, tax, gross, R, D)``."""
    year, month = (term_start.year + term_start.month // 12, term_start.month % 12 + 1)
    end = date(year, month, term_start.day)
    remaining, total = (end - today).days, (end - term_start).days
    cent = Decimal("0.01")
    net = (seats_added * price * remaining / total).quantize(cent, rounding=ROUND_HALF_UP)
    tax = (net * tax_rate / 100).quantize(cent, rounding=ROUND_HALF_UP)
    return net, tax, net + tax, remaining, total


def parse_email(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def check_invoice_email(message: EmailMessage, invoice: dict[str, Any], recipient: str) -> None:
    """The e-mail of ``invoice``: recipient, subject, both bodies, a PDF that parses."""
    assert [a.addr_spec for a in message["To"].addresses] == [recipient]
    assert invoice["invoice_number"] in message["Subject"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert invoice["invoice_number"] in plain.get_content()
    assert invoice["invoice_number"] in html.get_content()
    pdfs = [
        part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"
    ]
    assert len(pdfs) == 1
    reader = PdfReader(io.BytesIO(pdfs[0].get_content()))
    text = "".join(page.extract_text() for page in reader.pages)
    assert invoice["invoice_number"] in text


def wait_for(predicate: Any, timeout_s: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
