from __future__ import annotations

import random
from datetime import timedelta

import pytest

from seatledger.config import load_settings
from seatledger.metrics import new_registry
from services.notifier.bootstrap import build_notifier
from services.notifier.domain import RetryPolicy
from tests.integration.notifier.smtp import RecordingHandler, SmtpServer
from tests.unit.notifier.invoices import ManualClock


@pytest.fixture
def smtp_handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def smtp_server(smtp_handler):
    server = SmtpServer(smtp_handler)
    yield server
    server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_notifier(postgres_url, smtp_server, tmp_path):
    """A notifier on a fresh PostgreSQL database sending to the test's SMTP server."""
    built = []

    def make(clock=None, **settings_overrides):
        options = {
            "database_url": postgres_url,
            "data_dir": tmp_path,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server.port,
            "smtp_timeout_s": 5.0,
            "mail_from": "billing@seatledger.example",
        }
        options.update(settings_overrides)
        kwargs = {"clock": clock} if clock is not None else {}
        notifier = build_notifier(
            load_settings(**options),
            new_registry("notifier"),
            retry_policy=RetryPolicy(
                base_delay=timedelta(seconds=1),
                max_delay=timedelta(seconds=8),
                give_up_after=timedelta(hours=1),
            ),
            lease=timedelta(seconds=30),
            rng=random.Random(11),
            poll_interval_s=0.05,
            **kwargs,
        )
        built.append(notifier)
        return notifier

    yield make
    for notifier in built:
        notifier.close()
