"""The ``Idempotency-Key`` mechanism of every mutating request.

- Same key and same request (method, path, query string, body) -> the first response again,
  byte for byte.
- Same key, another request -> 422 problem+json.
- Same key while the first request is still being processed -> 409 problem+json.

Keys are scoped by the authenticated subject (a key of one user never replays another user's
response; a request with more than one ``Authorization`` header is refused before this
middleware, so the subject is the one the route acts as) and stored in the service's own
database (:class:`IdempotencyStore`), so every node of a service sees them. A key is claimed
only for a request whose body arrived whole: a client that disconnects mid-body claims nothing.

A key "in flight" belongs to the process that claimed it. Each process keeps a heartbeat row in
the same database (every ``heartbeat_interval_s``, 2 s); a key whose process has not beaten for
``dead_after_s`` (10 s: the process was killed) is taken over by the next retry, which runs the
request again (the ledger answers the committed result of a command already recorded under the
key). A key whose process still beats is never taken over, however long it is in flight (e.g. a
command kept open by :meth:`PendingKey.settle_later` through a long outage). ``stale_after_s``
(60 s) frees only a key that names no process (claimed before processes were recorded).
A process judges another dead only once its own heartbeats have succeeded without a break for
``dead_after_s``: right after an outage of the database nobody could beat, so an old heartbeat
then says nothing, and the owner gets the time to beat again before its keys are taken. (A
key whose process has no heartbeat row at all is taken over at once: a live process beats
before it claims.)

The claim is fenced: only the claim holding a key (its process and its own ``claim_id``)
stores its answer or releases it, so a process whose key was taken over (it was paused, or cut
off from the database, for longer than ``dead_after_s``) changes nothing when it settles
(logged ``idempotency_settle_ignored``), and a late release of an earlier claim never frees a
later claim of the same key.
Every time written or compared (claims, heartbeats) is the database's clock
(:attr:`SqlDatabase.clock_sql`), never a host's: the clock skew of a node cannot make a live
process look dead.

A request whose claim fails (the database dropped the connection, perhaps after the claim
committed) is answered 503 and its key released in the background, as is any key whose request
fails before its answer is settled: a 5xx never leaves a key in flight.

A response kept for its key is stored before it is sent, so a client that received it finds
it stored even if the process dies right after sending.

Which responses are kept for the key (:func:`is_outcome`): only those that are the request's
real outcome, the answer every retry of it would get again:

- 2xx;
- 400, 404, 409, 410 and 422: deterministic refusals of the request itself (a malformed body,
  an unknown cloud, a business rule such as "Seats must grow" or "No free seat").

Every other response releases the key (nothing is stored, a retry with the key runs the request
again): 401 and 403 (the caller may re-authenticate, e.g. the RFC 9470 step-up retry, or be
granted the right), 408, 425, 429, 5xx, any other status, and a 409 whose problem type is in
:data:`TRANSIENT_PROBLEM_TYPES` (a concurrency conflict that outlasted the retries: nothing was
recorded and a retry may succeed).

A route that answers before its command is settled (a 503 when the command outlasts its time
limit, while the command is still queued and may commit) keeps the key in flight with
:meth:`PendingKey.settle_later`: retries get 409 "in progress" until the command resolves, then
the real response, rendered and stored (or the key released) by the rule above.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from seatledger.http.limits import replay_body
from seatledger.http.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from seatledger.http.sqldb import SqlDatabase
from seatledger.logging import get_logger

HEADER = "idempotency-key"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

#: The problem type of a command that lost to other writers more often than it was retried.
CONCURRENT_MODIFICATION = PROBLEM_BASE + "concurrent-modification"
#: Problem types of refusals that a retry may turn into success: they release the key.
TRANSIENT_PROBLEM_TYPES = frozenset({CONCURRENT_MODIFICATION})
#: Client errors that are the request's own outcome: kept for the key.
FINAL_CLIENT_ERRORS = frozenset({400, 404, 409, 410, 422})
#: The key of the request in the ASGI scope (a :class:`PendingKey`), for routes.
SCOPE_KEY = "seatledger.idempotency_key"
#: A rendered response: status, raw headers, body.
Rendered = tuple[int, Iterable[tuple[bytes, bytes]], bytes]

_log = get_logger("seatledger.http.idempotency")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: ``new`` (process the request), ``replay`` (answer with
    ``response``), ``mismatch`` (other request under this key) or ``in_flight``."""

    outcome: str
    response: StoredResponse | None = None
    #: The claim's own id (``new``): only that claim stores the key's answer or releases it.
    claim_id: str | None = None


class IdempotencyStore:
    """Keys and first responses in the table ``idempotency_keys`` of the service's database;
    the heartbeats of the processes holding keys in flight in ``idempotency_instances``."""

    def __init__(
        self,
        db: SqlDatabase,
        *,
        stale_after_s: float = 60.0,
        heartbeat_interval_s: float = 2.0,
        dead_after_s: float = 10.0,
        release_retry_s: float = 300.0,
        keep_answers_s: float = 86400.0,
    ) -> None:
        self.db = db
        #: How long a key's kept answer is replayed; older answers are pruned (the key may
        #: then be used again).
        self.keep_answers_s = keep_answers_s
        self._next_prune = 0.0
        self.stale_after_s = stale_after_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.dead_after_s = dead_after_s
        self.release_retry_s = release_retry_s
        self.instance = uuid.uuid4().hex
        self._table = db.table("idempotency_keys")
        self._instances = db.table("idempotency_instances")
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_lock = threading.Lock()
        self._stopped = threading.Event()
        #: Since when (monotonic) this process's own heartbeats have succeeded without a
        #: break; None while they fail. Only a process that has been beating for
        #: ``dead_after_s`` judges another dead: after an outage of the database nobody could
        #: beat, and the others' old heartbeats say nothing about them.
        self._beating_since: float | None = None
        # Settlements the database refused, retried by one background thread.
        self._unsettled: dict[tuple[str, str, str | None], StoredResponse | None] = {}
        self._unsettled_lock = threading.Lock()
        self._settler: threading.Thread | None = None

    def create_table(self) -> None:
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            " principal TEXT NOT NULL,"
            " key TEXT NOT NULL,"
            " fingerprint TEXT NOT NULL,"
            " state TEXT NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " status INTEGER,"
            " headers TEXT,"
            " body TEXT,"
            " instance TEXT,"
            " claim_id TEXT,"
            " PRIMARY KEY (principal, key))"
        )
        self.db.add_column("idempotency_keys", "instance", "TEXT")
        self.db.add_column("idempotency_keys", "claim_id", "TEXT")
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._instances} ("
            " instance TEXT PRIMARY KEY,"
            " heartbeat_at DOUBLE PRECISION NOT NULL)"
        )

    # The heartbeat of this process.

    def beat(self) -> None:
        """Record that this process is alive, at the database's time."""
        try:
            self.db.execute(
                f"INSERT INTO {self._instances} (instance, heartbeat_at)"  # noqa: S608
                f" VALUES (?, {self.db.clock_sql})"
                " ON CONFLICT (instance) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (self.instance,),
            )
        except Exception:
            self._beating_since = None
            raise
        if self._beating_since is None:
            self._beating_since = time.monotonic()

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is not None:
            return
        with self._heartbeat_lock:
            if self._heartbeat is not None:
                return
            self.beat()
            self._heartbeat = threading.Thread(
                target=self._beat_forever, name="idempotency-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _beat_forever(self) -> None:
        interval = self.heartbeat_interval_s
        while not self._stopped.wait(interval):
            if self.db.closed:
                return
            # After a failed beat, the next one comes sooner: the database may be back.
            interval = min(self.heartbeat_interval_s, 0.5)
            try:
                self.beat()
                interval = self.heartbeat_interval_s
                if time.monotonic() >= self._next_prune:
                    self.prune()
                    self._next_prune = time.monotonic() + 60.0
                # Forget processes dead for a day (their keys count as ownerless).
                self.db.execute(
                    f"DELETE FROM {self._instances}"  # noqa: S608
                    f" WHERE heartbeat_at < {self.db.clock_sql} - ?",
                    (86400.0,),
                )
            except Exception as exc:  # the database is away: beat again next time
                _log.warning("idempotency_heartbeat_failed", error_type=type(exc).__name__)

    def prune(self) -> int:
        """Forget the answers kept longer than ``keep_answers_s`` (the heartbeat calls it once a
        minute); keys in flight are never pruned. The number of keys forgotten."""
        _, pruned = self.db.execute(
            f"DELETE FROM {self._table}"  # noqa: S608
            f" WHERE state = 'done' AND created_at < {self.db.clock_sql} - ?",
            (self.keep_answers_s,),
        )
        return max(pruned, 0)

    def stop(self) -> None:
        """Stop the heartbeat (keys still in flight are taken over by other processes)."""
        self._stopped.set()

    def _owner_gone(
        self, instance: str | None, heartbeat_at: float | None, created_at: float, now: float
    ) -> bool:
        """Whether a pending key may be taken over: its process is dead (no heartbeat within
        ``dead_after_s``, or none recorded any more), or, for a key naming no process, it is
        older than ``stale_after_s``. All times are the database's."""
        if instance == self.instance:
            return False  # this process holds it and settles it
        if instance is None:
            return now - created_at > self.stale_after_s
        if heartbeat_at is None:
            return True  # a live process beats before it claims: its row would be there
        beating_since = self._beating_since
        if beating_since is None or time.monotonic() - beating_since < self.dead_after_s:
            return False  # this process cannot tell yet: it has not been beating long enough
        return now - heartbeat_at > self.dead_after_s

    # Keys.

    def claim(
        self, principal: str, key: str, fingerprint: str, *, claim_id: str | None = None
    ) -> Claim:
        """Claim a key for a request. ``claim_id`` (a fresh id by default) names this claim:
        a caller that does not learn the outcome (the database failed) can still release the
        claim if it was recorded, without touching a later one."""
        claim_id = claim_id or uuid.uuid4().hex
        self._ensure_heartbeat()
        clock = self.db.clock_sql
        _, inserted = self.db.execute(
            f"INSERT INTO {self._table}"  # noqa: S608
            " (principal, key, fingerprint, state, created_at, instance, claim_id)"
            f" VALUES (?, ?, ?, 'pending', {clock}, ?, ?) ON CONFLICT (principal, key) DO NOTHING",
            (principal, key, fingerprint, self.instance, claim_id),
        )
        if inserted == 1:
            return Claim("new", claim_id=claim_id)
        rows, _ = self.db.execute(
            "SELECT k.fingerprint, k.state, k.created_at, k.status, k.headers, k.body,"  # noqa: S608
            f" k.instance, h.heartbeat_at, {clock}"
            f" FROM {self._table} AS k LEFT JOIN {self._instances} AS h"
            " ON h.instance = k.instance WHERE k.principal = ? AND k.key = ?",
            (principal, key),
        )
        if not rows:  # released between the two statements: try once more
            return self.claim(principal, key, fingerprint, claim_id=claim_id)
        (
            stored_fingerprint,
            state,
            created_at,
            status,
            headers,
            body,
            instance,
            heartbeat_at,
            now,
        ) = rows[0]
        if stored_fingerprint != fingerprint:
            return Claim("mismatch")
        if state == "done":
            return Claim(
                "replay",
                StoredResponse(
                    int(status),
                    [(str(k), str(v)) for k, v in json.loads(headers)],
                    bytes.fromhex(body),
                ),
            )
        if not self._owner_gone(
            instance,
            None if heartbeat_at is None else float(heartbeat_at),
            float(created_at),
            float(now),
        ):
            return Claim("in_flight")
        # Taken over only if it is still the same claim and its owner did not beat meanwhile.
        owner_is = "k.instance IS NULL" if instance is None else "k.instance = ?"
        _, taken = self.db.execute(
            f"UPDATE {self._table} AS k SET created_at = {clock}, instance = ?, claim_id = ?"  # noqa: S608
            f" WHERE k.principal = ? AND k.key = ? AND k.state = 'pending' AND {owner_is}"
            " AND k.created_at = ? AND NOT EXISTS (SELECT 1 FROM"
            f" {self._instances} AS h WHERE h.instance = k.instance"
            f" AND h.heartbeat_at >= {clock} - ?)",
            (
                self.instance,
                claim_id,
                principal,
                key,
                *(() if instance is None else (instance,)),
                created_at,
                self.dead_after_s,
            ),
        )
        if taken == 1:
            _log.info("idempotency_key_taken_over", ownerless=instance is None)
            return Claim("new", claim_id=claim_id)
        return Claim("in_flight")

    def _holder(self, claim_id: str | None) -> tuple[str, tuple[str, ...]]:
        """The condition (and its parameters) that a key is held by this process, and by the
        claim ``claim_id`` when given."""
        if claim_id is None:
            return "instance = ?", (self.instance,)
        return "instance = ? AND claim_id = ?", (self.instance, claim_id)

    def complete(
        self, principal: str, key: str, response: StoredResponse, claim_id: str | None = None
    ) -> None:
        """Store the answer of a key this process (and claim) holds; a key taken over by
        another process is left to it."""
        holder, holder_params = self._holder(claim_id)
        _, changed = self.db.execute(
            f"UPDATE {self._table} SET state = 'done', status = ?, headers = ?, body = ?"  # noqa: S608
            f" WHERE principal = ? AND key = ? AND state = 'pending' AND {holder}",
            (
                response.status,
                json.dumps(response.headers),
                response.body.hex(),
                principal,
                key,
                *holder_params,
            ),
        )
        if changed != 1:
            self._log_not_held(principal, key, claim_id, "complete")

    def release(self, principal: str, key: str, claim_id: str | None = None) -> None:
        """Free a key this process (and claim) holds; a key taken over by another process is
        left to it."""
        holder, holder_params = self._holder(claim_id)
        _, changed = self.db.execute(
            f"DELETE FROM {self._table}"  # noqa: S608
            f" WHERE principal = ? AND key = ? AND state = 'pending' AND {holder}",
            (principal, key, *holder_params),
        )
        if changed != 1:
            self._log_not_held(principal, key, claim_id, "release")

    def _log_not_held(self, principal: str, key: str, claim_id: str | None, action: str) -> None:
        """Log a settlement that changed nothing because another claim holds the key (a key
        not claimed at all, or already settled by this claim, is not worth a line)."""
        try:
            rows, _ = self.db.execute(
                f"SELECT instance, claim_id FROM {self._table}"  # noqa: S608
                " WHERE principal = ? AND key = ?",
                (principal, key),
            )
        except Exception:  # only a diagnosis: the settlement itself is done
            return
        if not rows:
            return
        instance, holder = rows[0]
        if instance != self.instance or (claim_id is not None and holder != claim_id):
            _log.warning("idempotency_settle_ignored", action=action, reason="taken_over")

    def release_in_background(self, principal: str, key: str, claim_id: str) -> None:
        """Release the claim ``claim_id`` of the key if it was recorded, in the background,
        retried while the database does not answer (for a claim whose outcome is unknown:
        it may have committed before the database failed)."""
        self._settle_in_background(principal, key, None, claim_id)

    def settle_or_retry(
        self,
        principal: str,
        key: str,
        response: StoredResponse | None,
        claim_id: str | None = None,
    ) -> None:
        """Store ``response`` for the key (None: release it); when the database does not
        answer, keep trying in the background until it does (an error is logged past
        ``release_retry_s``), so that a key is not left in flight by an outage."""
        try:
            self._settle(principal, key, response, claim_id)
        except Exception as exc:
            _log.warning("idempotency_settle_deferred", error_type=type(exc).__name__)
            self._settle_in_background(principal, key, response, claim_id)

    def _settle(
        self, principal: str, key: str, response: StoredResponse | None, claim_id: str | None
    ) -> None:
        if response is None:
            self.release(principal, key, claim_id)
        else:
            self.complete(principal, key, response, claim_id)

    def _settle_in_background(
        self, principal: str, key: str, response: StoredResponse | None, claim_id: str | None
    ) -> None:
        with self._unsettled_lock:
            self._unsettled[(principal, key, claim_id)] = response
            if self._settler is None:
                self._settler = threading.Thread(
                    target=self._settle_pending, name="idempotency-settle-retry", daemon=True
                )
                self._settler.start()

    def _settle_pending(self) -> None:
        """Retry the refused settlements until each is done. Never given up while the process
        runs: a live process's key is not taken over, so an abandoned settlement would leave
        its key in flight for good. Past ``release_retry_s`` without success, an error is
        logged (once) and the tries go on, every 5 s at most."""
        deadline = time.monotonic() + self.release_retry_s
        overdue = False
        delay = 0.0
        while True:
            if self._stopped.wait(delay) or self.db.closed:
                with self._unsettled_lock:
                    self._settler = None
                return
            with self._unsettled_lock:
                if not self._unsettled:
                    self._settler = None
                    return
                pending = list(self._unsettled.items())
            failure: Exception | None = None
            for (principal, key, claim_id), response in pending:
                try:  # each on its own: one that keeps failing holds up no other
                    self._settle(principal, key, response, claim_id)
                except Exception as exc:
                    failure = exc
                    continue
                with self._unsettled_lock:
                    self._unsettled.pop((principal, key, claim_id), None)
                _log.info("idempotency_settle_recovered")
            if failure is not None:
                if not overdue and time.monotonic() > deadline:
                    overdue = True
                    _log.error("idempotency_settle_overdue", error_type=type(failure).__name__)
                delay = min(max(delay * 2, 0.2), 5.0)
                continue
            deadline = time.monotonic() + self.release_retry_s
            overdue = False
            delay = 0.0


_REPLAYED_HEADERS = frozenset({"content-type", "location", "www-authenticate"})


def is_outcome(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> bool:
    """Whether a response is the request's real outcome, kept for its key (see the module)."""
    if 200 <= status < 300:
        return True
    if status not in FINAL_CLIENT_ERRORS:
        return False
    if status == 409:
        return _problem_type(headers, body) not in TRANSIENT_PROBLEM_TYPES
    return True


def _problem_type(headers: Iterable[tuple[str, str]], body: bytes) -> str | None:
    content_type = next((v for k, v in headers if k == "content-type"), "")
    if content_type.split(";", 1)[0].strip().lower() != PROBLEM_CONTENT_TYPE:
        return None
    try:
        problem = json.loads(body)
    except ValueError:
        return None
    kind = problem.get("type") if isinstance(problem, dict) else None
    return kind if isinstance(kind, str) else None


def stored_response(
    status: int, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> StoredResponse:
    """What is kept of a response: its status, the headers a replay repeats, its body."""
    headers = [
        (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw_headers
    ]
    return StoredResponse(
        status, [(name, value) for name, value in headers if name in _REPLAYED_HEADERS], body
    )


class PendingKey:
    """The claimed key of the request being processed (``scope[SCOPE_KEY]``).

    The middleware stores the response under it or releases it, unless the route called
    :meth:`settle_later`: then the key stays in flight past the response until the given
    future resolves.
    """

    def __init__(
        self, store: IdempotencyStore, principal: str, key: str, claim_id: str | None = None
    ) -> None:
        self.store = store
        self.principal = principal
        self.key = key
        self.claim_id = claim_id
        self.kept = False

    def settle(self, response: StoredResponse | None) -> None:
        """Store ``response`` if it is the request's outcome, else release the key
        (blocking: database I/O; retried in the background while the database is away)."""
        if response is not None and is_outcome(response.status, response.headers, response.body):
            self.store.settle_or_retry(self.principal, self.key, response, self.claim_id)
        else:
            self.store.settle_or_retry(self.principal, self.key, None, self.claim_id)

    def settle_later(
        self, future: Future[T], render: Callable[[Future[T]], Rendered | None]
    ) -> None:
        """Keep the key in flight after this request's response; once ``future`` is resolved,
        ``render`` gives the response the request would have had (None: release the key),
        settled on a thread of its own (not the one resolving the future)."""
        self.kept = True

        def settle_now(done: Future[T]) -> None:
            try:
                rendered = render(done)
                self.settle(None if rendered is None else stored_response(*rendered))
            except Exception as exc:  # rendering failed: the request has no answer to keep
                _log.error("idempotency_settle_failed", error_type=type(exc).__name__, exc_info=exc)
                self.store.settle_or_retry(self.principal, self.key, None, self.claim_id)

        def on_done(done: Future[T]) -> None:
            threading.Thread(
                target=settle_now, args=(done,), name="idempotency-settle", daemon=False
            ).start()

        future.add_done_callback(on_done)


def pending_key(scope: Scope) -> PendingKey | None:
    """The claimed ``Idempotency-Key`` of a request, if it carries one."""
    pending = scope.get(SCOPE_KEY)
    return pending if isinstance(pending, PendingKey) else None


class IdempotencyMiddleware:
    """ASGI middleware applying an :class:`IdempotencyStore` to mutating requests that carry an
    ``Idempotency-Key`` header.

    ``stores`` maps path prefixes to stores (longest prefix wins), so one app serving the
    routers of several services keeps each service's keys in that service's database.
    ``principal_of`` returns the verified subject of a request's ``Authorization`` header, or
    None (the request then proceeds unchecked and is refused by its route).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        stores: Mapping[str, IdempotencyStore],
        principal_of: Callable[[str | None], str | None],
        problem: Callable[[int, str, str], tuple[list[tuple[bytes, bytes]], bytes]],
    ) -> None:
        self.app = app
        self.stores = sorted(stores.items(), key=lambda item: len(item[0]), reverse=True)
        self.principal_of = principal_of
        self.problem = problem

    def _store_for(self, path: str) -> IdempotencyStore | None:
        for prefix, store in self.stores:
            if path.startswith(prefix):
                return store
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get(HEADER)
        store = self._store_for(scope["path"])
        if key is None or store is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            await self._answer(
                send, 400, "Invalid Idempotency-Key", "the key is 1 to 255 printable characters"
            )
            return
        principal = self.principal_of(headers.get("authorization"))
        if principal is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its body was complete: nothing is claimed or run
        fingerprint = request_fingerprint(
            scope["method"], scope["path"], scope.get("query_string", b""), body
        )
        claim_id = uuid.uuid4().hex
        try:
            claim = await anyio.to_thread.run_sync(
                functools.partial(store.claim, principal, key, fingerprint, claim_id=claim_id)
            )
        except BaseException:
            # The claim may have committed before the database stopped answering: release it
            # if it was recorded (that claim only), so that the 503 leaves no key in flight.
            store.release_in_background(principal, key, claim_id)
            raise
        if claim.outcome == "replay":
            assert claim.response is not None
            await send(
                {
                    "type": "http.response.start",
                    "status": claim.response.status,
                    "headers": [
                        *[
                            (k.encode("latin-1"), v.encode("latin-1"))
                            for k, v in claim.response.headers
                        ],
                        (b"idempotent-replayed", b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": claim.response.body})
            return
        if claim.outcome == "mismatch":
            await self._answer(
                send,
                422,
                "Idempotency-Key reused",
                "this key was used for another request; use a new key for a new request",
            )
            return
        if claim.outcome == "in_flight":
            await self._answer(
                send,
                409,
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
                retry_after_s=max(1, round(store.heartbeat_interval_s)),
            )
            return

        pending = PendingKey(store, principal, key, claim.claim_id)
        scope[SCOPE_KEY] = pending
        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        # The answer is kept for the key before it is sent: a client that got it finds it
        # stored, even if this process is killed right after sending it.
        held: list[Message] = []
        settled = False

        async def settle_then_send() -> None:
            nonlocal settled
            settled = True
            response = stored_response(status, response_headers, b"".join(chunks))
            await anyio.to_thread.run_sync(pending.settle, response)
            for message in held:
                await send(message)
            held.clear()

        async def capture_send(message: Message) -> None:
            nonlocal status
            if pending.kept or settled:  # settled when the route's command resolves
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_headers.extend(message.get("headers", []))
                held.append(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                held.append(message)
                if not message.get("more_body", False):
                    await settle_then_send()
            else:
                await send(message)

        try:
            await self.app(scope, replay_body(body, receive), capture_send)
        except BaseException:
            if not pending.kept and not settled:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(
                        store.settle_or_retry, principal, key, None, pending.claim_id
                    )
            raise
        if not pending.kept and not settled:
            await settle_then_send()

    async def _answer(
        self, send: Send, status: int, title: str, detail: str, *, retry_after_s: int = 0
    ) -> None:
        headers, body = self.problem(status, title, detail)
        if retry_after_s:
            headers = [*headers, (b"retry-after", str(retry_after_s).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def request_fingerprint(method: str, path: str, query_string: bytes, body: bytes) -> str:
    """What identifies a request under its key: method, path, query string and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query_string):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(body)
    return digest.hexdigest()


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when the client disconnected before it was complete."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
