"""The pure rules of the replay and the chain: how differences are named, how numbers are
read, how the chain is computed."""

from __future__ import annotations

from seatledger.audit.chain import event_digest, genesis, link_rows, next_hash
from seatledger.audit.replay import compare, parse_number
from seatledger.audit.store import StoredRow


def test_compare_names_each_differing_field_with_both_values():
    issued = {"net": "10.00", "lines": [{"amount": "10.00", "quantity": 2}], "currency": "EUR"}
    derived = {"net": "12.00", "lines": [{"amount": "12.00", "quantity": 2}], "currency": "EUR"}
    assert list(compare(issued, derived)) == [
        'lines[1].amount: issued "10.00", re-derived "12.00"',
        'net: issued "10.00", re-derived "12.00"',
    ]


def test_compare_treats_equal_decimals_as_equal_whatever_their_notation():
    assert list(compare({"amount": "10.0", "tax": "1.90"}, {"amount": "10.00", "tax": "1.9"})) == []
    assert list(compare({"description": "10.0"}, {"description": "10.00"})) != []


def test_compare_reports_missing_and_extra_lines():
    differences = list(compare({"lines": [{"amount": "1"}]}, {"lines": []}))
    assert differences[0] == "lines: 1 issued, 0 re-derived"


def test_invoice_numbers_are_prefix_year_and_six_digits():
    assert parse_number("SL-2026-000042") == ("SL", 2026, 42)
    assert parse_number("ACME1-2027-999999") == ("ACME1", 2027, 999999)
    for malformed in ("SL-2026-42", "SL-26-000042", "2026-000042", "", None, "SL-2026-00004x"):
        assert parse_number(malformed) is None


def test_the_chain_of_each_store_starts_from_its_own_genesis():
    assert genesis("ledger") != genesis("invoicer")
    row = StoredRow(1, "00000000-0000-0000-0000-000000000001", 1, "m:A.B", b"{}")
    assert (
        link_rows("ledger", None, [row])[0].chain_hash
        != link_rows("invoicer", None, [row])[0].chain_hash
    )


def test_extending_a_chain_in_pieces_gives_the_same_head_as_in_one_go():
    rows = [
        StoredRow(n, "00000000-0000-0000-0000-000000000001", n, "m:A.B", f'{{"n":{n}}}'.encode())
        for n in range(1, 11)
    ]
    whole = link_rows("ledger", None, rows)
    first = link_rows("ledger", None, rows[:4])
    rest = link_rows("ledger", first[-1].chain_hash, rows[4:])
    assert [*first, *rest] == whole
    head = genesis("ledger")
    for row in rows:
        head = next_hash(head, event_digest(row))
    assert head == whole[-1].chain_hash
