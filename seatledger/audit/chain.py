"""Tamper evidence: a hash chain over each store's events, in notification order.

How it works
------------
Every stored event gets a digest::

    event_digest = SHA-256("seatledger.audit.event.v1" | notification id | originator id
                           | version | topic | state bytes)       (each field length-prefixed)

and the chain head after it is ``chain_hash = SHA-256(previous chain_hash | event_digest)``;
the chain of application ``app`` starts from ``SHA-256("seatledger.audit.chain.v1:" + app)``,
so a chain cannot be moved from one store to another. :class:`ChainKeeper` follows the
application's notification log and appends one row per event, ``(notification_id,
originator_id, version, event_digest, chain_hash)``, to the table ``audit_chain`` next to the
application's events (same PostgreSQL schema, same SQLite file). Every so often it records a
*checkpoint* ``(position, events, head_hash, time)`` in ``audit_checkpoints`` and hands it to a
publisher (by default a JSON Lines file outside the database; print it, mail it, sign it, put
it in a write-once bucket: what matters is that it leaves the database's reach).

Wiring (the service's run loop)
-------------------------------
::

    env = application_env(settings.database_url, "ledger", settings.data_dir)
    keeper = ChainKeeper.open(env, "ledger",
                              publish=JsonLinesPublisher(settings.data_dir / "audit"
                                                         / "ledger-checkpoints.jsonl"))
    ...
    while running:            # every tick of the loop, after the application saved
        keeper.extend()       # chains what was stored since the last call, may checkpoint
    keeper.close()

``extend()`` is cheap when nothing is new (two indexed queries), idempotent, and safe with
several keepers on one store (the second one finds the head moved and chains nothing).

What ``verify`` detects
-----------------------
``verify`` recomputes every digest from the stored events and walks them beside the chain:

- an event **changed** after it was chained (any byte of its topic or state, its aggregate id
  or version): its digest differs from the chained one. Named by notification id, aggregate and
  version;
- an event **removed** after it was chained: a chain row has no event any more;
- an event **inserted** after the fact at a position the chain had already passed (into a gap
  of the notification ids, or with a reused id): an event has no chain row below the head;
- a chain row **edited** so that it agrees with a forged event: the row's ``chain_hash`` no
  longer follows from its predecessor, and the recomputed head differs from every checkpoint
  published after that row;
- a **rewrite of the chain itself** (events and chain rows forged consistently, from the
  forgery onwards): the recomputed head at a published checkpoint's position differs from the
  checkpoint. This needs a checkpoint held outside the database (``--checkpoints FILE``);
  checkpoints stored in the database are only as trustworthy as the database;
- a **truncated** history: a checkpoint lies beyond the chain's head.

What it cannot detect
---------------------
- Events written (or forged) *before* the keeper chained them: the chain vouches for history
  from the moment it was chained, not for how an event came to be stored. An event inserted
  directly at the end of the log and then chained by the keeper looks genuine to ``verify``
  (``replay`` still flags an invoice that the ledger history does not justify, or a purchase
  that never got its invoice).
- A consistent rewrite of the events, the chain and every checkpoint by someone who holds the
  database and every copy of the published checkpoints. Publishing checkpoints to a place the
  database's operators cannot write is what closes this gap.
- Changes after the last published checkpoint, by someone who rewrites the chain rows as well
  (only the chain's internal consistency speaks for that stretch).
- Whether the *content* of an event is right: that is ``replay``'s job (invoices re-derived
  from the ledger).
- SQLite: ``VACUUM`` may renumber the rowids that serve as notification ids; a vacuumed store
  reports every renumbered event as changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from seatledger.audit.store import (
    ChainConflict,
    ChainLink,
    Checkpoint,
    EventStore,
    StoredRow,
    StoreError,
    open_store,
)

_EVENT_DOMAIN = b"seatledger.audit.event.v1"
_CHAIN_DOMAIN = b"seatledger.audit.chain.v1:"


def genesis(app: str) -> bytes:
    """The chain head before the first event of application ``app``."""
    return hashlib.sha256(_CHAIN_DOMAIN + app.encode()).digest()


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def event_digest(row: StoredRow) -> bytes:
    """The digest of one stored event (every field, length-prefixed, so none can bleed into
    the next)."""
    return hashlib.sha256(
        _EVENT_DOMAIN
        + _field(row.notification_id.to_bytes(8, "big", signed=True))
        + _field(row.originator_id.encode())
        + _field(row.originator_version.to_bytes(8, "big", signed=True))
        + _field(row.topic.encode())
        + _field(row.state)
    ).digest()


def next_hash(previous: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(previous + digest).digest()


def link_rows(app: str, previous: bytes | None, rows: Iterable[StoredRow]) -> list[ChainLink]:
    """The chain rows for ``rows`` following the head ``previous`` (None: the genesis)."""
    head = genesis(app) if previous is None else previous
    links = []
    for row in rows:
        digest = event_digest(row)
        head = next_hash(head, digest)
        links.append(
            ChainLink(row.notification_id, row.originator_id, row.originator_version, digest, head)
        )
    return links


# --------------------------------------------------------------------------------------------
# Publishing checkpoints
# --------------------------------------------------------------------------------------------


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, object]:
    return {
        "app": checkpoint.app,
        "position": checkpoint.position,
        "events": checkpoint.events,
        "head_hash": checkpoint.head_hash,
        "created_at": checkpoint.created_at.isoformat(),
    }


class CheckpointFileError(ValueError):
    """A checkpoint file cannot be read."""


def read_checkpoint_file(path: Path, app: str | None = None) -> list[Checkpoint]:
    """The checkpoints in a JSON Lines file (of application ``app`` when given)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointFileError(f"cannot read checkpoint file {path}: {exc}") from exc
    result = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            checkpoint = Checkpoint(
                app=str(data["app"]),
                position=int(data["position"]),
                events=int(data["events"]),
                head_hash=str(data["head_hash"]),
                created_at=datetime.fromisoformat(str(data["created_at"])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointFileError(f"{path}:{number}: not a checkpoint: {exc}") from exc
        if app is None or checkpoint.app == app:
            result.append(checkpoint)
    return result


class JsonLinesPublisher:
    """Appends each checkpoint as one JSON line to a file (created with its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(checkpoint_to_json(checkpoint), sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Keeping the chain
# --------------------------------------------------------------------------------------------


class ChainKeeper:
    """Extends the hash chain of one application's store and records checkpoints.

    ``checkpoint_every`` events or ``checkpoint_interval_s`` seconds after the last checkpoint
    (whichever comes first, and only when the chain grew), :meth:`extend` records a checkpoint
    and passes it to ``publish``.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        batch: int = 2000,
        checkpoint_every: int = 10_000,
        checkpoint_interval_s: float = 3600.0,
        publish: Callable[[Checkpoint], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.app = store.app
        self.batch = batch
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.publish = publish
        self.clock = clock
        self._ready = False
        self._events_ready = False
        self._last_checkpoint: Checkpoint | None = None

    @classmethod
    def open(
        cls, env: dict[str, str], app: str, **options: object
    ) -> ChainKeeper:  # pragma: no cover - thin
        """A keeper of the store that ``env`` (from ``application_env``) describes."""
        return cls(open_store(env, app), **options)  # type: ignore[arg-type]

    def _prepare(self) -> None:
        if not self._ready:
            self.store.ensure_chain_tables()
            stored = self.store.checkpoints()
            self._last_checkpoint = stored[-1] if stored else None
            self._ready = True

    def extend(self, limit: int = 50_000, *, checkpoint: bool = True) -> int:
        """Chain the events stored since the last call (at most ``limit``); returns how many.

        Call it from the service's loop after saves (or on a timer); it records a checkpoint
        when one is due (unless ``checkpoint`` is False). Raises the store's
        errors (the loop logs and calls again on its next tick); a concurrent keeper is not an
        error (nothing is written, 0 is returned).
        """
        self._prepare()
        if not self._events_ready:
            # The application may not have created its tables yet (a keeper started first).
            try:
                self.store.check_exists()
            except StoreError:
                return 0
            self._events_ready = True
        chained = 0
        while chained < limit:
            head, _ = self.store.chain_head()
            after = head.notification_id if head else 0
            rows = list(self.store.iter_events(after=after, limit=self.batch))
            if not rows:
                break
            links = link_rows(self.app, head.chain_hash if head else None, rows)
            try:
                self.store.append_links(after, links)
            except ChainConflict:
                return chained
            chained += len(links)
            if len(rows) < self.batch:
                break
        if chained and checkpoint:
            self._maybe_checkpoint()
        return chained

    def _maybe_checkpoint(self) -> None:
        head, count = self.store.chain_head()
        if head is None:
            return
        last = self._last_checkpoint
        if last is not None:
            due_by_count = count - last.events >= self.checkpoint_every
            elapsed = (self.clock() - last.created_at).total_seconds()
            if not due_by_count and elapsed < self.checkpoint_interval_s:
                return
        self.checkpoint()

    def checkpoint(self) -> Checkpoint:
        """Record (and publish) a checkpoint of the chain's head now."""
        self._prepare()
        head, count = self.store.chain_head()
        checkpoint = Checkpoint(
            app=self.app,
            position=head.notification_id if head else 0,
            events=count,
            head_hash=(head.chain_hash if head else genesis(self.app)).hex(),
            created_at=self.clock(),
        )
        self.store.add_checkpoint(checkpoint)
        self._last_checkpoint = checkpoint
        if self.publish is not None:
            self.publish(checkpoint)
        return checkpoint

    def close(self) -> None:
        self.store.close()


# --------------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------------

FindingKind = Literal[
    "changed", "removed", "inserted", "chain-broken", "checkpoint-mismatch", "truncated"
]


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    notification_id: int
    message: str
    originator_id: str | None = None
    originator_version: int | None = None


@dataclass
class VerifyReport:
    app: str
    store: str
    events_checked: int = 0
    chained: int = 0
    chain_position: int = 0
    chain_head: str = ""
    recomputed_head: str = ""
    unchained: int = 0
    checkpoints_checked: int = 0
    last_checkpoint: Checkpoint | None = None
    last_checkpoint_matches: bool | None = None
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None


def verify(
    store: EventStore,
    *,
    checkpoints: Iterable[Checkpoint] = (),
    max_findings: int = 100,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Recompute the chain of ``store`` from its events and compare it with the stored chain
    and with ``checkpoints`` (those in the database are always included)."""
    app = store.app
    report = VerifyReport(app=app, store=store.describe())
    head, count = store.chain_head()
    report.chain_position = head.notification_id if head else 0
    report.chained = count
    report.chain_head = (head.chain_hash if head else genesis(app)).hex()
    report.unchained = sum(
        1 for _ in store.iter_events(after=report.chain_position, batch=5000)
    )  # counted, not held

    given = [c for c in checkpoints if c.app == app]
    stored = store.checkpoints()
    # The checkpoint the report speaks of: the auditor's latest when given, else the latest
    # recorded in the database.
    reference_pool = given or stored
    reference = (
        _key(max(reference_pool, key=lambda c: (c.position, c.created_at)))
        if reference_pool
        else None
    )
    pending = sorted(_merge_checkpoints(given, stored), key=lambda c: (c.position, c.created_at))
    pending_index = 0

    def add(finding: Finding) -> None:
        if len(report.findings) < max_findings:
            report.findings.append(finding)
        else:
            report.more_findings += 1

    recomputed = genesis(app)  # from the events as they are now
    expected = genesis(app)  # from the chain's own digests
    events = store.iter_events(upto=report.chain_position)
    links = store.iter_links(upto=report.chain_position)
    event = next(events, None)
    link = next(links, None)
    checked = 0
    chain_broken_reported = False

    def settle_checkpoints(upto: int, current: bytes, in_chain: int) -> None:
        """Compare the checkpoints at positions ``< upto`` with the head reached so far."""
        nonlocal pending_index
        while pending_index < len(pending) and pending[pending_index].position < upto:
            checkpoint = pending[pending_index]
            pending_index += 1
            report.checkpoints_checked += 1
            matches = checkpoint.head_hash == current.hex() and checkpoint.events == in_chain
            if _key(checkpoint) == reference:
                report.last_checkpoint = checkpoint
                report.last_checkpoint_matches = matches
            if checkpoint.head_hash != current.hex():
                add(
                    Finding(
                        "checkpoint-mismatch",
                        checkpoint.position,
                        f"the history up to notification {checkpoint.position} does not "
                        f"match the checkpoint of {checkpoint.created_at.isoformat()} "
                        f"(head {checkpoint.head_hash[:16]}..., recomputed "
                        f"{current.hex()[:16]}...)",
                    )
                )
            elif checkpoint.events != in_chain:
                add(
                    Finding(
                        "checkpoint-mismatch",
                        checkpoint.position,
                        f"the checkpoint of {checkpoint.created_at.isoformat()} counts "
                        f"{checkpoint.events} events up to notification {checkpoint.position}, "
                        f"the chain {in_chain}",
                    )
                )

    in_chain = 0
    while event is not None or link is not None:
        nid = min(x.notification_id for x in (event, link) if x is not None)
        settle_checkpoints(nid, recomputed, in_chain)
        if link is not None and link.notification_id == nid:
            in_chain += 1
            expected = next_hash(expected, link.event_digest)
            if expected != link.chain_hash and not chain_broken_reported:
                chain_broken_reported = True
                add(
                    Finding(
                        "chain-broken",
                        nid,
                        f"chain row {nid} does not follow from its predecessor: the chain "
                        "table was edited",
                        link.originator_id,
                        link.originator_version,
                    )
                )
                expected = link.chain_hash  # resynchronise to report later breaks apart
            if event is not None and event.notification_id == nid:
                checked += 1
                digest = event_digest(event)
                recomputed = next_hash(recomputed, digest)
                if digest != link.event_digest:
                    if (event.originator_id, event.originator_version) == (
                        link.originator_id,
                        link.originator_version,
                    ):
                        what = (
                            f"event {nid} ({_describe(event.topic)} of {event.originator_id} "
                            f"version {event.originator_version}) was changed after it was "
                            "chained"
                        )
                    else:
                        what = (
                            f"event {nid} was replaced: the chain holds {link.originator_id} "
                            f"version {link.originator_version}, the store "
                            f"{event.originator_id} version {event.originator_version}"
                        )
                    add(
                        Finding("changed", nid, what, event.originator_id, event.originator_version)
                    )
                event = next(events, None)
            else:
                add(
                    Finding(
                        "removed",
                        nid,
                        f"event {nid} ({link.originator_id} version {link.originator_version}) "
                        "was removed after it was chained",
                        link.originator_id,
                        link.originator_version,
                    )
                )
            link = next(links, None)
        else:
            assert event is not None
            checked += 1
            recomputed = next_hash(recomputed, event_digest(event))
            add(
                Finding(
                    "inserted",
                    nid,
                    f"event {nid} ({_describe(event.topic)} of {event.originator_id} version "
                    f"{event.originator_version}) was inserted after the chain passed its "
                    "position",
                    event.originator_id,
                    event.originator_version,
                )
            )
            event = next(events, None)
        if progress is not None:
            progress(nid)
    settle_checkpoints(report.chain_position + 1, recomputed, in_chain)
    for checkpoint in pending[pending_index:]:
        report.checkpoints_checked += 1
        if _key(checkpoint) == reference:
            report.last_checkpoint = checkpoint
            report.last_checkpoint_matches = False
        add(
            Finding(
                "truncated",
                checkpoint.position,
                f"the checkpoint of {checkpoint.created_at.isoformat()} is at notification "
                f"{checkpoint.position}, beyond the chain's head {report.chain_position}: "
                "history was truncated",
            )
        )
    report.events_checked = checked
    report.recomputed_head = recomputed.hex()
    return report


def _key(checkpoint: Checkpoint) -> tuple[str, int, str, int]:
    return (checkpoint.app, checkpoint.position, checkpoint.head_hash, checkpoint.events)


def _merge_checkpoints(*groups: Iterable[Checkpoint]) -> list[Checkpoint]:
    seen: dict[tuple[str, int, str, int], Checkpoint] = {}
    for group in groups:
        for checkpoint in group:
            seen.setdefault(_key(checkpoint), checkpoint)
    return list(seen.values())


def _describe(topic: str) -> str:
    """The short name of an event class topic (``pkg.mod:Cloud.SeatsIncreased`` ->
    ``SeatsIncreased``)."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
