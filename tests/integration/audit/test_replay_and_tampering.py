"""Auditing a history made by the real ledger and invoicer, on SQLite and on PostgreSQL.

One history per backend (thousands of events: purchases with and without quotes, renewals,
seat reductions, license changes) is built once for the module; each tampering test changes
the stores behind the services' backs, checks that ``replay`` or ``verify`` names what was
changed, and puts the stores back (``verify`` then passes again).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from seatledger.audit.chain import ChainKeeper, JsonLinesPublisher, read_checkpoint_file, verify
from seatledger.audit.export import is_invoice_issued
from seatledger.audit.records import decode_state, event_name
from seatledger.audit.replay import Difference, replay
from seatledger.audit.store import EventStore, StoredRow, open_store
from seatledger.billing import round_half_up, tax_amount
from seatledger.cli import main
from tests.integration.audit.history import History, build_history
from tests.integration.audit.tamper import delete_event, insert_event, rewrite_state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp(f"audit-{request.param}")
    if request.param == "sqlite":
        yield f"sqlite:///{folder / 'db'}", folder
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"sl_audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}")), folder
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def history(backend: tuple[str, Path]) -> History:
    database_url, folder = backend
    made = build_history(database_url, folder)
    # The services' run loops keep the chains extended; here once, at the end.
    for env, app in ((made.ledger_env, "ledger"), (made.invoicer_env, "invoicer")):
        keeper = ChainKeeper(
            open_store(env, app), publish=JsonLinesPublisher(folder / "published.jsonl")
        )
        keeper.extend()
        keeper.close()
    return made


@pytest.fixture
def stores(history: History) -> Iterator[tuple[EventStore, EventStore]]:
    ledger = open_store(history.ledger_env, "ledger")
    invoicer = open_store(history.invoicer_env, "invoicer")
    yield ledger, invoicer
    # Whatever a test changed was put back: both chains verify again.
    assert verify(ledger).ok
    assert verify(invoicer).ok
    ledger.close()
    invoicer.close()


def _cli(history: History, *args: str) -> int:
    return main(
        [
            "audit",
            *args,
            "--database-url",
            str(history.settings.database_url),
            "--data-dir",
            str(history.settings.data_dir),
        ]
    )


def _replay(ledger: EventStore, invoicer: EventStore) -> tuple[Any, list[Difference]]:
    found: list[Difference] = []
    result = replay(ledger, invoicer, report=found.append)
    return result, found


def _invoices(invoicer: EventStore) -> list[tuple[StoredRow, dict[str, Any]]]:
    return [
        (row, decode_state(row.state))
        for row in invoicer.iter_events()
        if is_invoice_issued(row.topic)
    ]


def _ledger_events(ledger: EventStore, name: str) -> list[StoredRow]:
    return [row for row in ledger.iter_events() if event_name(row.topic) == name]


def _invoice_of(invoicer: EventStore, cloud_id: str, kind: str) -> tuple[StoredRow, dict[str, Any]]:
    for row, state in _invoices(invoicer):
        if state["cloud_id"] == cloud_id and state["kind"] == kind:
            return row, state
    raise AssertionError("no such invoice")


# --------------------------------------------------------------------------------------------


def test_the_history_holds_thousands_of_events_of_every_kind(history, stores):
    ledger, invoicer = stores
    kinds: dict[str, int] = {}
    for row in ledger.iter_events():
        kinds[event_name(row.topic)] = kinds.get(event_name(row.topic), 0) + 1
    assert sum(kinds.values()) >= 2500
    assert kinds["SeatsIncreased"] >= 250
    assert kinds["PeriodRenewed"] >= 200
    assert kinds["LicenseAssigned"] + kinds["LicenseReleased"] >= 1500
    assert kinds["SeatReductionScheduled"] >= 50
    assert history.counts["quoted"] >= 50
    assert len(_invoices(invoicer)) == kinds["SeatsIncreased"] + kinds["PeriodRenewed"]


def test_replay_of_an_untouched_history_reports_no_difference(history, stores, capsys):
    ledger, invoicer = stores
    result, found = _replay(ledger, invoicer)
    assert found == []
    assert result.ok
    assert result.derived == result.issued == result.matched >= 450
    assert len(result.series) >= 2  # the history crosses a year end

    assert _cli(history, "replay", "--progress", "never") == 0
    out = capsys.readouterr().out
    assert "all invoices match" in out
    assert f"{result.matched} match" in out

    assert _cli(history, "replay", "--progress", "always", "--format", "jsonl") == 0
    captured = capsys.readouterr()
    assert "ledger (notification)" in captured.err  # the progress bar, on stderr
    summary = json.loads(captured.out.splitlines()[-1])["summary"]
    assert summary["ok"] is True
    assert summary["matched"] == result.matched


def test_an_altered_invoice_is_named_by_replay_and_by_verify(history, stores, capsys):
    ledger, invoicer = stores
    row, state = _invoice_of(invoicer, str(history.clouds[3]), "seat_purchase")
    number = state["number"]

    def raise_the_price(stored: dict[str, Any]) -> None:
        # A careful forger keeps the invoice consistent in itself.
        line = stored["lines"][0]["_data_"]
        line["amount"]["_data_"] = str(Decimal(line["amount"]["_data_"]) + 10)
        for key in ("net", "gross"):
            stored[key]["_data_"] = str(Decimal(stored[key]["_data_"]) + 10)

    undo = rewrite_state(history.invoicer_env, "invoicer", row.notification_id, raise_the_price)
    try:
        result, found = _replay(ledger, invoicer)
        assert [d.kind for d in found] == ["mismatch"]
        assert found[0].invoice_number == number
        assert "lines[1].amount" in found[0].message
        assert "net" in found[0].message
        assert not result.ok

        report = verify(invoicer)
        assert report.first is not None
        assert report.first.kind == "changed"
        assert report.first.originator_id == row.originator_id

        assert _cli(history, "replay", "--progress", "never") == 1
        assert f"mismatch: invoice {number}" in capsys.readouterr().out
        assert _cli(history, "explain", number) == 1
        assert "DIFFERENCES" in capsys.readouterr().out
    finally:
        undo()


def test_an_altered_ledger_event_payload_is_named_by_replay_and_by_verify(history, stores):
    ledger, invoicer = stores
    purchase = _ledger_events(ledger, "SeatsIncreased")[17]

    def one_seat_more(stored: dict[str, Any]) -> None:
        stored["seats_after"] += 1

    undo = rewrite_state(history.ledger_env, "ledger", purchase.notification_id, one_seat_more)
    try:
        _, found = _replay(ledger, invoicer)
        assert [d.kind for d in found] == ["mismatch"]
        assert found[0].cloud_id == purchase.originator_id
        assert "lines[1].quantity" in found[0].message
        assert f"ledger event {purchase.notification_id}" in found[0].message

        report = verify(ledger)
        assert report.first is not None
        assert report.first.kind == "changed"
        assert report.first.notification_id == purchase.notification_id
        assert "SeatsIncreased" in report.first.message
    finally:
        undo()


def test_a_deleted_ledger_event_is_named_by_replay_and_by_verify(history, stores):
    ledger, invoicer = stores
    purchase = _ledger_events(ledger, "SeatsIncreased")[40]
    undo = delete_event(history.ledger_env, "ledger", purchase.notification_id)
    try:
        _, found = _replay(ledger, invoicer)
        assert [d.kind for d in found] == ["unjustified"]
        assert found[0].cloud_id == purchase.originator_id

        report = verify(ledger)
        assert report.first is not None
        assert report.first.kind == "removed"
        assert report.first.notification_id == purchase.notification_id
        assert report.first.originator_version == purchase.originator_version
    finally:
        undo()


def test_an_invoice_inserted_directly_is_named_by_replay(history, stores):
    ledger, invoicer = stores
    row, state = _invoices(invoicer)[-1]
    number = state["number"]
    prefix, year, serial = number.rsplit("-", 2)
    forged_number = f"{prefix}-{year}-{int(serial) + 1:06d}"
    forged_id = uuid.uuid4()
    forged = json.loads(row.state)
    forged["invoice_id"]["_data_"] = forged_id.hex
    forged["number"] = forged_number
    undo = insert_event(
        history.invoicer_env,
        "invoicer",
        str(forged_id),
        1,
        row.topic,
        json.dumps(forged, separators=(",", ":")).encode(),
    )
    try:
        _, found = _replay(ledger, invoicer)
        kinds = sorted(d.kind for d in found)
        assert kinds == ["number", "unjustified"]
        unjustified = next(d for d in found if d.kind == "unjustified")
        assert unjustified.invoice_number == forged_number
        assert unjustified.invoice_id == str(forged_id)
        series = next(d for d in found if d.kind == "number")
        assert f"series {prefix}-{year}" in series.message  # the series never took that number

        # Beyond the chain's head, the chain cannot tell it from a new invoice; verify says
        # that one event is not chained yet.
        assert verify(invoicer).unchained == 1
    finally:
        undo()


def test_a_ledger_event_inserted_directly_is_named_by_replay(history, stores):
    ledger, invoicer = stores
    cloud_id = str(history.clouds[5])
    events = ledger.events_of(cloud_id)
    template = next(r for r in reversed(events) if event_name(r.topic) == "SeatsIncreased")
    forged = json.loads(template.state)
    forged["originator_version"] = events[-1].originator_version + 1
    undo = insert_event(
        history.ledger_env,
        "ledger",
        cloud_id,
        events[-1].originator_version + 1,
        template.topic,
        json.dumps(forged, separators=(",", ":")).encode(),
    )
    try:
        _, found = _replay(ledger, invoicer)
        assert [d.kind for d in found] == ["missing"]
        assert found[0].cloud_id == cloud_id
        assert "never invoiced" in found[0].message
    finally:
        undo()


def test_state_as_of_matches_the_ledger_api_for_random_instants(history, stores, capsys):
    from fastapi.testclient import TestClient

    from seatledger.auth import mint_token
    from seatledger.metrics import new_registry
    from services.ledger.bootstrap import build_ledger, create_ledger_app

    registry = new_registry("ledger")
    # The API's clock stands at the end of the recorded history: an ``as_of`` after now is
    # answered with the state now, and the history may lie after the machine's clock.
    components = build_ledger(history.settings, registry, clock=lambda: history.last)
    client = TestClient(create_ledger_app(components, registry))
    token = mint_token(history.settings, subject="auditor-1", scopes=("billing:audit",))
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(20260301)
    span = (history.last - history.first).total_seconds()
    try:
        for _ in range(25):
            cloud_id = str(rng.choice(history.clouds))
            instant = history.first + timedelta(seconds=rng.uniform(1, span))
            as_of = instant.isoformat()
            response = client.get(
                f"/v1/clouds/{cloud_id}", params={"as_of": as_of}, headers=headers
            )
            assert response.status_code == 200, response.text
            capsys.readouterr()  # the API's request log
            assert _cli(history, "state", cloud_id, "--as-of", as_of, "--format", "json") == 0
            assert json.loads(capsys.readouterr().out) == response.json()
    finally:
        components.close()


def test_state_before_a_cloud_existed_is_a_one_line_error(history, stores, capsys):
    cloud_id = str(history.clouds[0])
    before = (history.first - timedelta(days=1)).isoformat()
    assert _cli(history, "state", cloud_id, "--as-of", before) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "did not exist" in err


def test_explain_recomputes_the_stored_amounts(history, stores, capsys):
    _, invoicer = stores
    chosen = []
    quoted = renewal = plain = 0
    for _row, state in _invoices(invoicer):
        description = state["lines"][0]["description"]
        if state["kind"] == "renewal" and renewal < 3:
            renewal += 1
        elif "quote" in description.lower() or "angebot" in description.lower():
            if quoted >= 3:
                continue
            quoted += 1
        elif plain < 4:
            plain += 1
        else:
            continue
        chosen.append(state)
    assert (renewal, quoted, plain) == (3, 3, 4)
    for state in chosen:
        assert _cli(history, "explain", state["number"], "--format", "json") == 0
        explained = json.loads(capsys.readouterr().out)
        assert explained["ok"] is True
        assert explained["differences"] == []
        assert explained["caused_by"]["event"]["type"] in ("SeatsIncreased", "PeriodRenewed")
        currency = state["currency"]
        stored_line = state["lines"][0]
        line = explained["lines"][0]
        # The arithmetic shown is the arithmetic of the stored invoice.
        exact = (
            Decimal(line["quantity"])
            * Decimal(line["unit_price"])
            * line["remaining_days"]
            / line["period_days"]
        )
        assert Decimal(line["unrounded"]) == exact
        assert Decimal(line["rounded"]) == round_half_up(exact, currency)
        assert Decimal(line["issued_amount"]) == Decimal(stored_line["amount"])
        assert Decimal(line["charged"]) == Decimal(stored_line["amount"])
        totals = explained["totals"]
        assert Decimal(totals["net"]) == Decimal(state["net"])
        assert Decimal(totals["tax"]) == tax_amount(
            Decimal(state["net"]), Decimal(state["tax_rate"]), currency
        )
        assert Decimal(totals["tax"]) == Decimal(state["tax"])
        assert Decimal(totals["gross"]) == Decimal(state["gross"])
    assert _cli(history, "explain", "SL-1999-000001") == 1
    assert "no issued invoice" in capsys.readouterr().err


def test_history_lists_every_event_of_a_cloud(history, stores, capsys):
    ledger, _ = stores
    cloud_id = str(history.clouds[2])
    assert _cli(history, "history", cloud_id, "--format", "jsonl") == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["version"] for x in lines] == [
        r.originator_version for r in ledger.events_of(cloud_id)
    ]
    assert lines[0]["type"] == "ContractOpened"
    assert all(x["time"] and x["actor"] for x in lines)
    assert _cli(history, "history", cloud_id) == 0
    assert "ContractOpened" in capsys.readouterr().out


def test_export_of_a_period_with_the_chain_heads(history, stores, tmp_path, capsys):
    ledger, _ = stores
    start = history.first + timedelta(days=60)
    end = history.first + timedelta(days=150)
    folder = tmp_path / "export"
    assert (
        _cli(
            history,
            "export",
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            "--output",
            str(folder),
        )
        == 0
    )
    capsys.readouterr()
    manifest = json.loads((folder / "manifest.json").read_text())
    expected_events = [row for row in ledger.iter_events() if start <= _time_of(row) < end]
    exported = [json.loads(x) for x in (folder / "ledger-events.jsonl").read_text().splitlines()]
    assert [e["notification_id"] for e in exported] == [r.notification_id for r in expected_events]
    assert manifest["stores"]["ledger"]["exported"] == len(expected_events)
    head, _ = ledger.chain_head()
    assert head is not None
    assert manifest["stores"]["ledger"]["chain"]["head_hash"] == head.chain_hash.hex()
    assert all(len(e["chain_hash"]) == 64 for e in exported)
    with (folder / "ledger-events.csv").open() as source:
        assert len(list(csv.DictReader(source))) == len(expected_events)
    invoices = [json.loads(x) for x in (folder / "invoices.jsonl").read_text().splitlines()]
    assert invoices
    with (folder / "invoice-lines.csv").open() as source:
        rows = list(csv.DictReader(source))
    assert {r["invoice_number"] for r in rows} == {i["number"] for i in invoices}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    published = read_checkpoint_file(history.settings.data_dir / "published.jsonl", "ledger")
    assert published[-1].head_hash == head.chain_hash.hex()


def _time_of(row: StoredRow) -> Any:
    from seatledger.audit.records import to_record

    return to_record(row).timestamp
