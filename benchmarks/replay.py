"""Replay on PostgreSQL vs. a plain SELECT that reads and JSON-decodes the same rows.

    .venv/bin/python benchmarks/replay.py                     # 1,000,000 ledger events
    .venv/bin/python benchmarks/replay.py --events 50000      # a quick run

1. Creates a scratch database (dropped afterwards unless ``--keep``) and fills the ledger's
   store with the real domain code: ``Cloud`` aggregates opened, licenses assigned and
   released, seats bought, periods renewed, saved many aggregates per ``save()``. The real
   invoicer then issues the invoices by following the ledger's log (the embedded path).
2. Measures, each in a fresh process (so peak memory is the measurement's own):
   - ``plain``: ``SELECT notification_id, originator_id, originator_version, topic, state FROM
     ledger.ledger_events ORDER BY notification_id`` through a server-side cursor, every
     ``state`` JSON-decoded;
   - ``replay``: ``seatledger.audit.replay.replay`` over the same store and the invoicer's,
     i.e. the whole audit: every invoice re-derived and compared, numbers checked.
3. Prints both rates (ledger events per second), their ratio and each peak RSS. Targets:
   replay >= 1/3 of the plain rate, replay peak < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql://seatledger:seatledger@127.0.0.1:5432/seatledger"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# 1. The history.


def generate(database_url: str, events: int, seed: int) -> dict[str, int]:
    import logging

    import structlog
    from eventsourcing.utils import get_topic

    from schemas.registry import check_cloud_event
    from seatledger.persistence import application_env, ensure_postgres_schema
    from seatledger.tracking import Position
    from services.invoicer.application import InvoicerApplication
    from services.invoicer.handlers import LedgerEventHandler
    from services.ledger.application import Ledger
    from services.ledger.contract import to_cloud_event
    from services.ledger.domain import Actor, Cloud, ContractTerms, LedgerError

    # The invoicer logs every invoice; that is not what is measured here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rng = random.Random(seed)
    data_dir = Path("/tmp")
    ledger_env = application_env(database_url, "ledger", data_dir)
    invoicer_env = application_env(database_url, "invoicer", data_dir)
    ensure_postgres_schema(ledger_env)
    ensure_postgres_schema(invoicer_env)
    ledger = Ledger(env=ledger_env)
    now = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    invoicer = InvoicerApplication(invoicer_env, clock=lambda: now)
    handler = LedgerEventHandler(invoicer)
    # Only purchases and renewals cause invoices. The embedded follower would also record the
    # position of every other event, one transaction each, which is not what is measured here;
    # the invoices themselves are issued by the invoicer's own handler and application.
    billing_topics = [get_topic(Cloud.SeatsIncreased), get_topic(Cloud.PeriodRenewed)]
    invoiced_up_to = 0

    def issue_invoices() -> None:
        nonlocal invoiced_up_to
        while True:
            notifications = ledger.recorder.select_notifications(
                start=invoiced_up_to,
                limit=1000,
                topics=billing_topics,
                inclusive_of_start=False,
            )
            if not notifications:
                return
            for notification in notifications:
                cloud_event = to_cloud_event(ledger.mapper.to_domain_event(notification))
                assert cloud_event is not None
                parsed = check_cloud_event(cloud_event)
                handler(parsed.cloud_event, parsed.data, Position("ledger", notification.id))
                invoiced_up_to = notification.id

    clouds_n = max(10, events // 500)
    rounds = max(1, events // clouds_n)
    step = timedelta(days=365 / rounds)
    zones = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo")
    currencies = (("EUR", "19.00", "19"), ("USD", "12.50", "0"), ("JPY", "1500", "10"))
    clouds: list[Cloud] = []
    for n in range(clouds_n):
        currency, price, tax = currencies[n % len(currencies)]
        terms = ContractTerms(
            name=f"Customer {n}",
            owner_id=f"owner-{n}",
            billing_email=f"billing{n}@customer.example",
            currency=currency,
            seat_price=Decimal(price),
            billing_period="monthly",
            term_start=date(2025, 1, 1) + timedelta(days=n % 28),
            time_zone=zones[n % len(zones)],
            tax_rate=Decimal(tax),
            locale="de" if n % 2 else "en",
        )
        clouds.append(
            Cloud.open(
                cloud_id=uuid.uuid4(),
                terms=terms,
                seats=rng.randint(20, 60),
                licensed_rights_groups=("admin", "employee"),
                actor=Actor("user", "admin"),
                at=now,
            )
        )
    ledger.save(*clouds)
    counts = {"clouds": clouds_n, "purchases": 0, "license_changes": 0}
    users = 0
    owner = Actor("user", "owner")
    started = time.monotonic()
    for round_number in range(rounds):
        now += step
        for cloud in clouds:
            cloud.renew_due(at=now)
            roll = rng.random()
            try:
                if roll < 0.01:
                    cloud.increase_seats(seats=cloud.seats + rng.randint(1, 5), actor=owner, at=now)
                    counts["purchases"] += 1
                elif cloud.licenses and (roll < 0.45 or cloud.licenses_free == 0):
                    user = rng.choice(list(cloud.licenses))
                    cloud.release_license(user_id=user, actor=owner, at=now)
                    counts["license_changes"] += 1
                else:
                    users += 1
                    cloud.assign_license(
                        user_id=f"user-{users}",
                        rights_group=rng.choice(("admin", "employee")),
                        actor=owner,
                        at=now,
                    )
                    counts["license_changes"] += 1
            except LedgerError:
                pass
        ledger.save(*clouds)
        if round_number % 50 == 49 or round_number == rounds - 1:
            issue_invoices()
            total = ledger.recorder.max_notification_id() or 0
            rate = total / (time.monotonic() - started)
            _log(f"  {total:,} ledger events stored ({rate:,.0f}/s, invoices issued as we go)")
    counts["ledger_events"] = ledger.recorder.max_notification_id() or 0
    counts["invoicer_events"] = invoicer.recorder.max_notification_id() or 0
    invoicer.close()
    ledger.close()
    return counts


# --------------------------------------------------------------------------------------------
# 2. The measurements (each run in a process of its own).


def measure_plain(database_url: str) -> dict[str, float]:
    import psycopg

    started = time.perf_counter()
    rows = 0
    with psycopg.connect(database_url) as conn, conn.cursor(name="plain") as cursor:
        cursor.itersize = 2000
        cursor.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM ledger.ledger_events ORDER BY notification_id"
        )
        decode = json.JSONDecoder().decode
        while batch := cursor.fetchmany(2000):
            for _nid, _oid, _version, _topic, state in batch:
                decode(bytes(state).decode("utf-8"))
                rows += 1
    elapsed = time.perf_counter() - started
    return {"rows": rows, "seconds": elapsed, "peak_mb": _peak_mb()}


def measure_replay(database_url: str) -> dict[str, float]:
    # Start-up (importing the services' code) is not throughput: done before the clock runs.
    import schemas.registry
    import services.invoicer.domain
    import services.ledger.application
    import services.ledger.contract
    from seatledger.audit.replay import replay
    from seatledger.audit.store import open_store
    from seatledger.persistence import application_env

    del schemas.registry, services.invoicer.domain, services.ledger.application
    del services.ledger.contract
    ledger = open_store(application_env(database_url, "ledger", Path("/tmp")), "ledger")
    invoicer = open_store(application_env(database_url, "invoicer", Path("/tmp")), "invoicer")
    differences: list[str] = []
    started = time.perf_counter()
    result = replay(ledger, invoicer, report=lambda d: differences.append(d.message))
    elapsed = time.perf_counter() - started
    ledger.close()
    invoicer.close()
    return {
        "rows": result.ledger_events,
        "seconds": elapsed,
        "peak_mb": _peak_mb(),
        "billing_events": result.billing_events,
        "invoices_issued": result.issued,
        "matched": result.matched,
        "differences": result.differences,
    }


def _measure_in_child(kind: str, database_url: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--database-url", database_url],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="ledger events to store")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SEATLEDGER_BENCH_DATABASE_URL", DEFAULT_URL),
        help="a PostgreSQL URL whose role may create databases (a scratch database is made)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="measure --database-url as it is")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--measure", choices=["plain", "replay"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure == "plain":
        print(json.dumps(measure_plain(args.database_url)))
        return 0
    if args.measure == "replay":
        print(json.dumps(measure_replay(args.database_url)))
        return 0

    import psycopg
    from psycopg import sql

    if args.reuse:
        url = args.database_url
        name = None
    else:
        name = f"sl_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = urlunsplit(urlsplit(args.database_url)._replace(path=f"/{name}"))
    try:
        if not args.reuse:
            _log(f"generating about {args.events:,} ledger events in database {name}")
            counts = generate(url, args.events, args.seed)
            _log(f"generated: {counts}")
        _log("measuring the plain SELECT + JSON decode")
        plain = _measure_in_child("plain", url)
        _log("measuring the replay")
        replayed = _measure_in_child("replay", url)
    finally:
        if name is not None and not args.keep:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        elif name is not None:
            _log(f"kept {url} (measure again with --reuse --database-url ...)")

    plain_rate = plain["rows"] / plain["seconds"]
    replay_rate = replayed["rows"] / replayed["seconds"]
    ratio = replay_rate / plain_rate
    print(f"ledger events:            {int(plain['rows']):,}")
    print(
        f"plain SELECT + JSON:      {plain['seconds']:8.1f} s  {plain_rate:12,.0f} events/s  "
        f"peak {plain['peak_mb']:6.0f} MB"
    )
    print(
        f"replay (full audit):      {replayed['seconds']:8.1f} s  {replay_rate:12,.0f} events/s  "
        f"peak {replayed['peak_mb']:6.0f} MB"
    )
    print(
        f"  {int(replayed['billing_events']):,} billing events re-derived, "
        f"{int(replayed['invoices_issued']):,} invoices issued, {int(replayed['matched']):,} "
        f"match, {int(replayed['differences'])} differences"
    )
    rate_ok = ratio >= 1 / 3
    memory_ok = replayed["peak_mb"] < 300
    print(
        f"replay / plain rate:      {ratio:.2f} (target >= 0.33: {'met' if rate_ok else 'MISSED'})"
    )
    print(f"replay peak memory:       {'met' if memory_ok else 'MISSED'} (target < 300 MB)")
    return 0 if rate_ok and memory_ok and replayed["differences"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
