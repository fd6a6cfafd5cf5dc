"""deploy/local: starts are idempotent, stops stop only what was started, and a broken start
ends at once with a one-line cause (not a hang)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script(name: str, action: str, env: dict[str, str], timeout: float = 120):
    return subprocess.run(
        [str(LOCAL / name), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cause_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("seatledger: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_kafka_start_on_a_port_taken_by_another_program_fails_at_once(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        result = script(
            "kafka.sh",
            "start",
            {
                "SEATLEDGER_KAFKA_PORT": str(port),
                "SEATLEDGER_KAFKA_CONTROLLER_PORT": str(free_port()),
                "SEATLEDGER_STATE_DIR": str(tmp_path / "state"),
            },
        )
    assert result.returncode == 1
    assert f"port {port} is in use by another program" in cause_line(result.stderr)
    assert time.monotonic() - started < 30


def test_postgres_start_on_a_port_taken_by_another_program_fails_at_once(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = script(
            "postgres.sh",
            "start",
            {
                "SEATLEDGER_PG_PORT": str(port),
                "SEATLEDGER_STATE_DIR": str(tmp_path / "state"),
                "SEATLEDGER_PG_DATA_DIR": str(tmp_path / "pgdata"),
            },
        )
    assert result.returncode == 1
    assert f"port {port} is in use by another program" in cause_line(result.stderr)
    assert not (tmp_path / "pgdata" / "PG_VERSION").exists()  # nothing was created


def test_a_failing_jar_download_stops_with_its_cause(tmp_path: Path) -> None:
    # Maven cannot write its local repository there, so no jar can be downloaded.
    result = script(
        "kafka.sh",
        "start",
        {
            "SEATLEDGER_KAFKA_PORT": str(free_port()),
            "SEATLEDGER_KAFKA_CONTROLLER_PORT": str(free_port()),
            "SEATLEDGER_CACHE_DIR": str(tmp_path / "cache"),
            "SEATLEDGER_STATE_DIR": str(tmp_path / "state"),
            "MAVEN_OPTS": "-Dmaven.repo.local=/proc/seatledger-no-such-repository",
        },
    )
    assert result.returncode == 1
    assert "downloading the Kafka jars failed" in cause_line(result.stderr)
    assert not list((tmp_path / "cache").glob("kafka/jars-*/.complete"))


def test_a_second_kafka_on_other_ports_starts_is_reused_and_stops_without_leftovers(
    tmp_path: Path,
) -> None:
    env = {
        "SEATLEDGER_KAFKA_PORT": str(free_port()),
        "SEATLEDGER_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SEATLEDGER_STATE_DIR": str(tmp_path / "state"),
        "SEATLEDGER_KAFKA_HEAP": "384m",
    }
    pom = hashlib.sha256((LOCAL / "kafka" / "pom.xml").read_bytes()).hexdigest()[:12]
    cached = (ROOT / ".cache" / "kafka" / f"jars-{pom}" / ".complete").exists()
    first = script("kafka.sh", "start", env)
    assert first.returncode == 0, first.stderr
    assert "Kafka ready" in first.stderr
    if cached:
        assert "downloading" not in first.stderr  # a second start downloads nothing
    pid = int((tmp_path / "state" / "kafka" / "kafka.pid").read_text())
    try:
        again = script("kafka.sh", "start", env)
        assert again.returncode == 0, again.stderr
        assert f"already running at 127.0.0.1:{env['SEATLEDGER_KAFKA_PORT']}" in again.stderr
    finally:
        stopped = script("kafka.sh", "stop", env)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert script("kafka.sh", "status", env).returncode == 3
