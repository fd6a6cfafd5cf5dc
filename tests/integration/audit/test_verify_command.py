"""``seatledger audit seal`` and ``verify`` from the command line, on both backends."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from seatledger.cli import main
from seatledger.persistence import application_env, ensure_postgres_schema
from tests.integration.audit.tamper import execute

pytestmark = pytest.mark.integration


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Edited")
    def edit(self, text: str) -> None:
        self.text = text


class Notes(Application[UUID]):
    name = "ledger"


def _cli(args: list[str], database_url: str, tmp_path: Path) -> int:
    return main(["audit", *args, "--database-url", database_url, "--data-dir", str(tmp_path)])


def test_seal_then_verify_passes_and_a_forged_payload_fails_by_name(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    env = application_env(database_url, "ledger", tmp_path)
    ensure_postgres_schema(env)
    app = Notes(env=env)
    note = Note(text="first")
    note.edit(text="second")
    app.save(note)
    app.close()
    published = tmp_path / "published.jsonl"

    assert (
        _cli(
            ["seal", "--app", "ledger", "--checkpoint-file", str(published)], database_url, tmp_path
        )
        == 0
    )
    sealed = json.loads(capsys.readouterr().out)
    assert sealed["app"] == "ledger"
    assert sealed["events"] == 2

    assert (
        _cli(["verify", "--app", "ledger", "--checkpoints", str(published)], database_url, tmp_path)
        == 0
    )
    out = capsys.readouterr().out
    assert "ledger: OK" in out
    assert "matches" in out

    execute(
        env,
        "ledger",
        "UPDATE {events} SET state = CAST(replace(CAST(state AS TEXT), 'second', 'forged') "
        "AS BLOB) WHERE originator_version = 2"
        if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
        else "UPDATE {events} SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'second', 'forged'), 'UTF8') WHERE originator_version = 2",
    )
    assert (
        _cli(
            ["verify", "--app", "ledger", "--format", "json", "--checkpoints", str(published)],
            database_url,
            tmp_path,
        )
        == 1
    )
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    first = report["findings"][0]
    assert first["kind"] == "changed"
    assert first["aggregate_id"] == str(note.id)
    assert first["version"] == 2
    assert report["last_checkpoint"]["matches"] is False


def test_verify_of_a_missing_store_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    status = main(
        [
            "audit",
            "verify",
            "--app",
            "ledger",
            "--data-dir",
            str(tmp_path / "none"),
            "--database-url",
            f"sqlite:///{tmp_path / 'none'}",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no ledger event store" in err


def test_verify_refuses_an_unreadable_checkpoint_file(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert _cli(["verify", "--checkpoints", str(bad)], database_url, tmp_path) == 1
    assert "not a checkpoint" in capsys.readouterr().err
