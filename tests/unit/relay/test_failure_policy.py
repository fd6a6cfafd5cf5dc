"""Which failures are outages (retried without bound, never dead-lettered) and which are the
message's own (retried a bounded number of times, then dead-lettered): the rule shared by the
Kafka consumer, the notification-log follower and the relay."""

from __future__ import annotations

import sqlite3
from decimal import InvalidOperation

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException
from eventsourcing import persistence

from seatledger.billing import PeriodError
from seatledger.consumer import (
    DeadLetterUnavailable,
    FailureCount,
    RetryPolicy,
    is_outage,
)
from seatledger.tracking import ConcurrencyConflict
from services.invoicer.application import RetriesExhaustedError


def _raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as raised:
        return raised


OUTAGES = [
    OSError("network unreachable"),
    ConnectionRefusedError(111, "connection refused"),
    TimeoutError("timed out"),
    KafkaException(KafkaError(KafkaError._TRANSPORT)),
    persistence.OperationalError("server closed the connection unexpectedly"),
    persistence.InterfaceError("connection already closed"),
    persistence.IntegrityError("duplicate key: another writer was first"),
    psycopg.OperationalError("connection failed"),
    psycopg.InterfaceError("the connection is closed"),
    sqlite3.OperationalError("database is locked"),
    ConcurrencyConflict("another writer changed the series"),
    RetriesExhaustedError("50 concurrency conflicts in a row"),
    DeadLetterUnavailable("dead-letter not acknowledged"),
    _raised_from(RuntimeError("store failed"), psycopg.OperationalError("connection lost")),
]

MESSAGE_FAILURES = [
    ValueError("year 10000 is out of range"),
    OverflowError("date value out of range"),
    PeriodError("a date outside the periods of the contract"),
    InvalidOperation([InvalidOperation]),
    KeyError("seats"),
    TypeError("unsupported operand"),
    RuntimeError("a bug"),
    persistence.DataError("value too long"),
    psycopg.DataError("invalid byte sequence"),
    sqlite3.DataError("string or blob too big"),
    _raised_from(ValueError("bad"), KeyError("k")),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_an_unreachable_or_contended_store_or_broker_is_an_outage(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize("exc", MESSAGE_FAILURES, ids=lambda e: type(e).__name__)
def test_a_failure_of_the_message_itself_is_not_an_outage(exc: BaseException) -> None:
    assert not is_outage(exc)


def test_only_failures_that_are_not_outages_use_up_the_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    count = FailureCount()
    for _ in range(100):
        assert count.add(psycopg.OperationalError("down"))
    assert not count.exhausted(policy)
    assert not count.add(ValueError("poison"))
    assert not count.add(ValueError("poison"))
    assert not count.exhausted(policy)
    assert not count.add(ValueError("poison"))
    assert count.exhausted(policy)
    assert count.failures == 103
    assert count.attempts == 3
    assert "poison" in count.last_error


def test_the_backoff_grows_to_its_bound_and_attempts_are_at_least_one() -> None:
    policy = RetryPolicy(initial_s=0.1, max_s=1.0, factor=2.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 50)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
