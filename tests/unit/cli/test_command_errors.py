"""Bad input on the command line: one line on stderr, a non-zero exit, nothing done."""

from __future__ import annotations

from pathlib import Path

import pytest

from seatledger.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seatledger: ")
    return lines[0]


def test_run_without_a_broker_says_so(capsys, monkeypatch) -> None:
    monkeypatch.delenv("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    code, err = run(capsys, "run", "ledger")
    assert code == 1
    assert "SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set" in one_line(err)


def test_run_without_a_database_says_so(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.delenv("SEATLEDGER_DATABASE_URL", raising=False)
    code, err = run(capsys, "run", "invoicer")
    assert code == 1
    assert "SEATLEDGER_DATABASE_URL is not set" in one_line(err)


def test_run_refuses_the_development_jwt_secret(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("SEATLEDGER_DATABASE_URL", "postgresql://u:p@127.0.0.1:1/db")
    monkeypatch.delenv("SEATLEDGER_JWT_SECRET", raising=False)
    code, err = run(capsys, "run", "ledger")
    assert code == 1
    assert "SEATLEDGER_JWT_SECRET" in one_line(err)


def test_an_unsupported_database_url_is_refused(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("SEATLEDGER_DATABASE_URL", "mysql://u:p@127.0.0.1/db")
    monkeypatch.setenv("SEATLEDGER_JWT_SECRET", "a-secret-of-at-least-thirty-two-characters")
    code, err = run(capsys, "run", "ledger")
    assert code == 1
    assert "unsupported database URL scheme 'mysql'" in one_line(err)


def test_the_demo_needs_a_fresh_data_folder(capsys, tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite").write_text("")
    code, err = run(capsys, "demo", "--data-dir", str(tmp_path))
    assert code == 1
    assert "is not empty" in one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]


def test_topics_ensure_without_a_broker_says_so(capsys, monkeypatch) -> None:
    monkeypatch.delenv("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    code, err = run(capsys, "topics", "ensure")
    assert code == 1
    assert "no broker" in one_line(err)


def test_an_unknown_service_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "billing"])
    assert exit_.value.code == 2
    assert "invalid choice: 'billing'" in capsys.readouterr().err
