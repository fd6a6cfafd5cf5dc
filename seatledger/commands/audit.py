"""``seatledger audit ...``: the auditor's tools, on PostgreSQL and on the embedded SQLite.

The stores are found as the services find them: ``--database-url`` (default
``SEATLEDGER_DATABASE_URL``) and ``--data-dir`` (default ``SEATLEDGER_DATA_DIR``, where the
embedded SQLite files live), with the application names ``ledger`` and ``invoicer``. The tools
never write to the services' tables; ``seal`` alone writes, to the hash chain's own tables.

Exit status: 0 when everything checked out, 1 when ``verify`` or ``replay`` found a
difference (each one printed) or when the command could not run (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from seatledger.cli import CommandError
from seatledger.config import load_settings
from seatledger.persistence import DatabaseUrlError, application_env

APPS = ("ledger", "invoicer")


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="audit the history: tamper evidence, time travel, invoice re-derivation, export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=help_text, description=help_text
        )
        parser.add_argument(
            "--database-url", help="the database (default: SEATLEDGER_DATABASE_URL)"
        )
        parser.add_argument(
            "--data-dir",
            type=Path,
            help="the embedded SQLite folder (default: SEATLEDGER_DATA_DIR)",
        )
        return parser

    verify = add(
        "verify",
        "recompute each store's hash chain; name the first event changed, removed or inserted "
        "after the fact, and check the chain against its checkpoints",
    )
    verify.add_argument("--app", choices=[*APPS, "all"], default="all")
    verify.add_argument(
        "--checkpoints",
        type=Path,
        help="a JSON Lines file of checkpoints published outside the database",
    )
    verify.add_argument("--format", choices=["text", "json"], default="text")
    verify.set_defaults(handler=run_verify)

    seal = add(
        "seal",
        "extend each store's hash chain to its last event and record a checkpoint (printed as "
        "JSON, appended to --checkpoint-file)",
    )
    seal.add_argument("--app", choices=[*APPS, "all"], default="all")
    seal.add_argument("--checkpoint-file", type=Path, help="append the checkpoints to this file")
    seal.set_defaults(handler=run_seal)

    export = add(
        "export",
        "write a period's ledger events and invoices as JSON Lines and CSV, with the chains' "
        "head hashes, to a folder",
    )
    export.add_argument(
        "--from", dest="start", required=True, help="start (RFC 3339, or a date: 00:00 UTC)"
    )
    export.add_argument(
        "--to",
        dest="end",
        required=True,
        help="end, exclusive (RFC 3339), or a date: up to the end of that day (UTC)",
    )
    export.add_argument("--output", type=Path, required=True, help="the folder to write")
    export.set_defaults(handler=run_export)


# --------------------------------------------------------------------------------------------
# Plumbing shared by the sub-commands.


def _env(args: argparse.Namespace, app: str) -> dict[str, str]:
    settings = load_settings()
    url = args.database_url or settings.database_url
    data_dir = args.data_dir or settings.data_dir
    try:
        return application_env(url, app, data_dir)
    except DatabaseUrlError as exc:
        raise CommandError(str(exc)) from exc


@contextmanager
def _open(args: argparse.Namespace, app: str) -> Iterator[Any]:
    from seatledger.audit.store import StoreError, open_store

    try:
        store = open_store(_env(args, app), app)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    try:
        try:
            store.check_exists()
        except StoreError as exc:
            raise CommandError(str(exc)) from exc
        yield store
    finally:
        store.close()


def parse_instant(text: str, *, end_of_day: bool = False) -> datetime:
    """An RFC 3339 instant (with its offset), or a date: its start (or, with ``end_of_day``,
    the start of the next day) in UTC."""
    value = text.strip()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        start = datetime.combine(day, time(), tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"{text!r} is neither an RFC 3339 instant nor a date") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CommandError(f"{text!r} has no UTC offset (write e.g. 2026-03-01T12:00:00Z)")
    return moment


def _apps(choice: str) -> tuple[str, ...]:
    return APPS if choice == "all" else (choice,)


# --------------------------------------------------------------------------------------------
# verify, seal


def run_verify(args: argparse.Namespace) -> int:
    from seatledger.audit.chain import CheckpointFileError, read_checkpoint_file, verify

    given = []
    if args.checkpoints is not None:
        try:
            given = read_checkpoint_file(args.checkpoints)
        except CheckpointFileError as exc:
            raise CommandError(str(exc)) from exc
        if not given:
            raise CommandError(f"{args.checkpoints} holds no checkpoint")
    status = 0
    for app in _apps(args.app):
        with _open(args, app) as store:
            report = verify(store, checkpoints=given)
        if not report.ok:
            status = 1
        if args.format == "json":
            print(json.dumps(_report_json(report), sort_keys=True))
        else:
            _print_report(report)
    return status


def _report_json(report: Any) -> dict[str, Any]:
    checkpoint = report.last_checkpoint
    return {
        "app": report.app,
        "store": report.store,
        "ok": report.ok,
        "events_checked": report.events_checked,
        "chained": report.chained,
        "chain_position": report.chain_position,
        "chain_head": report.chain_head,
        "recomputed_head": report.recomputed_head,
        "unchained": report.unchained,
        "checkpoints_checked": report.checkpoints_checked,
        "last_checkpoint": None
        if checkpoint is None
        else {
            "position": checkpoint.position,
            "events": checkpoint.events,
            "head_hash": checkpoint.head_hash,
            "created_at": checkpoint.created_at.isoformat(),
            "matches": report.last_checkpoint_matches,
        },
        "findings": [
            {
                "kind": f.kind,
                "notification_id": f.notification_id,
                "aggregate_id": f.originator_id,
                "version": f.originator_version,
                "message": f.message,
            }
            for f in report.findings
        ],
        "more_findings": report.more_findings,
    }


def _print_report(report: Any) -> None:
    verdict = "OK" if report.ok else "TAMPERED"
    print(f"{report.app}: {verdict} ({report.store})")
    print(
        f"  {report.events_checked} events checked against {report.chained} chained, "
        f"head at notification {report.chain_position}: {report.chain_head}"
    )
    if report.unchained:
        print(
            f"  {report.unchained} newer events are not chained yet (run `seatledger audit seal`)"
        )
    checkpoint = report.last_checkpoint
    if checkpoint is None:
        print("  no checkpoint to compare with")
    else:
        state = "matches" if report.last_checkpoint_matches else "DOES NOT MATCH"
        print(
            f"  last checkpoint ({checkpoint.created_at.isoformat()}, notification "
            f"{checkpoint.position}): {state}; {report.checkpoints_checked} checkpoints checked"
        )
    if report.findings:
        print(f"  first: {report.findings[0].message}")
        for finding in report.findings[1:]:
            print(f"  also: {finding.message}")
        if report.more_findings:
            print(f"  ... and {report.more_findings} more")


def run_seal(args: argparse.Namespace) -> int:
    from seatledger.audit.chain import ChainKeeper, JsonLinesPublisher, checkpoint_to_json

    publish = JsonLinesPublisher(args.checkpoint_file) if args.checkpoint_file else None
    for app in _apps(args.app):
        with _open(args, app) as store:
            keeper = ChainKeeper(store, publish=publish)
            keeper.extend(limit=sys.maxsize)
            print(json.dumps(checkpoint_to_json(keeper.checkpoint()), sort_keys=True))
    return 0


# --------------------------------------------------------------------------------------------
# export


def run_export(args: argparse.Namespace) -> int:
    from seatledger.audit.export import export_period
    from seatledger.audit.records import UndecodableEvent

    start = parse_instant(args.start)
    end = parse_instant(args.end, end_of_day=True)
    if end <= start:
        raise CommandError("--to must lie after --from")
    with _open(args, "ledger") as ledger, _open(args, "invoicer") as invoicer:
        try:
            summary = export_period(ledger, invoicer, start, end, args.output)
        except UndecodableEvent as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc}") from exc
    for name, store in summary.stores.items():
        print(
            f"{name}: {store.exported} exported; chain head at notification "
            f"{store.chain_position}: {store.chain_head}"
        )
    print(f"written to {summary.folder} (manifest.json lists each file's SHA-256)")
    return 0
