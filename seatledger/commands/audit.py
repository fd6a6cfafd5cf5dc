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

from seatledger.audit.store import StoreError
from seatledger.cli import CommandError
from seatledger.config import load_settings
from seatledger.persistence import DatabaseUrlError, application_env

#: Every application whose store carries a hash chain.
CHAINED_APPS = ("ledger", "invoicer", "notifier")


def _add_app_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        choices=[*CHAINED_APPS, "all"],
        default="all",
        help="one store, or all (default; a store that does not exist is skipped)",
    )


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
    _add_app_choice(verify)
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
    _add_app_choice(seal)
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

    history = add("history", "every event of a cloud with its time, actor and data")
    history.add_argument("cloud_id")
    history.add_argument("--format", choices=["table", "jsonl"], default="table")
    history.set_defaults(handler=run_history)

    state = add("state", "a cloud as it was at an instant (as the ledger API's as_of shows it)")
    state.add_argument("cloud_id")
    state.add_argument(
        "--as-of",
        required=True,
        help="an RFC 3339 instant, or a date: the end of that day in the contract's time zone",
    )
    state.add_argument("--format", choices=["table", "json"], default="table")
    state.set_defaults(handler=run_state)

    explain = add(
        "explain",
        "the ledger event and the arithmetic behind every line of an invoice (R/D days, "
        "unrounded and rounded amounts, tax), re-computed and compared with what was issued",
    )
    explain.add_argument("invoice_number")
    explain.add_argument("--format", choices=["text", "json"], default="text")
    explain.set_defaults(handler=run_explain)

    replay = add(
        "replay",
        "re-derive every invoice from the ledger history alone with the current code and "
        "compare each with the invoice issued (number, lines, amounts)",
    )
    replay.add_argument("--format", choices=["text", "jsonl"], default="text")
    replay.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )
    replay.add_argument("--scratch-dir", type=Path, help="where the scratch store goes (temp)")
    replay.set_defaults(handler=run_replay)


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


def _chained_stores(args: argparse.Namespace) -> Iterator[Any]:
    """The stores ``--app`` names: one (which must exist), or every one that exists."""
    from seatledger.audit.store import StoreMissing, open_store

    if args.app != "all":
        with _open(args, args.app) as store:
            yield store
        return
    found = 0
    for app in CHAINED_APPS:
        try:
            store = open_store(_env(args, app), app)
        except StoreMissing:
            continue
        except StoreError as exc:
            raise CommandError(str(exc)) from exc
        try:
            try:
                store.check_exists()
            except StoreMissing:
                continue
            found += 1
            yield store
        finally:
            store.close()
    if not found:
        raise CommandError("no event store found (check --database-url and --data-dir)")


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
    for store in _chained_stores(args):
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
    if report.ok and report.chained == 0:
        verdict = "OK, but nothing is chained yet"
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
    for store in _chained_stores(args):
        keeper = ChainKeeper(store, publish=publish)
        keeper.extend(limit=sys.maxsize, checkpoint=False)
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


# --------------------------------------------------------------------------------------------
# history, state


def _compact(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_history(args: argparse.Namespace) -> int:
    from seatledger.audit.records import UndecodableEvent, dumps
    from seatledger.audit.timetravel import CloudNotFound, cloud_history

    with _open(args, "ledger") as ledger:
        try:
            records = cloud_history(ledger, args.cloud_id)
        except (CloudNotFound, UndecodableEvent) as exc:
            raise CommandError(str(exc)) from exc
    if args.format == "jsonl":
        for record in records:
            print(dumps(record.to_json()))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cloud {args.cloud_id}", show_lines=False)
    for column in ("version", "time", "event", "actor", "data"):
        table.add_column(column, overflow="fold")
    for record in records:
        data = {k: v for k, v in record.data.items() if k not in ("actor", "originator_topic")}
        table.add_row(
            str(record.version),
            record.timestamp.isoformat(),
            record.type,
            record.actor,
            _compact(data, 400),
        )
    Console(width=max(160, Console().width)).print(table)
    return 0


def run_state(args: argparse.Namespace) -> int:
    from seatledger.audit.records import UndecodableEvent
    from seatledger.audit.timetravel import (
        CloudNotFound,
        contract_time_zone,
        end_of_local_day,
        state_as_of,
    )

    text = args.as_of.strip()
    with _open(args, "ledger") as ledger:
        try:
            if len(text) == 10:
                try:
                    day = date.fromisoformat(text)
                except ValueError as exc:
                    raise CommandError(f"{text!r} is not a date (YYYY-MM-DD)") from exc
                as_of = end_of_local_day(day, contract_time_zone(ledger, args.cloud_id))
            else:
                as_of = parse_instant(text)
            view = state_as_of(_env(args, "ledger"), args.cloud_id, as_of)
        except (CloudNotFound, UndecodableEvent) as exc:
            raise CommandError(str(exc)) from exc
    if args.format == "json":
        print(json.dumps(view, sort_keys=True, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cloud {args.cloud_id} as of {view.get('as_of')}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in view.items():
        table.add_row(key, value if isinstance(value, str) else _compact(value, 2000))
    Console().print(table)
    return 0


# --------------------------------------------------------------------------------------------
# explain


def run_explain(args: argparse.Namespace) -> int:
    from seatledger.audit.explain import InvoiceNotFound, explain
    from seatledger.audit.records import UndecodableEvent

    with _open(args, "ledger") as ledger, _open(args, "invoicer") as invoicer:
        try:
            result = explain(ledger, invoicer, args.invoice_number)
        except (InvoiceNotFound, UndecodableEvent) as exc:
            raise CommandError(str(exc)) from exc
    if args.format == "json":
        print(json.dumps(result.to_json(), sort_keys=True, ensure_ascii=False))
        return 0 if result.ok else 1
    out = print
    out(
        f"Invoice {result.invoice_number} ({result.kind}), issued {result.issue_date} "
        f"({result.issued_at}) to {result.customer.get('name')}, cloud {result.cloud_id}"
    )
    out(f"  currency {result.currency} ({result.minor_units} minor units), tax {result.tax_rate}%")
    event = result.event
    if event is None:
        out(f"  caused by {result.event_type} {result.event_id}: NOT IN THE LEDGER HISTORY")
    else:
        out(
            f"  caused by {event.type} (event {result.event_id}), version {event.version} of the "
            f"cloud, notification {event.notification_id}, at {event.timestamp.isoformat()} by "
            f"{event.actor or '-'}"
        )
        if result.terms:
            terms = result.terms
            out(
                f"  terms then: {terms.get('seat_price')} {terms.get('currency')} per seat and "
                f"{terms.get('billing_period')} period, term start {terms.get('term_start')}, "
                f"zone {terms.get('time_zone')}, tax {terms.get('tax_rate')}%"
            )
    if result.refused:
        out(f"  the current code refuses to invoice this event: {result.refused}")
    for line in result.lines:
        out(f"  line {line.number}: {line.description}")
        out(
            f"    period [{line.period_start}, {line.period_end}): D = {line.period_days} days; "
            f"charged from {line.charge_date}: R = {line.remaining_days} days"
        )
        out(f"    {line.formula} = {line.unrounded} (exact)")
        out(f"    rounded once, half up, to {result.minor_units} places: {line.rounded}")
        if line.quoted:
            out(f"    {line.quoted}")
        out(f"    charged {line.charged}; issued {line.issued_amount}")
    if result.lines:
        out(f"  net = sum of lines = {result.net} (issued {result.issued_net})")
        out(
            f"  tax = {result.net} x {result.tax_rate} / 100 = {result.tax_unrounded}, rounded "
            f"half up: {result.tax} (issued {result.issued_tax})"
        )
        out(f"  gross = net + tax = {result.gross} (issued {result.issued_gross})")
    if result.differences:
        out("  DIFFERENCES between the issued invoice and its re-derivation:")
        for difference in result.differences:
            out(f"    {difference}")
    else:
        out("  the issued invoice matches its re-derivation" if result.ok else "")
    return 0 if result.ok else 1


# --------------------------------------------------------------------------------------------
# replay


def run_replay(args: argparse.Namespace) -> int:
    from seatledger.audit.records import UndecodableEvent, dumps
    from seatledger.audit.replay import Difference, replay

    show_progress = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())

    def report(difference: Difference) -> None:
        if args.format == "jsonl":
            print(dumps({"difference": difference.to_json()}), flush=True)
        else:
            print(f"{difference.kind}: {difference.message}", flush=True)

    with (
        _open(args, "ledger") as ledger,
        _open(args, "invoicer") as invoicer,
        _progress_bar(show_progress, force=args.progress == "always") as progress,
    ):
        try:
            result = replay(
                ledger, invoicer, report=report, progress=progress, scratch_dir=args.scratch_dir
            )
        except UndecodableEvent as exc:
            raise CommandError(str(exc)) from exc
    summary = {
        "ledger_events": result.ledger_events,
        "billing_events": result.billing_events,
        "invoices_derived": result.derived,
        "invoices_issued": result.issued,
        "matched": result.matched,
        "differences": result.differences,
        "by_kind": result.by_kind,
        "series": result.series,
        "ok": result.ok,
    }
    if args.format == "jsonl":
        print(dumps({"summary": summary}))
    else:
        verdict = "all invoices match" if result.ok else f"{result.differences} differences"
        print(
            f"replayed {result.ledger_events} ledger events ({result.billing_events} billing "
            f"events): {result.derived} invoices re-derived, {result.issued} issued, "
            f"{result.matched} match; {verdict}"
        )
        for series, count in sorted(result.series.items()):
            print(f"  series {series}: {count} numbers")
    return 0 if result.ok else 1


@contextmanager
def _progress_bar(enabled: bool, *, force: bool = False) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, force_terminal=force or None),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, position: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{stage} (notification)", total=total or None)
            bar.update(tasks[stage], completed=position, total=total or None)

        yield update
