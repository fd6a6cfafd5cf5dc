"""Replay: re-derive every invoice from the ledger's history alone, with the current code, and
compare it with the invoices actually issued.

The ledger's stored events are read in notification order and taken down exactly the path
the invoicer takes in production: the ledger's mapper turns a stored event into its domain
event, ``services.ledger.contract.to_cloud_event`` into the published CloudEvent, the
contract registry validates it, and the invoicer's pure generator
(``services.invoicer.domain.generate_invoice``) turns a purchase or a renewal into the invoice
it must cause (one per purchase, one per renewed period). Events of a kind that causes no
invoice are recognised by their topic after the first one and are not decoded again.

The re-derived invoices and the issued ones (the invoicer's ``Invoice.Issued`` events, read as
stored) go into a scratch SQLite database on disk, which then pairs them up by invoice id
(the invoicer derives the id from the causing event). So memory stays flat whatever the size
of the history. Reported, each with the invoice number, the causing event and the cloud:

- ``missing``: a purchase or renewal in the ledger with no issued invoice;
- ``unjustified``: an issued invoice that no ledger event accounts for (its causing event is
  gone, or the invoice was inserted);
- ``mismatch``: an issued invoice whose lines, amounts, tax, customer, currency or causing
  event differ from the re-derived one (each differing field, issued vs. re-derived);
- ``number``: malformed or duplicate numbers, a number whose year is not its issue year, a gap
  in a series, a series whose recorded count is not the number of its invoices, or a cloud's
  invoices numbered out of the order of their events.

An invoice's number and issue date depend on when the invoicer processed the event (the
series is shared by all clouds), so they are checked for consistency, not re-derived.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfoNotFoundError

from seatledger.audit.records import decode_state, dumps, event_name
from seatledger.audit.store import EventStore, StoredRow, to_row

_NUMBER_TAIL_DIGITS = 6
_DECIMAL_FIELDS = ("unit_price", "unrounded_amount", "amount", "net", "tax", "gross", "tax_rate")
_BATCH = 2000


@dataclass(frozen=True)
class Difference:
    kind: str  # missing | unjustified | mismatch | number | rejected
    message: str
    invoice_number: str | None = None
    invoice_id: str | None = None
    cloud_id: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "invoice_number": self.invoice_number,
            "invoice_id": self.invoice_id,
            "cloud_id": self.cloud_id,
            "event_id": self.event_id,
            "message": self.message,
        }


@dataclass
class ReplayResult:
    ledger_events: int = 0
    billing_events: int = 0
    derived: int = 0
    issued: int = 0
    matched: int = 0
    series: dict[str, int] = field(default_factory=dict)
    differences: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.differences == 0


# --------------------------------------------------------------------------------------------
# Re-deriving, with the services' code.


class Deriver:
    """Ledger stored events -> the invoices they cause, along the invoicer's own path."""

    def __init__(self) -> None:
        from eventsourcing.persistence import StoredEvent

        from schemas.registry import ContractViolation, check_cloud_event
        from services.invoicer.domain import (
            BillingEvent,
            InvalidBillingEventError,
            generate_invoice,
        )
        from services.ledger.application import Ledger
        from services.ledger.contract import to_cloud_event

        # An in-memory application only for its mapper (the ledger's transcodings).
        self._mapper = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
        self._stored_event = StoredEvent
        self._to_cloud_event = to_cloud_event
        self._check = check_cloud_event
        self._violation = ContractViolation
        self._billing = BillingEvent
        self._refused = InvalidBillingEventError
        self._generate = generate_invoice
        self.no_invoice_topics: set[str] = set()

    def derive(self, row: StoredRow) -> tuple[Any | None, str | None]:
        """The invoice draft ``row`` causes (or None) and, for an event the invoicer refuses,
        the reason."""
        if row.topic in self.no_invoice_topics:
            return None, None
        domain_event = self._mapper.to_domain_event(
            self._stored_event(
                originator_id=UUID(row.originator_id),
                originator_version=row.originator_version,
                topic=row.topic,
                state=row.state,
            )
        )
        cloud_event = self._to_cloud_event(domain_event)
        if cloud_event is None:
            self.no_invoice_topics.add(row.topic)
            return None, None
        try:
            parsed = self._check(cloud_event)
        except self._violation as exc:
            return None, f"the event breaks its contract: {exc}"
        if not isinstance(parsed.data, self._billing):
            self.no_invoice_topics.add(row.topic)
            return None, None
        try:
            return self._generate(parsed.data, UUID(cloud_event.id)), None
        except self._refused as exc:
            return None, str(exc)


def draft_view(draft: Any) -> dict[str, Any]:
    """The comparable content of a re-derived invoice (everything but number and dates)."""
    return {
        "cloud_id": str(draft.cloud_id),
        "kind": draft.kind,
        "time_zone": draft.time_zone,
        "customer": {
            "name": draft.customer.name,
            "owner_id": draft.customer.owner_id,
            "billing_email": draft.customer.billing_email,
            "locale": draft.customer.locale,
        },
        "currency": draft.currency,
        "tax_rate": str(draft.tax_rate),
        "lines": [
            {
                "kind": line.kind,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "period_start": line.period_start.isoformat(),
                "period_end": line.period_end.isoformat(),
                "charge_date": line.charge_date.isoformat(),
                "remaining_days": line.remaining_days,
                "period_days": line.period_days,
                "unrounded_amount": str(line.unrounded_amount),
                "amount": str(line.amount),
            }
            for line in draft.lines
        ],
        "net": str(draft.net),
        "tax": str(draft.tax),
        "gross": str(draft.gross),
        "caused_by": {
            "event_id": str(draft.caused_by.event_id),
            "event_type": draft.caused_by.event_type,
        },
    }


def issued_view(state: dict[str, Any]) -> dict[str, Any]:
    """The same content of an issued invoice, from its stored ``Issued`` event."""
    keys = ("cloud_id", "kind", "time_zone", "customer", "currency", "tax_rate", "lines")
    view = {key: state.get(key) for key in keys}
    view.update({key: state.get(key) for key in ("net", "tax", "gross", "caused_by")})
    return view


def compare(issued: Any, derived: Any, path: str = "") -> Iterator[str]:
    """Each difference between two views, as ``path: issued X, re-derived Y``."""
    if isinstance(issued, dict) and isinstance(derived, dict):
        for key in sorted(set(issued) | set(derived), key=str):
            yield from compare(issued.get(key), derived.get(key), f"{path}.{key}" if path else key)
        return
    if isinstance(issued, list) and isinstance(derived, list):
        if len(issued) != len(derived):
            yield f"{path}: {len(issued)} issued, {len(derived)} re-derived"
        for index, (a, b) in enumerate(zip(issued, derived, strict=False), start=1):
            yield from compare(a, b, f"{path}[{index}]")
        return
    if path.rsplit(".", 1)[-1] in _DECIMAL_FIELDS and _same_decimal(issued, derived):
        return
    if issued != derived:
        yield f"{path}: issued {_show(issued)}, re-derived {_show(derived)}"


def _same_decimal(a: Any, b: Any) -> bool:
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except InvalidOperation:
        return False


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False)


def _local_day(issued_at: Any, time_zone: Any) -> str | None:
    from seatledger.billing import local_date

    try:
        return local_date(datetime.fromisoformat(str(issued_at)), str(time_zone)).isoformat()
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return None


def parse_number(number: Any) -> tuple[str, int, int] | None:
    """``SL-2026-000042`` -> ``("SL", 2026, 42)``; None when malformed."""
    if not isinstance(number, str):
        return None
    parts = number.rsplit("-", 2)
    if len(parts) != 3:
        return None
    prefix, year, tail = parts
    if not (prefix and year.isdigit() and len(year) == 4):
        return None
    if not (tail.isdigit() and len(tail) == _NUMBER_TAIL_DIGITS):
        return None
    return prefix, int(year), int(tail)


# --------------------------------------------------------------------------------------------
# The replay.


class Replay:
    """One replay run; see the module documentation."""

    def __init__(
        self,
        ledger: EventStore,
        invoicer: EventStore,
        *,
        report: Callable[[Difference], None],
        progress: Callable[[str, int, int], None] | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.ledger = ledger
        self.invoicer = invoicer
        self._report = report
        self._progress = progress
        self._scratch_dir = scratch_dir
        self.result = ReplayResult()

    def _difference(self, difference: Difference) -> None:
        self.result.differences += 1
        self.result.by_kind[difference.kind] = self.result.by_kind.get(difference.kind, 0) + 1
        self._report(difference)

    def run(self) -> ReplayResult:
        with tempfile.TemporaryDirectory(prefix="seatledger-replay-", dir=self._scratch_dir) as tmp:
            scratch = sqlite3.connect(str(Path(tmp) / "scratch.sqlite"), isolation_level=None)
            try:
                scratch.execute("PRAGMA journal_mode = OFF")
                scratch.execute("PRAGMA synchronous = OFF")
                scratch.execute(
                    "CREATE TABLE derived (invoice_id TEXT PRIMARY KEY, seq INTEGER, "
                    "cloud_id TEXT, event_id TEXT, view TEXT)"
                )
                scratch.execute(
                    "CREATE TABLE issued (invoice_id TEXT, notification_id INTEGER, "
                    "number TEXT, series TEXT, serial INTEGER, cloud_id TEXT, view TEXT)"
                )
                self._derive_all(scratch)
                series_counts = self._read_issued(scratch)
                scratch.execute("CREATE INDEX issued_id ON issued (invoice_id)")
                scratch.execute("CREATE INDEX issued_series ON issued (series, serial)")
                self._pair(scratch)
                self._check_numbers(scratch, series_counts)
            finally:
                scratch.close()
        return self.result

    # -- pass 1: the ledger --------------------------------------------------------------------

    def _derive_all(self, scratch: sqlite3.Connection) -> None:
        deriver = Deriver()
        total = self.ledger.max_notification_id()
        pending: list[tuple[str, int, str, str, str]] = []
        result = self.result
        skip = deriver.no_invoice_topics
        progress = self._progress
        for raw in self.ledger.iter_raw(batch=_BATCH):
            result.ledger_events += 1
            if progress is not None and result.ledger_events % 1000 == 0:
                progress("ledger", int(raw[0]), total)
            if raw[3] in skip:  # a kind of event that causes no invoice: not decoded again
                continue
            row = to_row(raw)
            draft, refused = deriver.derive(row)
            if refused is not None:
                self._difference(
                    Difference(
                        "rejected",
                        f"ledger event {row.notification_id} ({event_name(row.topic)} of "
                        f"{row.originator_id} version {row.originator_version}) cannot be "
                        f"invoiced: {refused}",
                        cloud_id=row.originator_id,
                    )
                )
            if draft is not None:
                result.billing_events += 1
                pending.append(
                    (
                        str(draft.invoice_id),
                        row.notification_id,
                        str(draft.cloud_id),
                        str(draft.caused_by.event_id),
                        dumps(draft_view(draft)),
                    )
                )
                if len(pending) >= _BATCH:
                    self._insert_derived(scratch, pending)
        self._insert_derived(scratch, pending)
        if self._progress is not None:
            self._progress("ledger", total, total)
        row_count = scratch.execute("SELECT COUNT(*) FROM derived").fetchone()
        result.derived = int(row_count[0])

    @staticmethod
    def _insert_derived(
        scratch: sqlite3.Connection, pending: list[tuple[str, int, str, str, str]]
    ) -> None:
        if not pending:
            return
        scratch.execute("BEGIN")
        # A renewed period announced twice gives one invoice: the first event's.
        scratch.executemany("INSERT OR IGNORE INTO derived VALUES (?, ?, ?, ?, ?)", pending)
        scratch.execute("COMMIT")
        pending.clear()

    # -- pass 2: the invoicer ------------------------------------------------------------------

    def _read_issued(self, scratch: sqlite3.Connection) -> dict[str, int]:
        """Load the issued invoices; returns each number series' recorded count."""
        series_counts: dict[str, int] = {}
        series_names: dict[str, str] = {}
        series_versions: dict[str, int] = {}
        pending: list[tuple[Any, ...]] = []
        total = self.invoicer.max_notification_id()
        seen = 0
        for row in self.invoicer.iter_events(batch=_BATCH):
            seen += 1
            qualified = row.topic.rsplit(":", 1)[-1]
            if qualified.startswith("NumberSeries."):
                series_versions[row.originator_id] = max(
                    series_versions.get(row.originator_id, 0), row.originator_version
                )
                if row.originator_version == 1:
                    state = decode_state(row.state)
                    series_names[row.originator_id] = f"{state.get('prefix')}-{state.get('year')}"
                continue
            if qualified != "Invoice.Issued":
                continue
            self.result.issued += 1
            state = decode_state(row.state)
            pending.append(self._issued_row(row, state))
            if len(pending) >= _BATCH:
                self._insert_issued(scratch, pending)
            if self._progress is not None and seen % 1000 == 0:
                self._progress("invoices", row.notification_id, total)
        self._insert_issued(scratch, pending)
        if self._progress is not None:
            self._progress("invoices", total, total)
        for originator, version in series_versions.items():
            series_counts[series_names.get(originator, originator)] = version
        return series_counts

    def _issued_row(self, row: StoredRow, state: dict[str, Any]) -> tuple[Any, ...]:
        number = state.get("number")
        parsed = parse_number(number)
        invoice_id = str(state.get("invoice_id") or row.originator_id)
        cloud_id = str(state.get("cloud_id"))
        if parsed is None:
            self._difference(
                Difference(
                    "number",
                    f"invoice {invoice_id} has a malformed number {number!r}",
                    str(number),
                    invoice_id,
                    cloud_id,
                )
            )
            series, serial = None, None
        else:
            prefix, year, serial = parsed
            series = f"{prefix}-{year}"
            issue_date = state.get("issue_date")
            try:
                issue_year = date.fromisoformat(str(issue_date)).year
            except ValueError:
                issue_year = None
            if issue_year != year:
                self._difference(
                    Difference(
                        "number",
                        f"invoice {number} was issued on {issue_date}, outside the year of its "
                        "number",
                        str(number),
                        invoice_id,
                        cloud_id,
                    )
                )
        expected_day = _local_day(state.get("issued_at"), state.get("time_zone"))
        if expected_day is None or str(state.get("issue_date")) != expected_day:
            self._difference(
                Difference(
                    "mismatch",
                    f"invoice {number}: issue date {state.get('issue_date')} is not the local "
                    f"date of its issue instant {state.get('issued_at')} in "
                    f"{state.get('time_zone')} ({expected_day or 'unreadable'})",
                    str(number),
                    invoice_id,
                    cloud_id,
                )
            )
        if invoice_id != row.originator_id:
            self._difference(
                Difference(
                    "mismatch",
                    f"invoice {number}: stored under id {row.originator_id} but names itself "
                    f"{invoice_id}",
                    str(number),
                    row.originator_id,
                    cloud_id,
                )
            )
        return (
            row.originator_id,
            row.notification_id,
            None if number is None else str(number),
            series,
            serial,
            cloud_id,
            dumps(issued_view(state)),
        )

    @staticmethod
    def _insert_issued(scratch: sqlite3.Connection, pending: list[tuple[Any, ...]]) -> None:
        if not pending:
            return
        scratch.execute("BEGIN")
        scratch.executemany("INSERT INTO issued VALUES (?, ?, ?, ?, ?, ?, ?)", pending)
        scratch.execute("COMMIT")
        pending.clear()

    # -- pairing -------------------------------------------------------------------------------

    def _pair(self, scratch: sqlite3.Connection) -> None:
        cursor = scratch.execute(
            "SELECT d.invoice_id, d.seq, d.cloud_id, d.event_id, d.view, i.number, i.view "
            "FROM derived d LEFT JOIN issued i ON i.invoice_id = d.invoice_id ORDER BY d.seq"
        )
        while rows := cursor.fetchmany(_BATCH):
            for invoice_id, seq, cloud_id, event_id, derived, number, issued in rows:
                if issued is None:
                    self._difference(
                        Difference(
                            "missing",
                            f"ledger event {seq} (event {event_id} of cloud {cloud_id}) was "
                            f"never invoiced: invoice {invoice_id} is missing",
                            None,
                            invoice_id,
                            cloud_id,
                            event_id,
                        )
                    )
                    continue
                changes = list(compare(json.loads(issued), json.loads(derived)))
                if not changes:
                    self.result.matched += 1
                    continue
                self._difference(
                    Difference(
                        "mismatch",
                        f"invoice {number} differs from its re-derivation from ledger event "
                        f"{seq}: " + "; ".join(changes),
                        number,
                        invoice_id,
                        cloud_id,
                        event_id,
                    )
                )
        cursor = scratch.execute(
            "SELECT i.invoice_id, i.number, i.cloud_id, i.view FROM issued i "
            "LEFT JOIN derived d ON d.invoice_id = i.invoice_id WHERE d.invoice_id IS NULL "
            "ORDER BY i.notification_id"
        )
        while rows := cursor.fetchmany(_BATCH):
            for invoice_id, number, cloud_id, view in rows:
                caused_by = (json.loads(view).get("caused_by") or {}).get("event_id")
                self._difference(
                    Difference(
                        "unjustified",
                        f"invoice {number} names ledger event {caused_by} as its cause, but the "
                        "ledger history holds no event that accounts for it",
                        number,
                        invoice_id,
                        cloud_id,
                        caused_by,
                    )
                )

    # -- numbers -------------------------------------------------------------------------------

    def _check_numbers(self, scratch: sqlite3.Connection, series_counts: dict[str, int]) -> None:
        for number, count in scratch.execute(
            "SELECT number, COUNT(*) FROM issued WHERE number IS NOT NULL GROUP BY number "
            "HAVING COUNT(*) > 1 ORDER BY number"
        ):
            self._difference(
                Difference("number", f"number {number} was issued {count} times", number)
            )
        found: dict[str, int] = {}
        for series, count, highest in scratch.execute(
            "SELECT series, COUNT(DISTINCT serial), MAX(serial) FROM issued "
            "WHERE series IS NOT NULL GROUP BY series ORDER BY series"
        ):
            found[series] = int(count)
            self.result.series[series] = int(count)
            if highest != count:
                gaps = [
                    f"{series}-{serial:06d}"
                    for (serial,) in scratch.execute(
                        "SELECT n.serial + 1 FROM issued n WHERE n.series = ? AND n.serial < ? "
                        "AND NOT EXISTS (SELECT 1 FROM issued m WHERE m.series = n.series "
                        "AND m.serial = n.serial + 1) ORDER BY n.serial LIMIT 20",
                        (series, highest),
                    )
                ]
                first_missing = scratch.execute(
                    "SELECT 1 FROM issued WHERE series = ? AND serial = 1", (series,)
                ).fetchone()
                if first_missing is None:
                    gaps.insert(0, f"{series}-000001")
                self._difference(
                    Difference(
                        "number",
                        f"series {series} has {count} invoices up to number {highest}: missing "
                        + ", ".join(gaps),
                    )
                )
        for series in sorted(set(series_counts) | set(found)):
            recorded = series_counts.get(series)
            if recorded != found.get(series, 0):
                self._difference(
                    Difference(
                        "number",
                        f"series {series} recorded {recorded or 0} numbers taken, "
                        f"{found.get(series, 0)} invoices carry one",
                    )
                )
        for cloud_id, number, previous in scratch.execute(
            "SELECT cloud_id, number, previous FROM (SELECT d.cloud_id, i.number, i.serial, "
            "LAG(i.serial) OVER (PARTITION BY d.cloud_id, i.series ORDER BY d.seq) AS prev, "
            "LAG(i.number) OVER (PARTITION BY d.cloud_id, i.series ORDER BY d.seq) AS previous "
            "FROM derived d JOIN issued i ON i.invoice_id = d.invoice_id "
            "WHERE i.series IS NOT NULL) WHERE prev > serial ORDER BY cloud_id"
        ):
            self._difference(
                Difference(
                    "number",
                    f"cloud {cloud_id}: invoice {number} was numbered before {previous} although "
                    "its event came later",
                    number,
                    cloud_id=cloud_id,
                )
            )


def replay(
    ledger: EventStore,
    invoicer: EventStore,
    *,
    report: Callable[[Difference], None],
    progress: Callable[[str, int, int], None] | None = None,
    scratch_dir: Path | None = None,
) -> ReplayResult:
    """Run a replay; every difference goes to ``report`` as it is found."""
    return Replay(ledger, invoicer, report=report, progress=progress, scratch_dir=scratch_dir).run()
