"""Export a period's ledger events and issued invoices for an external auditor.

The folder written holds:

- ``ledger-events.jsonl`` / ``ledger-events.csv``: every ledger event with ``from <= time <
  to``, in notification order, with its chain hash (the head of the ledger's hash chain after
  that event, empty when not chained yet);
- ``invoices.jsonl`` (one invoice per line, with its lines) / ``invoice-lines.csv`` (one row per
  invoice line, with the invoice's totals): every invoice issued with ``from <= issued_at <
  to``;
- ``manifest.json``: the period, the counts, each store's chain head (position, events, hash)
  at the time of export, and the SHA-256 of every file, so the hand-over itself can be checked.

Everything is streamed: memory does not grow with the size of the period.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from seatledger.audit.chain import genesis
from seatledger.audit.records import EventRecord, dumps, to_record
from seatledger.audit.store import ChainLink, EventStore

EVENT_COLUMNS = (
    "notification_id",
    "time",
    "cloud_id",
    "version",
    "type",
    "actor",
    "data",
    "chain_hash",
)
LINE_COLUMNS = (
    "invoice_number",
    "invoice_id",
    "kind",
    "issue_date",
    "issued_at",
    "cloud_id",
    "customer",
    "currency",
    "line",
    "line_kind",
    "description",
    "quantity",
    "unit_price",
    "period_start",
    "period_end",
    "charge_date",
    "remaining_days",
    "period_days",
    "unrounded_amount",
    "amount",
    "invoice_net",
    "tax_rate",
    "invoice_tax",
    "invoice_gross",
    "caused_by_event_id",
)


def is_invoice_issued(topic: str) -> bool:
    """The invoicer's ``Invoice`` creation event (``...:Invoice.Issued``)."""
    return topic.rsplit(":", 1)[-1] == "Invoice.Issued"


@dataclass
class StoreSummary:
    store: str
    exported: int = 0
    chain_position: int = 0
    chain_events: int = 0
    chain_head: str = ""
    unchained: int = 0


@dataclass
class ExportSummary:
    start: datetime
    end: datetime
    folder: Path
    stores: dict[str, StoreSummary] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def _with_chain(store: EventStore, head_position: int) -> Iterator[tuple[EventRecord, str]]:
    """Each event's record and the chain hash after it (empty beyond the chain's head)."""
    links = store.iter_links(upto=head_position)
    link: ChainLink | None = next(links, None)
    for row in store.iter_events():
        while link is not None and link.notification_id < row.notification_id:
            link = next(links, None)
        chained = link is not None and link.notification_id == row.notification_id
        yield to_record(row), link.chain_hash.hex() if chained and link else ""


def _summary(store: EventStore) -> StoreSummary:
    head, count = store.chain_head()
    summary = StoreSummary(store=store.describe(), chain_events=count)
    summary.chain_position = head.notification_id if head else 0
    summary.chain_head = (head.chain_hash if head else genesis(store.app)).hex()
    return summary


def export_period(
    ledger: EventStore,
    invoicer: EventStore | None,
    start: datetime,
    end: datetime,
    folder: Path,
) -> ExportSummary:
    """Write the period ``[start, end)`` to ``folder`` (created); returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    result = ExportSummary(start=start, end=end, folder=folder)

    ledger_summary = _summary(ledger)
    result.stores["ledger"] = ledger_summary
    with (
        (folder / "ledger-events.jsonl").open("w", encoding="utf-8") as jsonl,
        (folder / "ledger-events.csv").open("w", encoding="utf-8", newline="") as csv_out,
    ):
        writer = csv.writer(csv_out)
        writer.writerow(EVENT_COLUMNS)
        for record, chain_hash in _with_chain(ledger, ledger_summary.chain_position):
            if record.notification_id > ledger_summary.chain_position:
                ledger_summary.unchained += 1
            if not start <= record.timestamp < end:
                continue
            ledger_summary.exported += 1
            row = record.to_json()
            row["chain_hash"] = chain_hash
            jsonl.write(dumps(row) + "\n")
            writer.writerow(
                [
                    record.notification_id,
                    row["time"],
                    record.aggregate_id,
                    record.version,
                    record.type,
                    record.actor,
                    dumps(record.data),
                    chain_hash,
                ]
            )

    if invoicer is not None:
        invoicer_summary = _summary(invoicer)
        result.stores["invoicer"] = invoicer_summary
        with (
            (folder / "invoices.jsonl").open("w", encoding="utf-8") as jsonl,
            (folder / "invoice-lines.csv").open("w", encoding="utf-8", newline="") as csv_out,
        ):
            _write_invoices(invoicer, invoicer_summary, start, end, jsonl, csv_out)

    for name in sorted(p.name for p in folder.iterdir() if p.name != "manifest.json"):
        result.files[name] = _sha256(folder / name)
    (folder / "manifest.json").write_text(
        dumps(_manifest(result)) + "\n",
        encoding="utf-8",
    )
    return result


def _write_invoices(
    store: EventStore,
    summary: StoreSummary,
    start: datetime,
    end: datetime,
    jsonl: TextIO,
    csv_out: TextIO,
) -> None:
    writer = csv.writer(csv_out)
    writer.writerow(LINE_COLUMNS)
    for record, chain_hash in _with_chain(store, summary.chain_position):
        if record.notification_id > summary.chain_position:
            summary.unchained += 1
        if record.type != "Issued" or not is_invoice_issued(record.topic):
            continue
        invoice = invoice_json(record)
        issued_at = datetime.fromisoformat(str(invoice["issued_at"]))
        if not start <= issued_at < end:
            continue
        summary.exported += 1
        invoice["chain_hash"] = chain_hash
        jsonl.write(dumps(invoice) + "\n")
        customer = invoice.get("customer") or {}
        caused_by = invoice.get("caused_by") or {}
        for number, line in enumerate(invoice.get("lines") or [], start=1):
            writer.writerow(
                [
                    invoice.get("number"),
                    invoice.get("invoice_id"),
                    invoice.get("kind"),
                    invoice.get("issue_date"),
                    invoice.get("issued_at"),
                    invoice.get("cloud_id"),
                    customer.get("name"),
                    invoice.get("currency"),
                    number,
                    line.get("kind"),
                    line.get("description"),
                    line.get("quantity"),
                    line.get("unit_price"),
                    line.get("period_start"),
                    line.get("period_end"),
                    line.get("charge_date"),
                    line.get("remaining_days"),
                    line.get("period_days"),
                    line.get("unrounded_amount"),
                    line.get("amount"),
                    invoice.get("net"),
                    invoice.get("tax_rate"),
                    invoice.get("tax"),
                    invoice.get("gross"),
                    caused_by.get("event_id"),
                ]
            )


def invoice_json(record: EventRecord) -> dict[str, Any]:
    """An ``Invoice.Issued`` event as the invoice it records."""
    data = {k: v for k, v in record.data.items() if k != "originator_topic"}
    data.setdefault("invoice_id", record.aggregate_id)
    data["notification_id"] = record.notification_id
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(result: ExportSummary) -> dict[str, Any]:
    return {
        "period": {"from": result.start.isoformat(), "to": result.end.isoformat()},
        "generated_at": datetime.now(UTC).isoformat(),
        "stores": {
            name: {
                "store": s.store,
                "exported": s.exported,
                "chain": {
                    "position": s.chain_position,
                    "events": s.chain_events,
                    "head_hash": s.chain_head,
                },
                "unchained_events": s.unchained,
            }
            for name, s in result.stores.items()
        },
        "files": {name: {"sha256": digest} for name, digest in result.files.items()},
        "hash_chain": (
            "chain_hash = SHA-256(previous chain_hash || event digest), see "
            "seatledger.audit.chain; verify with `seatledger audit verify`"
        ),
    }
