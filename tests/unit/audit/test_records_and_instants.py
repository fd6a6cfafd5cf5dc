"""Reading stored events without the services' code, and the instants the CLI accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from seatledger.audit.records import UndecodableEvent, decode_state, event_name, to_record
from seatledger.audit.store import StoredRow, canonical_id
from seatledger.cli import CommandError
from seatledger.commands.audit import parse_instant


def test_transcoded_values_are_unwrapped_to_plain_json():
    state = (
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-03-01T10:00:00+00:00"},'
        b'"originator_id":{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"},'
        b'"originator_version":2,"net":{"_type_":"decimal_str","_data_":"19.99"},'
        b'"terms":{"_type_":"ledger_terms","_data_":{"term_start":'
        b'{"_type_":"date_iso","_data_":"2026-01-31"}}},'
        b'"actor":{"_type_":"ledger_actor","_data_":{"kind":"user","id":"u1"}}}'
    )
    row = StoredRow(5, "01234567-89ab-cdef-0123-456789abcdef", 2, "m:Cloud.SeatsIncreased", state)
    record = to_record(row)
    assert record.type == "SeatsIncreased"
    assert record.timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert record.data == {
        "net": "19.99",
        "terms": {"term_start": "2026-01-31"},
        "actor": {"kind": "user", "id": "u1"},
    }
    assert record.actor == "user:u1"


def test_a_state_that_is_not_json_is_refused_clearly():
    with pytest.raises(UndecodableEvent):
        decode_state(b"\x78\x9c compressed")


def test_event_names_come_from_the_topic():
    assert event_name("services.ledger.domain:Cloud.PeriodRenewed") == "PeriodRenewed"
    assert event_name("services.invoicer.domain.model:Invoice.Issued") == "Issued"


def test_ids_are_compared_in_their_canonical_form():
    assert (
        canonical_id("0123456789abcdef0123456789abcdef") == "01234567-89ab-cdef-0123-456789abcdef"
    )
    assert canonical_id("not-a-uuid") == "not-a-uuid"


def test_instants_need_an_offset_and_dates_mean_utc_midnight():
    assert parse_instant("2026-03-01T12:00:00Z") == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert parse_instant("2026-03-01T12:00:00+01:00") == datetime(
        2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=1))
    )
    assert parse_instant("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_instant("2026-03-01", end_of_day=True) == datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(CommandError, match="no UTC offset"):
        parse_instant("2026-03-01T12:00:00")
    with pytest.raises(CommandError, match="neither"):
        parse_instant("yesterday")
