"""Throughput of the ledger's license commands through HTTP, on PostgreSQL.

    .venv/bin/python benchmarks/ledger_http.py [--requests 20000] [--connections 32] [--workers 1]

What it does:

1. creates a fresh PostgreSQL database (``SEATLEDGER_TEST_DATABASE_URL`` or the local default),
2. starts the ledger (``services.ledger.bootstrap.serve_ledger``) in its own process on
   127.0.0.1, with its ordinary logging (one JSON line per request, to a file),
3. opens ``--clouds`` clouds, then drives a bounded number of license commands (assign, then
   release, alternating per user) from ANOTHER process over keep-alive HTTP/1.1 connections,
4. prints requests/s, latency percentiles and the server's own metrics (commands per save),
   then stops the server and drops the database.

It is a measurement script, not a test. The target on 2 cores: >= 1,000 license commands/s
with p99 < 100 ms, reached through group commit (many commands per ``save()``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "benchmark-secret-0123456789abcdef0123456789"
RUN = uuid.uuid4().hex[:6]
DEFAULT_ADMIN_URL = "postgresql://seatledger:seatledger@127.0.0.1:5432/seatledger"


# ------------------------------------------------------------------------------------------
# Server process.


def serve(port: int, workers: int) -> None:
    from seatledger.config import load_settings
    from services.ledger.bootstrap import serve_ledger

    settings = load_settings(http_port=port, http_host="127.0.0.1")
    serve_ledger(settings, scheduler=False, workers=workers)


# ------------------------------------------------------------------------------------------
# Load driver process: keep-alive HTTP/1.1 over asyncio streams (a small client, so the
# driver costs less CPU than the server it measures).


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, body


def _raw(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        "Connection: keep-alive",
    ]
    if body or method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _drive(
    port: int, token: str, clouds: list[str], requests: int, connections: int
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(requests))

    async def worker(w: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        held: list[tuple[str, str]] = []
        try:
            for i in counter:
                cloud = clouds[(w + i) % len(clouds)]
                if held and (i % 2 == 1):
                    cloud, user = held.pop()
                    raw = _raw("DELETE", f"/v1/clouds/{cloud}/licenses/{user}", token)
                else:
                    user = f"u-{RUN}-{w}-{i}"
                    body = json.dumps({"user_id": user, "rights_group": "employee"}).encode()
                    raw = _raw("POST", f"/v1/clouds/{cloud}/licenses", token, body)
                    held.append((cloud, user))
                started = time.perf_counter()
                status, _ = await _request(reader, writer, raw)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 2),
        "p95_ms": round(pct(0.95), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "statuses": statuses,
    }


def drive(args: argparse.Namespace) -> None:
    clouds = json.loads(Path(args.clouds_file).read_text())
    result = asyncio.run(_drive(args.port, args.token, clouds, args.requests, args.connections))
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------
# Orchestration.


def _python() -> list[str]:
    profile = os.environ.get("LEDGER_BENCH_PROFILE")
    return [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--workers", type=int, default=1)
    d = sub.add_parser("drive")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--token", required=True)
    d.add_argument("--clouds-file", required=True)
    d.add_argument("--requests", type=int, required=True)
    d.add_argument("--connections", type=int, required=True)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--clouds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="ledger processes (uvicorn workers)")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port, args.workers)
        return 0
    if args.mode == "drive":
        drive(args)
        return 0
    return orchestrate(args)


def orchestrate(args: argparse.Namespace) -> int:
    import httpx
    import psycopg
    from psycopg import sql

    from seatledger.auth import mint_token
    from seatledger.config import load_settings

    admin_url = os.environ.get("SEATLEDGER_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    name = f"sl_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sl-bench-"))
    env = {
        **os.environ,
        "SEATLEDGER_DATABASE_URL": database_url,
        "SEATLEDGER_JWT_SECRET": SECRET,
        "SEATLEDGER_DATA_DIR": str(workdir),
        "SEATLEDGER_LOG_LEVEL": os.environ.get("LEDGER_BENCH_LOG_LEVEL", "INFO"),
    }
    env.pop("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS", None)
    log_path = workdir / "server.log"
    server = subprocess.Popen(
        [*_python(), __file__, "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
        cwd=ROOT,
    )
    settings = load_settings(jwt_secret=SECRET, database_url=database_url)
    admin = mint_token(settings, subject="bench-admin", scopes=["billing:admin"], ttl_s=3600)
    provisioner = mint_token(
        settings, subject="bench-provisioner", scopes=["billing:licenses"], ttl_s=3600
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print(log_path.read_text(), file=sys.stderr)
                    raise SystemExit("the ledger did not become ready")
                time.sleep(0.1)
            clouds = []
            for i in range(args.clouds):
                response = client.post(
                    "/v1/clouds",
                    headers={"Authorization": f"Bearer {admin}"},
                    json={
                        "name": f"Bench {i}",
                        "owner_id": f"owner-{i}",
                        "billing_email": "billing@bench.example",
                        "currency": "EUR",
                        "seat_price": "10.00",
                        "billing_period": "monthly",
                        "term_start": "2026-01-01",
                        "time_zone": "Europe/Berlin",
                        "tax_rate": "19",
                        "locale": "en",
                        "seats": 100000,
                    },
                )
                response.raise_for_status()
                clouds.append(response.json()["cloud_id"])
        clouds_file = workdir / "clouds.json"
        clouds_file.write_text(json.dumps(clouds))

        def run_driver(requests: int) -> dict[str, Any]:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "drive",
                    "--port",
                    str(port),
                    "--token",
                    provisioner,
                    "--clouds-file",
                    str(clouds_file),
                    "--requests",
                    str(requests),
                    "--connections",
                    str(args.connections),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            parsed: dict[str, Any] = json.loads(out.stdout)
            return parsed

        if args.warmup:
            run_driver(args.warmup)
        cpu_before = _cpu_seconds(server.pid)
        result = run_driver(args.requests)
        server_cpu = _cpu_seconds(server.pid) - cpu_before
        with httpx.Client(base_url=base, timeout=30) as client:
            metrics = client.get("/metrics").text
        saves = _metric(metrics, "seatledger_ledger_commands_per_save_count")
        commands = _metric(metrics, "seatledger_ledger_commands_per_save_sum")
        conflicts = _metric(metrics, "seatledger_ledger_concurrency_conflicts_total")
        print(f"ledger HTTP benchmark on PostgreSQL ({os.cpu_count()} CPUs)")
        print(
            f"  {result['requests']} license commands over {args.connections} connections "
            f"in {result['seconds']} s"
        )
        print(f"  throughput: {result['per_second']} commands/s")
        print(
            f"  latency: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
            f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
        )
        print(f"  statuses: {result['statuses']}")
        if args.workers == 1 and server_cpu > 0:
            print(
                f"  server CPU: {server_cpu:.1f} s, "
                f"{1000 * server_cpu / result['requests']:.2f} ms per command "
                f"(capacity of one core: {result['requests'] / server_cpu:.0f}/s)"
            )
        print(f"  load average during the run: {os.getloadavg()[0]:.1f}")
        if saves:
            print(
                f"  group commit: {commands:.0f} commands in {saves:.0f} saves "
                f"({commands / saves:.1f} per save); conflicts {conflicts:.0f}"
            )
        ok = result["per_second"] >= 1000 and result["p99_ms"] < 100
        print(f"  target (>= 1000/s, p99 < 100 ms): {'met' if ok else 'NOT met'}")
        return 0
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
