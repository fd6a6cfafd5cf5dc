"""The ledger application: the event store of ``Cloud`` aggregates and its use cases.

- :class:`Ledger` is the ``eventsourcing`` application (named ``ledger``: its notification log
  is the outbox the relay publishes from) with the transcodings of the domain's value objects.
- :class:`GroupCommitter` runs commands: concurrent commands are batched and their new events
  saved in ONE ``save()`` (one transaction, one fsync). When another writer (another node, a
  second scheduler) changed one of the clouds first, the batch is reloaded and run again, a
  bounded number of times, then each command fails with :class:`ConcurrencyConflict`.
- :class:`LedgerService` holds the verbs the HTTP API and the renewal scheduler call.
- Quotes are not events: :class:`QuoteStore` keeps them server-side, in the ledger's own
  database, so any node can honour a quote made by another (see ``Quote``).

Metrics observe from outside through :class:`LedgerObserver`.
"""

from __future__ import annotations

import copy
import hashlib
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder
from eventsourcing.utils import get_topic

from seatledger.billing import local_date, tax_amount
from seatledger.http.sqldb import SqlDatabase
from seatledger.transcodings import DataclassAsDict, DateAsISO
from services.ledger.domain import (
    DEFAULT_LICENSED_RIGHTS_GROUPS,
    Actor,
    ChargeDateOutsidePeriod,
    Cloud,
    ContractTerms,
    HonouredQuote,
    LedgerError,
    normalized_rights_groups,
)

APP_NAME = "ledger"
Clock = Callable[[], datetime]
#: Checks that the caller may run a command on a cloud (raises otherwise).
Authorize = Callable[["Cloud"], None]
R = TypeVar("R")


# --------------------------------------------------------------------------------------------
# Errors of the service layer.


class CloudNotFound(LedgerError):
    """No cloud with this id (at that instant)."""


class CloudAlreadyExists(LedgerError):
    """A cloud with this id exists with other terms or another opening seat count."""


class ConcurrencyConflict(LedgerError):
    """Other writers kept changing the cloud; the command was retried and gave up."""


class QuoteNotHonoured(LedgerError):
    """The quote is unknown, expired, for another cloud, or no longer matches the cloud."""


class InvalidEffectiveDate(LedgerError):
    """A quote's effective date lies in the past or outside the current period."""


class LedgerUnavailable(LedgerError):
    """The command could not be run (store unreachable, shutting down)."""


class RequestKeyReused(LedgerError):
    """The request's identity (caller and ``Idempotency-Key``) recorded another command on this
    cloud: a key names one request, a new request needs a new key."""


# --------------------------------------------------------------------------------------------
# The eventsourcing application and the transcodings of the domain's value objects.


class Ledger(Application[UUID]):
    """The event store of the clouds. Its notification log (``ledger``) is the outbox."""

    name = APP_NAME

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(DataclassAsDict(Actor, "ledger_actor"))
        transcoder.register(DataclassAsDict(ContractTerms, "ledger_terms"))
        transcoder.register(DataclassAsDict(HonouredQuote, "ledger_quote"))

    def find(self, cloud_id: UUID) -> Cloud | None:
        try:
            cloud: Any = self.repository.get(cloud_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(cloud, Cloud)
        return cloud

    def history(self, cloud_id: UUID) -> list[Any]:
        return list(self.events.get(cloud_id))

    def cloud_as_of(self, cloud_id: UUID, as_of: datetime) -> Cloud | None:
        """The cloud as it was at the instant ``as_of`` (None if it did not exist yet)."""
        version: int | None = None
        stored: Any
        for stored in self.events.get(cloud_id):
            if stored.timestamp <= as_of:
                version = stored.originator_version
            else:
                break
        if version is None:
            return None
        cloud: Any = self.repository.get(cloud_id, version=version)
        assert isinstance(cloud, Cloud)
        return cloud


# --------------------------------------------------------------------------------------------
# Observation hooks (metrics live outside, in services.ledger.metrics).


class LedgerObserver(Protocol):
    def command_finished(self, command: str, outcome: str, seconds: float) -> None: ...

    def conflict(self) -> None: ...

    def events_appended(self, event_names: Sequence[str]) -> None: ...

    def batch_saved(self, commands: int) -> None: ...


class NullObserver:
    def command_finished(self, command: str, outcome: str, seconds: float) -> None:
        pass

    def conflict(self) -> None:
        pass

    def events_appended(self, event_names: Sequence[str]) -> None:
        pass

    def batch_saved(self, commands: int) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Group commit.

#: A command: given the cloud (None if it does not exist) and the instant, it returns the
#: aggregate to save (the same one, a new one, or None) and its result.
Command = Callable[[Cloud | None, datetime], tuple[Cloud | None, Any]]


@dataclass
class _Job:
    name: str
    cloud_id: UUID
    command: Command
    future: Future[Any]
    started: float


class GroupCommitter:
    """Runs commands on one thread, saving the events of a batch of commands in one
    transaction. A command sees the effects of the commands before it in the batch."""

    def __init__(
        self,
        app: Ledger,
        *,
        clock: Clock,
        observer: LedgerObserver | None = None,
        max_batch: int = 200,
        max_attempts: int = 8,
        cache_size: int = 10_000,
    ) -> None:
        self.app = app
        self.clock = clock
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, Cloud] = OrderedDict()
        self.observer: LedgerObserver = observer or NullObserver()
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="ledger-group-commit", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def submit(self, name: str, cloud_id: UUID, command: Command) -> Future[Any]:
        future: Future[Any] = Future()
        if self._stopped:
            future.set_exception(LedgerUnavailable("the ledger is shutting down"))
            return future
        self.start()
        self._queue.put(_Job(name, cloud_id, command, future, time.perf_counter()))
        return future

    def run(self, name: str, cloud_id: UUID, command: Command, timeout: float = 30.0) -> Any:
        """Submit and wait for the result (raises the command's error)."""
        return self.submit(name, cloud_id, command).result(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                self._process(batch)
            except BaseException as exc:  # never leave a caller waiting
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            if stop:
                break
        # Fail whatever is still queued.
        while True:
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                left.future.set_exception(LedgerUnavailable("the ledger is shutting down"))

    def _load(self, cloud_id: UUID) -> tuple[Cloud | None, bool]:
        """The cloud and whether it was read from the store just now (True) or taken from
        this committer's cache of clouds it saved (False, possibly behind other writers)."""
        cached = self._cache.get(cloud_id)
        if cached is not None:
            self._cache.move_to_end(cloud_id)
            return cached, False
        return self.app.find(cloud_id), True

    def _remember(self, cloud: Cloud) -> None:
        self._cache[cloud.id] = cloud
        self._cache.move_to_end(cloud.id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _process(self, batch: list[_Job], *, fresh_only: bool = False) -> None:
        """Run a batch and save its events in one transaction.

        Clouds come from a cache of what this committer saved last. A stale cloud cannot slip
        through: new events of a stale cloud clash on version with the other writer's and the
        whole batch is reloaded from the store and run again. Commands that recorded nothing on
        a cached cloud (a refusal, a no-op) are not verified by the save, so they run once more
        on a fresh read before they are answered.
        """
        for _attempt in range(self.max_attempts):
            now = self.clock()
            clouds: dict[UUID, Cloud | None] = {}
            from_store: dict[UUID, bool] = {}
            outcomes: list[tuple[_Job, Any, BaseException | None]] = []
            for job in batch:
                if job.cloud_id not in clouds:
                    try:
                        if fresh_only:
                            self._cache.pop(job.cloud_id, None)
                        clouds[job.cloud_id], from_store[job.cloud_id] = self._load(job.cloud_id)
                    except Exception as exc:
                        outcomes.append((job, None, exc))
                        continue
                try:
                    cloud, result = job.command(clouds[job.cloud_id], now)
                except Exception as exc:
                    outcomes.append((job, None, exc))
                    continue
                if cloud is not None:
                    clouds[job.cloud_id] = cloud
                outcomes.append((job, result, None))
            dirty = [c for c in clouds.values() if c is not None and c.pending_events]
            names = [type(e).__name__ for c in dirty for e in c.pending_events]
            try:
                if dirty:
                    self.app.save(*dirty)
            except IntegrityError:
                self.observer.conflict()
                for cloud_id in clouds:
                    self._cache.pop(cloud_id, None)
                fresh_only = True
                continue
            except Exception as exc:
                for cloud_id in clouds:
                    self._cache.pop(cloud_id, None)
                for job, _, _ in outcomes:
                    self._finish(job, None, LedgerUnavailable(f"the event store failed: {exc}"))
                return
            saved = {c.id for c in dirty}
            for cloud in dirty:
                self._remember(cloud)
            if names:
                self.observer.events_appended(names)
                self.observer.batch_saved(len(batch))
            unverified: list[_Job] = []
            for job, result, error in outcomes:
                if job.cloud_id not in saved and not from_store.get(job.cloud_id, True):
                    unverified.append(job)
                else:
                    self._finish(job, result, error)
            if unverified:
                for job in unverified:
                    self._cache.pop(job.cloud_id, None)
                self._process(unverified, fresh_only=True)
            return
        for cloud_id in {job.cloud_id for job in batch}:
            self._cache.pop(cloud_id, None)
        for job in batch:
            self._finish(
                job,
                None,
                ConcurrencyConflict(
                    f"the cloud kept changing; gave up after {self.max_attempts} attempts"
                ),
            )

    def _finish(self, job: _Job, result: Any, error: BaseException | None) -> None:
        seconds = time.perf_counter() - job.started
        if error is None:
            outcome = "success"
        elif isinstance(error, ConcurrencyConflict):
            outcome = "conflict"
        elif isinstance(error, LedgerUnavailable):
            outcome = "error"
        elif isinstance(error, LedgerError) or getattr(error, "status", 500) < 500:
            outcome = "rejected"
        else:
            outcome = "error"
        self.observer.command_finished(job.name, outcome, seconds)
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)


# --------------------------------------------------------------------------------------------
# Quotes.


@dataclass(frozen=True)
class Quote:
    """A price offer for raising a cloud's seats; not an event.

    Quotes are kept server-side (table ``seat_quotes`` of the ledger's database) rather than
    handed out as signed tokens: the API's ``quote_id`` is a plain UUID, every node of the
    ledger sees every quote, and a purchase checks the stored quote against the cloud's state
    at the moment it is recorded (seats unchanged, still the same period, not expired).
    """

    quote_id: UUID
    cloud_id: UUID
    seats_before: int
    seats: int
    charge_date: date
    period_start: date
    period_end: date
    remaining_days: int
    period_days: int
    net: Decimal
    tax: Decimal
    currency: str
    created_at: datetime
    expires_at: datetime

    @property
    def seats_added(self) -> int:
        return self.seats - self.seats_before

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax


class QuoteStore:
    def __init__(self, db: SqlDatabase) -> None:
        self.db = db
        self._table = db.table("seat_quotes")

    def create_table(self) -> None:
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            " quote_id TEXT PRIMARY KEY, cloud_id TEXT NOT NULL,"
            " seats_before INTEGER NOT NULL, seats INTEGER NOT NULL,"
            " charge_date TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT NOT NULL,"
            " remaining_days INTEGER NOT NULL, period_days INTEGER NOT NULL,"
            " net TEXT NOT NULL, tax TEXT NOT NULL, currency TEXT NOT NULL,"
            " created_at TEXT NOT NULL, expires_at TEXT NOT NULL)"
        )

    def put(self, quote: Quote) -> None:
        self.db.execute(
            f"INSERT INTO {self._table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                str(quote.quote_id),
                str(quote.cloud_id),
                quote.seats_before,
                quote.seats,
                quote.charge_date.isoformat(),
                quote.period_start.isoformat(),
                quote.period_end.isoformat(),
                quote.remaining_days,
                quote.period_days,
                str(quote.net),
                str(quote.tax),
                quote.currency,
                quote.created_at.isoformat(),
                quote.expires_at.isoformat(),
            ),
        )

    def get(self, quote_id: UUID) -> Quote | None:
        rows, _ = self.db.execute(
            f"SELECT * FROM {self._table} WHERE quote_id = ?",  # noqa: S608
            (str(quote_id),),
        )
        if not rows:
            return None
        r = rows[0]
        return Quote(
            quote_id=UUID(r[0]),
            cloud_id=UUID(r[1]),
            seats_before=int(r[2]),
            seats=int(r[3]),
            charge_date=date.fromisoformat(r[4]),
            period_start=date.fromisoformat(r[5]),
            period_end=date.fromisoformat(r[6]),
            remaining_days=int(r[7]),
            period_days=int(r[8]),
            net=Decimal(r[9]),
            tax=Decimal(r[10]),
            currency=r[11],
            created_at=datetime.fromisoformat(r[12]),
            expires_at=datetime.fromisoformat(r[13]),
        )

    def purge_expired(self, now: datetime) -> int:
        # ISO 8601 UTC strings of one format order like the instants they denote.
        _, count = self.db.execute(
            f"DELETE FROM {self._table} WHERE expires_at < ?",  # noqa: S608
            (now.isoformat(),),
        )
        return count


def quote_expiry(now: datetime, time_zone: str, ttl_s: int) -> datetime:
    """``now + ttl``, but never past the next local midnight of the contract's zone."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    return min(now + timedelta(seconds=ttl_s), midnight.astimezone(now.tzinfo))


# --------------------------------------------------------------------------------------------
# The owner index: which clouds exist and whose they are, read from the notification log.


class CloudIndex:
    """Cloud ids by owner, kept up to date from the ``ContractOpened`` notifications (the
    store is the truth; every node catches up before answering)."""

    def __init__(self, app: Ledger, *, batch: int = 500) -> None:
        self.app = app
        self.batch = batch
        self._topic = get_topic(Cloud.ContractOpened)
        self._position = 0
        self._by_owner: dict[str, list[UUID]] = {}
        self._all: list[UUID] = []
        self._lock = threading.Lock()

    def catch_up(self) -> None:
        with self._lock:
            while True:
                notifications = self.app.recorder.select_notifications(
                    start=self._position,
                    limit=self.batch,
                    topics=[self._topic],
                    inclusive_of_start=False,
                )
                for notification in notifications:
                    opened: Any = self.app.mapper.to_domain_event(notification)
                    owner = opened.terms.owner_id
                    self._by_owner.setdefault(owner, []).append(opened.originator_id)
                    self._all.append(opened.originator_id)
                    self._position = notification.id
                if len(notifications) < self.batch:
                    return

    def owned_by(self, owner_id: str) -> list[UUID]:
        self.catch_up()
        with self._lock:
            return list(self._by_owner.get(owner_id, []))

    def all(self) -> list[UUID]:
        self.catch_up()
        with self._lock:
            return list(self._all)


# --------------------------------------------------------------------------------------------
# The use cases.


#: The namespace of the cloud ids derived from the request that opens a cloud without one.
OPENED_CLOUD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://seatledger.dev/ledger/opened-by")


def opened_cloud_id(request_key: str) -> UUID:
    """The id of a cloud opened without ``cloud_id`` under the request ``request_key``: the same
    for every retry of the request, so a retry finds the cloud its first attempt opened."""
    return uuid.uuid5(OPENED_CLOUD_NAMESPACE, request_key)


def request_identity(principal: str, key: str) -> str:
    """The identity of a request under an ``Idempotency-Key``, recorded with its event: a
    SHA-256 of the caller's subject and the key (the key itself is never stored)."""
    digest = hashlib.sha256()
    for part in (principal.encode(), key.encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def snapshot(cloud: Cloud) -> Cloud:
    """A copy of ``cloud`` for answering: the committer goes on changing the original."""
    copied = copy.copy(cloud)
    copied.licenses = dict(cloud.licenses)
    copied.recent_requests = dict(getattr(cloud, "recent_requests", None) or {})
    copied._pending_events = []
    return copied


@dataclass(frozen=True)
class LicenseChange:
    """What a license command answers (no copy of the whole cloud)."""

    cloud_id: UUID
    seats: int
    licenses_assigned: int
    licenses_free: int
    version: int

    @classmethod
    def of(cls, cloud: Cloud) -> LicenseChange:
        return cls(
            cloud.id, cloud.seats, cloud.licenses_assigned, cloud.licenses_free, cloud.version
        )


@dataclass(frozen=True)
class RightsGroupState:
    """What a rights-group change answers: the user's license state after it."""

    cloud_id: UUID
    user_id: str
    rights_group: str
    holds_license: bool
    outcome: str
    seats: int
    licenses_assigned: int
    licenses_free: int
    version: int


@dataclass(frozen=True)
class OpenCloud:
    cloud_id: UUID | None
    terms: ContractTerms
    seats: int
    licensed_rights_groups: tuple[str, ...]


class LedgerService:
    """The verbs of the ledger. Each command first records any renewal that is due, so a
    purchase is always prorated against the cloud's current period."""

    def __init__(
        self,
        app: Ledger,
        committer: GroupCommitter,
        quotes: QuoteStore,
        index: CloudIndex,
        *,
        clock: Clock,
        quote_ttl_s: int = 900,
        command_timeout_s: float = 30.0,
        licensed_rights_groups: Sequence[str] = DEFAULT_LICENSED_RIGHTS_GROUPS,
    ) -> None:
        self.licensed_rights_groups = tuple(licensed_rights_groups)
        self.app = app
        self.committer = committer
        self.quotes = quotes
        self.index = index
        self.clock = clock
        self.quote_ttl_s = quote_ttl_s
        self.command_timeout_s = command_timeout_s

    # ---- commands (synchronous; the HTTP layer awaits the futures instead) --------------

    def submit_open(
        self, request: OpenCloud, actor: Actor, *, request_key: str | None = None
    ) -> Future[tuple[Cloud, bool]]:
        """Open a cloud; the result is the cloud and whether this request opened it.

        ``request_key`` (:func:`request_identity`) is recorded with ``ContractOpened``. Without
        a ``cloud_id`` the id is derived from it (:func:`opened_cloud_id`; a random one without
        a key). A request whose identity opened the cloud is answered as the first time: the
        cloud as it was opened, created (201). Anyone else naming an existing cloud gets it
        (not created) when the terms are the same, else :class:`CloudAlreadyExists`."""
        if request.cloud_id is not None:
            cloud_id = request.cloud_id
        elif request_key is not None:
            cloud_id = opened_cloud_id(request_key)
        else:
            cloud_id = uuid.uuid4()

        def command(cloud: Cloud | None, now: datetime) -> tuple[Cloud | None, Any]:
            if cloud is not None:
                same = (
                    replace(cloud.terms, billing_email=request.terms.billing_email) == request.terms
                    and cloud.opening_seats == request.seats
                    and cloud.licensed_rights_groups
                    == normalized_rights_groups(request.licensed_rights_groups)
                )
                opened_by_this_request = request_key is not None and (
                    getattr(cloud, "opening_request_key", None) == request_key
                )
                if opened_by_this_request:
                    # The body's terms and seats (the licensed groups are the configuration's
                    # and may have been respelt between the attempts).
                    opened = self._at_version(cloud, 1)
                    if (opened.terms, opened.opening_seats) != (request.terms, request.seats):
                        raise RequestKeyReused(
                            "this Idempotency-Key opened this cloud with other terms; use a "
                            "new key for a new request"
                        )
                    return None, (opened, True)
                if not same:
                    raise CloudAlreadyExists(
                        "a cloud with this id exists with other terms or opening seats"
                    )
                return None, (snapshot(cloud), False)
            new = Cloud.open(
                cloud_id=cloud_id,
                terms=request.terms,
                seats=request.seats,
                licensed_rights_groups=request.licensed_rights_groups,
                actor=actor,
                at=now,
                request_key=request_key,
            )
            return new, (snapshot(new), True)

        return self.committer.submit("open_cloud", cloud_id, command)

    def _on_cloud(
        self,
        name: str,
        cloud_id: UUID,
        change: Callable[[Cloud, datetime], Any],
        authorize: Authorize | None = None,
        *,
        replay: Callable[[Cloud], Any] | None = None,
    ) -> Future[Any]:
        """Run ``change`` on the cloud (after authorizing and recording the renewals due).
        ``replay`` answers first when it returns a result (not None): the request was
        committed before, nothing is run or recorded again."""

        def command(cloud: Cloud | None, now: datetime) -> tuple[Cloud | None, Any]:
            if cloud is None:
                raise CloudNotFound(f"no cloud {cloud_id}")
            if authorize is not None:
                authorize(cloud)
            if replay is not None:
                replayed = replay(cloud)
                if replayed is not None:
                    return cloud, replayed
            cloud.renew_due(at=now)
            result = change(cloud, now)
            return cloud, result

        return self.committer.submit(name, cloud_id, command)

    def submit_purchase(
        self,
        cloud_id: UUID,
        seats: int,
        actor: Actor,
        quote_id: UUID | None = None,
        *,
        authorize: Authorize | None = None,
        request_key: str | None = None,
    ) -> Future[tuple[Cloud, Cloud.SeatsIncreased]]:
        """Buy seats; the result is the cloud and its new ``SeatsIncreased`` event.

        ``request_key`` (:func:`request_identity` of the caller and its ``Idempotency-Key``)
        is recorded with the event; a purchase whose key the cloud has recorded already is
        answered with that committed purchase (the cloud as it was then and its event)."""
        quote = self.quotes.get(quote_id) if quote_id is not None else None

        def change(cloud: Cloud, now: datetime) -> tuple[Cloud, Cloud.SeatsIncreased]:
            if quote_id is not None and (quote is None or quote.cloud_id != cloud_id):
                raise QuoteNotHonoured("no such quote for this cloud")
            honoured = None
            if quote is not None:
                if now >= quote.expires_at:
                    raise QuoteNotHonoured("the quote has expired; ask for a new one")
                if seats != quote.seats:
                    raise QuoteNotHonoured(
                        f"the quote is for {quote.seats} seats, the purchase for {seats}"
                    )
                if cloud.seats != quote.seats_before or (
                    cloud.current_period.start != quote.period_start
                ):
                    raise QuoteNotHonoured("the cloud changed since the quote; ask for a new one")
                honoured = HonouredQuote(quote.quote_id, quote.charge_date, quote.net)
            cloud.increase_seats(
                seats=seats, actor=actor, at=now, quote=honoured, request_key=request_key
            )
            event = cloud.pending_events[-1]
            assert isinstance(event, Cloud.SeatsIncreased)
            return snapshot(cloud), event

        def replay(cloud: Cloud) -> tuple[Cloud, Cloud.SeatsIncreased] | None:
            committed = self._committed(
                cloud,
                request_key,
                Cloud.SeatsIncreased,
                lambda e: (
                    e.seats_after == seats
                    and (e.quote.quote_id if e.quote is not None else None) == quote_id
                ),
            )
            if committed is None:
                return None
            then, event = committed
            assert isinstance(event, Cloud.SeatsIncreased)
            return then, event

        return self._on_cloud("purchase_seats", cloud_id, change, authorize, replay=replay)

    def submit_reduction(
        self,
        cloud_id: UUID,
        seats: int,
        actor: Actor,
        *,
        authorize: Authorize | None = None,
        request_key: str | None = None,
    ) -> Future[Cloud]:
        """Schedule a reduction; ``request_key`` as for :meth:`submit_purchase` (a committed
        reduction answers the cloud as it was after it)."""

        def change(cloud: Cloud, now: datetime) -> Cloud:
            cloud.schedule_reduction(seats=seats, actor=actor, at=now, request_key=request_key)
            return snapshot(cloud)

        def replay(cloud: Cloud) -> Cloud | None:
            committed = self._committed(
                cloud, request_key, Cloud.SeatReductionScheduled, lambda e: e.seats == seats
            )
            return None if committed is None else committed[0]

        return self._on_cloud("schedule_reduction", cloud_id, change, authorize, replay=replay)

    def _committed(
        self,
        cloud: Cloud,
        request_key: str | None,
        kinds: type[Any] | tuple[type[Any], ...],
        same_request: Callable[[Any], bool],
    ) -> tuple[Cloud, Any] | None:
        """The cloud as it was after the event recorded by ``request_key`` and that event, or
        None when the cloud recorded no such request (reads the store only on a retry).

        The event must be one of ``kinds`` and ``same_request`` of it: the same key used for
        another command is refused (:class:`RequestKeyReused`), never answered as this one."""
        if request_key is None:
            return None
        version = cloud.committed_request(request_key)
        if version is None:
            return None
        event: Any = next(
            (e for e in cloud.pending_events if e.originator_version == version), None
        )
        if event is None:
            events = list(self.app.events.get(cloud.id, gt=version - 1, lte=version))
            if not events:  # pragma: no cover - the version was read from the stored events
                return None
            event = events[0]
        if not isinstance(event, kinds) or not same_request(event):
            raise RequestKeyReused(
                "this Idempotency-Key recorded another request on this cloud; use a new key "
                "for a new request"
            )
        return self._at_version(cloud, version), event

    def _at_version(self, cloud: Cloud, version: int) -> Cloud:
        """A copy of ``cloud`` as it was at ``version`` (read from the store when it changed
        since)."""
        if version == cloud.version:
            return snapshot(cloud)
        then: Any = self.app.repository.get(cloud.id, version=version)
        assert isinstance(then, Cloud)
        return then

    def submit_assign(
        self,
        cloud_id: UUID,
        user_id: str,
        rights_group: str,
        actor: Actor,
        *,
        authorize: Authorize | None = None,
        request_key: str | None = None,
    ) -> Future[LicenseChange]:
        """Assign a license; ``request_key`` as for :meth:`submit_purchase` (a committed
        assignment answers the license counts as it left them)."""

        def change(cloud: Cloud, now: datetime) -> LicenseChange:
            cloud.assign_license(
                user_id=user_id,
                rights_group=rights_group,
                actor=actor,
                at=now,
                request_key=request_key,
            )
            return LicenseChange.of(cloud)

        def replay(cloud: Cloud) -> LicenseChange | None:
            committed = self._committed(
                cloud,
                request_key,
                Cloud.LicenseAssigned,
                lambda e: e.user_id == user_id and e.rights_group == rights_group,
            )
            return None if committed is None else LicenseChange.of(committed[0])

        return self._on_cloud("assign_license", cloud_id, change, authorize, replay=replay)

    def submit_release(
        self,
        cloud_id: UUID,
        user_id: str,
        actor: Actor,
        *,
        rights_group: str | None = None,
        authorize: Authorize | None = None,
        request_key: str | None = None,
    ) -> Future[LicenseChange]:
        """Release a license; ``request_key`` as for :meth:`submit_assign`."""

        def change(cloud: Cloud, now: datetime) -> LicenseChange:
            cloud.release_license(
                user_id=user_id,
                actor=actor,
                at=now,
                rights_group=rights_group,
                request_key=request_key,
            )
            return LicenseChange.of(cloud)

        def replay(cloud: Cloud) -> LicenseChange | None:
            committed = self._committed(
                cloud,
                request_key,
                Cloud.LicenseReleased,
                lambda e: e.user_id == user_id and e.rights_group == rights_group,
            )
            return None if committed is None else LicenseChange.of(committed[0])

        return self._on_cloud("release_license", cloud_id, change, authorize, replay=replay)

    def submit_rights_group(
        self,
        cloud_id: UUID,
        user_id: str,
        rights_group: str,
        actor: Actor,
        *,
        previous_rights_group: str | None = None,
        authorize: Authorize | None = None,
        request_key: str | None = None,
    ) -> Future[RightsGroupState]:
        """Put a user in a rights group; the group decides whether they hold a license.
        ``request_key`` as for :meth:`submit_purchase`: a committed change (assigned, changed
        or released) is answered with the user's state as it left it (an unchanged outcome
        recorded nothing and is simply run again)."""

        def state(cloud: Cloud, outcome: str) -> RightsGroupState:
            return RightsGroupState(
                cloud_id=cloud.id,
                user_id=user_id,
                rights_group=rights_group,
                holds_license=user_id in cloud.licenses,
                outcome=outcome,
                seats=cloud.seats,
                licenses_assigned=cloud.licenses_assigned,
                licenses_free=cloud.licenses_free,
                version=cloud.version,
            )

        def change(cloud: Cloud, now: datetime) -> RightsGroupState:
            outcome = cloud.set_rights_group(
                user_id=user_id,
                rights_group=rights_group,
                actor=actor,
                at=now,
                previous_rights_group=previous_rights_group,
                request_key=request_key,
            )
            return state(cloud, outcome)

        outcomes: dict[type[Any], str] = {
            Cloud.LicenseAssigned: "assigned",
            Cloud.LicenseRightsGroupChanged: "changed",
            Cloud.LicenseReleased: "released",
        }

        def replay(cloud: Cloud) -> RightsGroupState | None:
            committed = self._committed(
                cloud,
                request_key,
                tuple(outcomes),
                lambda e: e.user_id == user_id and e.rights_group == rights_group,
            )
            if committed is None:
                return None
            then, event = committed
            return state(then, outcomes[type(event)])

        return self._on_cloud("set_rights_group", cloud_id, change, authorize, replay=replay)

    def submit_billing_email(
        self,
        cloud_id: UUID,
        billing_email: str,
        actor: Actor,
        *,
        authorize: Authorize | None = None,
        request_key: str | None = None,
    ) -> Future[Cloud]:
        """Change the billing e-mail; ``request_key`` as for :meth:`submit_reduction`."""

        def change(cloud: Cloud, now: datetime) -> Cloud:
            cloud.change_billing_email(
                billing_email=billing_email, actor=actor, at=now, request_key=request_key
            )
            return snapshot(cloud)

        def replay(cloud: Cloud) -> Cloud | None:
            committed = self._committed(
                cloud,
                request_key,
                Cloud.BillingEmailChanged,
                lambda e: e.billing_email == billing_email,
            )
            return None if committed is None else committed[0]

        return self._on_cloud("change_billing_email", cloud_id, change, authorize, replay=replay)

    def submit_renewal(self, cloud_id: UUID) -> Future[Cloud]:
        return self._on_cloud("renew", cloud_id, lambda cloud, now: snapshot(cloud))

    def wait(self, future: Future[R]) -> R:
        return future.result(self.command_timeout_s)

    # ---- quotes ---------------------------------------------------------------------------

    def quote(self, cloud_id: UUID, seats: int, effective_date: date | None) -> Quote:
        """Price raising the seats to ``seats``; stores the quote and records no event."""
        now = self.clock()
        cloud = self.app.find(cloud_id)
        if cloud is None:
            raise CloudNotFound(f"no cloud {cloud_id}")
        cloud.renew_due(at=now)  # price against the current period; nothing is saved here
        today = local_date(now, cloud.terms.time_zone)
        charge_date = cloud.charge_date_at(now)
        if effective_date is not None:
            if effective_date < today:
                raise InvalidEffectiveDate("the effective date lies in the past")
            if effective_date not in cloud.current_period:
                raise InvalidEffectiveDate(
                    "the effective date lies outside the current period "
                    f"{cloud.current_period.start} to {cloud.current_period.end}"
                )
            charge_date = max(effective_date, charge_date)
        try:
            proration = cloud.quote(seats=seats, charge_date=charge_date)
        except ChargeDateOutsidePeriod as exc:
            raise InvalidEffectiveDate(str(exc)) from exc
        terms = cloud.terms
        quote = Quote(
            quote_id=uuid.uuid4(),
            cloud_id=cloud_id,
            seats_before=cloud.seats,
            seats=seats,
            charge_date=charge_date,
            period_start=proration.period.start,
            period_end=proration.period.end,
            remaining_days=proration.remaining_days,
            period_days=proration.period_days,
            net=proration.net,
            tax=tax_amount(proration.net, terms.tax_rate, terms.currency),
            currency=terms.currency,
            created_at=now,
            expires_at=quote_expiry(now, terms.time_zone, self.quote_ttl_s),
        )
        self.quotes.put(quote)
        return quote

    # ---- queries ----------------------------------------------------------------------------

    def get(self, cloud_id: UUID, as_of: datetime | None = None) -> Cloud:
        cloud = self.app.find(cloud_id) if as_of is None else self.app.cloud_as_of(cloud_id, as_of)
        if cloud is None:
            raise CloudNotFound(f"no cloud {cloud_id}")
        return cloud

    def clouds_of(self, owner_id: str) -> Iterator[Cloud]:
        for cloud_id in self.index.owned_by(owner_id):
            cloud = self.app.find(cloud_id)
            if cloud is not None:
                yield cloud

    def history(self, cloud_id: UUID) -> list[Any]:
        events = self.app.history(cloud_id)
        if not events:
            raise CloudNotFound(f"no cloud {cloud_id}")
        return events
