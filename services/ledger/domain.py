"""The ledger's domain model: one ``Cloud`` aggregate per customer cloud.

Every change to a cloud's contract, seats and named licenses is an event of its ``Cloud``. A
public command method checks the invariants first and raises a specific :class:`LedgerError`
when one would break; only then does it trigger the event, whose ``apply`` changes the state.
So a refused command leaves the aggregate untouched and records nothing.

Instants come from the caller (the application's injected clock) and become the events'
timestamps; dates that decide a charge are local dates in the contract's time zone. Money and
period arithmetic is delegated to :mod:`seatledger.billing`. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from schemas.fields import (
    check_business_date,
    check_email,
    check_identifier,
    check_money,
    check_name,
    check_percent,
    check_rights_group,
    check_time_zone,
)
from seatledger.billing import (
    BillingPeriod,
    Period,
    PeriodError,
    Proration,
    UnknownCurrencyError,
    local_date,
    minor_units,
    period_at,
    period_index_containing,
    prorate,
)

UNLICENSED_RIGHTS_GROUPS = frozenset({"guest"})
#: How many recent request identities a cloud remembers (see ``Cloud.committed_request``).
REQUEST_KEYS_KEPT = 1000
DEFAULT_LICENSED_RIGHTS_GROUPS = ("admin", "employee")
LOCALES = ("de", "en")


# --------------------------------------------------------------------------------------------
# Errors: one class per broken rule, so callers can answer each precisely.


class LedgerError(Exception):
    """A command that would break a rule of the ledger; nothing was recorded."""


class InvalidContract(LedgerError):
    """The terms of a contract are not acceptable (currency, zone, price, ...)."""


class SeatsMustGrow(LedgerError):
    """A purchase must raise the seat count: the new total must exceed the current one."""


class NoFreeSeat(LedgerError):
    """Every seat is taken: licenses assigned never exceed seats."""


class LicenseAlreadyHeld(LedgerError):
    """A user holds at most one license per cloud."""


class LicenseNotHeld(LedgerError):
    """The user holds no license on this cloud."""


class UnlicensedRightsGroup(LedgerError):
    """The rights group needs no license (e.g. ``guest``)."""


class UnknownRightsGroup(LedgerError):
    """The rights group is not one of the cloud's licensed groups."""


class LicensedRightsGroup(LedgerError):
    """A release names a new rights group that needs a license."""


class InvalidSeatReduction(LedgerError):
    """A reduction names a total below the current seats and at least one."""


class ChargeDateOutsidePeriod(LedgerError):
    """A charge date must lie within the cloud's current billing period."""


class InvalidBillingEmail(LedgerError):
    """The billing e-mail address is not an address an SMTP sender delivers."""


class InvalidUserId(LedgerError):
    """A new license names a user id outside the identifier rule (see schemas.fields)."""


class UnbillableContract(LedgerError):
    """The cloud's billing periods cannot be computed (a term recorded before the date rule,
    e.g. starting in the year 9999): it is shown, but no command or renewal runs on it."""


# --------------------------------------------------------------------------------------------
# Value objects (stored inside events; the application registers their transcodings).


@dataclass(frozen=True)
class Actor:
    """Who caused an event: a user, a service (a token without a user), or the system."""

    kind: str
    id: str

    @classmethod
    def system(cls) -> Actor:
        return cls("system", "seatledger")


@dataclass(frozen=True)
class ContractTerms:
    """A cloud's billing terms."""

    name: str
    owner_id: str
    billing_email: str
    currency: str
    seat_price: Decimal
    billing_period: str
    term_start: date
    time_zone: str
    tax_rate: Decimal
    locale: str

    @property
    def period_kind(self) -> BillingPeriod:
        return BillingPeriod(self.billing_period)

    def validate(self) -> None:
        """Check every term by its field rule (:mod:`schemas.fields`)."""
        _rule(InvalidContract, "the customer name", check_name, self.name)
        _rule(InvalidContract, "the owner id", check_identifier, self.owner_id)
        try:
            minor_units(self.currency)
        except UnknownCurrencyError as exc:
            raise InvalidContract(str(exc)) from exc
        _rule(
            InvalidContract, "the seat price (a non-negative decimal)", check_money, self.seat_price
        )
        if self.billing_period not in {p.value for p in BillingPeriod}:
            raise InvalidContract("the billing period is 'monthly' or 'annual'")
        _rule(InvalidContract, "the term start", check_business_date, self.term_start)
        _rule(InvalidContract, "the time zone (IANA)", check_time_zone, self.time_zone)
        _rule(
            InvalidContract,
            "the tax rate (a percentage between 0 and 100)",
            check_percent,
            self.tax_rate,
        )
        if self.locale not in LOCALES:
            raise InvalidContract(f"the locale is one of {', '.join(LOCALES)}")
        _check_email(self.billing_email)


@dataclass(frozen=True)
class HonouredQuote:
    """The quote a purchase was made with: it pins the charge date and the net amount."""

    quote_id: UUID
    charge_date: date
    net: Decimal


class RecentRequests:
    """The last ``kept`` request identities of one kind of command on a cloud, each with the
    version of the event it recorded, packed in one immutable ``bytes`` value: 16 bytes of the
    identity (a SHA-256, see ``services.ledger.application.request_identity``) and the version
    as 8 bytes, 24 bytes an entry, oldest first. Immutable, so a copy of the cloud (the
    repository deep-copies its cached aggregates on every read) shares it at no cost, and a
    look-up is a byte search from the newest entry."""

    __slots__ = ("blob", "kept")
    ENTRY = 24

    def __init__(self, kept: int, blob: bytes = b"") -> None:
        self.kept = kept
        self.blob = blob

    def __copy__(self) -> RecentRequests:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> RecentRequests:
        return self

    def __len__(self) -> int:
        return len(self.blob) // self.ENTRY

    @staticmethod
    def _prefix(identity: str) -> bytes:
        try:
            raw = bytes.fromhex(identity)
        except ValueError:
            raw = b""
        if len(raw) < 16:  # not a digest: hash it, so every identity has 16 bytes
            raw = hashlib.sha256(identity.encode()).digest()
        return raw[:16]

    def with_request(self, identity: str, version: int) -> RecentRequests:
        blob = self.blob + self._prefix(identity) + version.to_bytes(8, "big")
        excess = len(blob) - self.kept * self.ENTRY
        return RecentRequests(self.kept, blob[excess:] if excess > 0 else blob)

    def version_of(self, identity: str) -> int | None:
        prefix, blob, end = self._prefix(identity), self.blob, len(self.blob)
        while True:
            at = blob.rfind(prefix, 0, end)
            if at < 0:
                return None
            if at % self.ENTRY == 0:
                return int.from_bytes(blob[at + 16 : at + self.ENTRY], "big")
            end = at + len(prefix) - 1  # a match across two entries: search before it


#: The kinds of commands whose identities a cloud keeps apart, so that many commands of one
#: kind (e.g. licenses assigned in bulk) never push out a purchase's identity.
CONTRACT_REQUESTS, SEAT_REQUESTS, LICENSE_REQUESTS = "contract", "seats", "licenses"


def normalized_rights_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """Rights groups as a cloud records them: stripped, blanks and repeats dropped, in order."""
    return tuple(dict.fromkeys(g.strip() for g in groups if g.strip()))


def _remember_request(aggregate: Any, kind: str, request_key: str | None, version: int) -> None:
    """Keep ``request_key`` -> ``version`` among the cloud's recent identities of ``kind``."""
    if request_key is None:
        return
    requests = getattr(aggregate, "recent_requests", None)
    if requests is None:  # a cloud restored from state older than these indexes
        requests = aggregate.recent_requests = {}
    known = requests.get(kind) or RecentRequests(REQUEST_KEYS_KEPT)
    requests[kind] = known.with_request(request_key, version)


def _rule(error: type[LedgerError], what: str, check: Any, value: Any) -> None:
    """Run a field rule; its refusal becomes ``error`` naming ``what``."""
    try:
        check(value)
    except ValueError as exc:
        raise error(f"{what}: {exc}") from exc


def _check_email(address: str) -> None:
    try:
        check_email(address)
    except ValueError as exc:
        raise InvalidBillingEmail(f"the billing e-mail is not an e-mail address: {exc}") from exc


def _period_at(term_start: date, kind: BillingPeriod, index: int) -> Period:
    """:func:`period_at`, its failure (a date beyond year 9999) refused as unbillable."""
    try:
        return period_at(term_start, kind, index)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, PeriodError):
            raise
        raise UnbillableContract(
            f"the billing periods of a term starting {term_start.isoformat()} cannot be "
            f"computed ({exc})"
        ) from exc


# --------------------------------------------------------------------------------------------
# The aggregate.


class Cloud(Aggregate):
    """One customer cloud: its contract, seats, named licenses and billing periods."""

    class ContractOpened(Aggregate.Created):
        terms: ContractTerms
        seats: int
        licensed_rights_groups: tuple[str, ...]
        first_period_index: int
        actor: Actor
        #: As ``SeatsIncreased.request_key``.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.opening_request_key = self.request_key
            _remember_request(
                aggregate, CONTRACT_REQUESTS, self.request_key, self.originator_version
            )

    class SeatsIncreased(Aggregate.Event):
        seats_before: int
        seats_after: int
        charge_date: date
        period_start: date
        period_end: date
        net: Decimal
        terms: ContractTerms
        quote: HonouredQuote | None
        actor: Actor
        #: The identity of the request that recorded it (a digest of the caller's subject and
        #: ``Idempotency-Key``, never the key); None without a key or when recorded earlier.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.seats = self.seats_after
            _remember_request(aggregate, SEAT_REQUESTS, self.request_key, self.originator_version)

    class LicenseAssigned(Aggregate.Event):
        user_id: str
        rights_group: str
        licenses_assigned: int
        seats: int
        actor: Actor
        #: The user's unlicensed group before (e.g. ``guest``), when a group change assigned it.
        previous_rights_group: str | None = None
        #: As ``SeatsIncreased.request_key``.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.licenses[self.user_id] = self.rights_group
            _remember_request(
                aggregate, LICENSE_REQUESTS, self.request_key, self.originator_version
            )

    class LicenseReleased(Aggregate.Event):
        user_id: str
        previous_rights_group: str
        licenses_assigned: int
        seats: int
        actor: Actor
        #: The user's new, unlicensed group (e.g. ``guest``); None when it was not given.
        rights_group: str | None = None
        #: As ``SeatsIncreased.request_key``.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            del aggregate.licenses[self.user_id]
            _remember_request(
                aggregate, LICENSE_REQUESTS, self.request_key, self.originator_version
            )

    class LicenseRightsGroupChanged(Aggregate.Event):
        """A license holder moved from one licensed group to another: the license is kept."""

        user_id: str
        rights_group: str
        previous_rights_group: str
        licenses_assigned: int
        seats: int
        actor: Actor
        #: As ``SeatsIncreased.request_key``.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.licenses[self.user_id] = self.rights_group
            _remember_request(
                aggregate, LICENSE_REQUESTS, self.request_key, self.originator_version
            )

    class PeriodRenewed(Aggregate.Event):
        period_index: int
        period_start: date
        period_end: date
        seats_before: int
        seats: int
        requested_seats: int | None
        reduction_applied: bool
        licenses_assigned: int
        terms: ContractTerms
        actor: Actor

        def apply(self, aggregate: Any) -> None:
            aggregate.period_index = self.period_index
            aggregate.seats = self.seats
            aggregate.scheduled_reduction = None

    class SeatReductionScheduled(Aggregate.Event):
        seats: int
        seats_current: int
        effective_date: date
        actor: Actor
        #: As ``SeatsIncreased.request_key``.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.scheduled_reduction = self.seats
            _remember_request(aggregate, SEAT_REQUESTS, self.request_key, self.originator_version)

    class BillingEmailChanged(Aggregate.Event):
        billing_email: str
        actor: Actor
        #: As ``SeatsIncreased.request_key``.
        request_key: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.terms = replace(aggregate.terms, billing_email=self.billing_email)
            _remember_request(
                aggregate, CONTRACT_REQUESTS, self.request_key, self.originator_version
            )

    def __init__(
        self,
        terms: ContractTerms,
        seats: int,
        licensed_rights_groups: tuple[str, ...],
        first_period_index: int,
        actor: Actor,
    ) -> None:
        self.terms = terms
        self.seats = seats
        #: The seats the contract was opened with (``seats`` changes, this does not).
        self.opening_seats = seats
        self.licensed_rights_groups = tuple(licensed_rights_groups)
        self.first_period_index = first_period_index
        self.period_index = first_period_index
        self.licenses: dict[str, str] = {}
        self.scheduled_reduction: int | None = None
        #: Recent request identities per kind of command (see :class:`RecentRequests`).
        self.recent_requests: dict[str, RecentRequests] = {}
        #: The identity of the request that opened the cloud (never forgotten; see ``open``).
        self.opening_request_key: str | None = None

    # ---- commands -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        cloud_id: UUID,
        terms: ContractTerms,
        seats: int,
        licensed_rights_groups: tuple[str, ...] = DEFAULT_LICENSED_RIGHTS_GROUPS,
        actor: Actor,
        at: datetime,
        request_key: str | None = None,
    ) -> Cloud:
        """Open a cloud's contract. Its first period is the one containing the local date of
        opening (a migrated customer's term may have started long ago), or the term's first
        period when the term starts in the future. ``request_key`` (see
        :meth:`committed_request`) is recorded with the event."""
        terms.validate()
        if seats < 1:
            raise InvalidContract("a contract starts with at least one seat")
        groups = normalized_rights_groups(licensed_rights_groups)
        if not groups:
            raise InvalidContract("at least one rights group needs a license")
        if UNLICENSED_RIGHTS_GROUPS.intersection(groups):
            raise InvalidContract("the guest group needs no license")
        for group in groups:
            _rule(InvalidContract, "a licensed rights group", check_rights_group, group)
        today = local_date(at, terms.time_zone)
        first = (
            0
            if today < terms.term_start
            else period_index_containing(terms.term_start, terms.period_kind, today)
        )
        # The first period must be computable (validate() bounds the term start, so it is).
        _period_at(terms.term_start, terms.period_kind, first)
        return cls._create(
            cls.ContractOpened,
            id=cloud_id,
            timestamp=at,
            terms=terms,
            seats=seats,
            licensed_rights_groups=groups,
            first_period_index=first,
            actor=actor,
            request_key=request_key,
        )

    def renew_due(self, *, at: datetime, actor: Actor | None = None) -> int:
        """Record ``PeriodRenewed`` for every period that began on or before the local date of
        ``at`` and is not renewed yet (catching up missed periods). Returns how many."""
        today = self.local_today(at)
        renewed = 0
        while self.current_period.end <= today:
            self._renew(at=at, actor=actor or Actor.system())
            renewed += 1
        return renewed

    def _renew(self, *, at: datetime, actor: Actor) -> None:
        index = self.period_index + 1
        period = _period_at(self.terms.term_start, self.terms.period_kind, index)
        assigned = len(self.licenses)
        requested = self.scheduled_reduction
        seats = self.seats
        if requested is not None and requested < self.seats:
            seats = max(requested, assigned, 1)
        self.trigger_event(
            self.PeriodRenewed,
            timestamp=at,
            period_index=index,
            period_start=period.start,
            period_end=period.end,
            seats_before=self.seats,
            seats=seats,
            requested_seats=requested,
            reduction_applied=seats < self.seats,
            licenses_assigned=assigned,
            terms=self.terms,
            actor=actor,
        )

    def quote(self, *, seats: int, charge_date: date) -> Proration:
        """The prorated net of raising the seat count to ``seats`` on ``charge_date``."""
        if seats <= self.seats:
            raise SeatsMustGrow(f"the new total {seats} must exceed the current {self.seats} seats")
        period = self.current_period
        if charge_date not in period:
            raise ChargeDateOutsidePeriod(
                f"{charge_date.isoformat()} is not within the current period "
                f"{period.start.isoformat()} to {period.end.isoformat()}"
            )
        return prorate(
            seats - self.seats, self.terms.seat_price, period, charge_date, self.terms.currency
        )

    def charge_date_at(self, at: datetime) -> date:
        """The charge date of a purchase confirmed at ``at``: its local date, or the first day
        of the term when the term has not started yet."""
        return max(self.local_today(at), self.current_period.start)

    def increase_seats(
        self,
        *,
        seats: int,
        actor: Actor,
        at: datetime,
        quote: HonouredQuote | None = None,
        request_key: str | None = None,
    ) -> None:
        """Buy seats: raise the total to ``seats``. With a quote, its pinned charge date and
        net are honoured (the caller has checked that the quote is valid). ``request_key``
        (see :meth:`committed_request`) is recorded with the event."""
        charge_date = quote.charge_date if quote is not None else self.charge_date_at(at)
        proration = self.quote(seats=seats, charge_date=charge_date)
        period = self.current_period
        self.trigger_event(
            self.SeatsIncreased,
            timestamp=at,
            seats_before=self.seats,
            seats_after=seats,
            charge_date=charge_date,
            period_start=period.start,
            period_end=period.end,
            net=quote.net if quote is not None else proration.net,
            terms=self.terms,
            quote=quote,
            actor=actor,
            request_key=request_key,
        )

    def schedule_reduction(
        self, *, seats: int, actor: Actor, at: datetime, request_key: str | None = None
    ) -> None:
        """Reduce the seats from the next period start on (never below the licenses assigned
        then: the renewal records both the requested and the applied count)."""
        if seats < 1:
            raise InvalidSeatReduction("a cloud keeps at least one seat")
        if seats >= self.seats:
            raise InvalidSeatReduction(
                f"a reduction names a total below the current {self.seats} seats"
            )
        self.trigger_event(
            self.SeatReductionScheduled,
            timestamp=at,
            seats=seats,
            seats_current=self.seats,
            effective_date=self.current_period.end,
            actor=actor,
            request_key=request_key,
        )

    def assign_license(
        self,
        *,
        user_id: str,
        rights_group: str,
        actor: Actor,
        at: datetime,
        previous_rights_group: str | None = None,
        request_key: str | None = None,
    ) -> None:
        try:
            check_identifier(user_id)
        except ValueError as exc:
            raise InvalidUserId(f"the user id: {exc}") from exc
        if rights_group in UNLICENSED_RIGHTS_GROUPS:
            raise UnlicensedRightsGroup(f"the rights group {rights_group!r} needs no license")
        if rights_group not in self.licensed_rights_groups:
            raise UnknownRightsGroup(
                f"{rights_group!r} is not a licensed rights group of this cloud "
                f"({', '.join(self.licensed_rights_groups)})"
            )
        if user_id in self.licenses:
            raise LicenseAlreadyHeld("the user already holds a license on this cloud")
        if len(self.licenses) >= self.seats:
            raise NoFreeSeat(f"all {self.seats} seats hold a license")
        self.trigger_event(
            self.LicenseAssigned,
            timestamp=at,
            user_id=user_id,
            rights_group=rights_group,
            licenses_assigned=len(self.licenses) + 1,
            seats=self.seats,
            actor=actor,
            previous_rights_group=previous_rights_group,
            request_key=request_key,
        )

    def release_license(
        self,
        *,
        user_id: str,
        actor: Actor,
        at: datetime,
        rights_group: str | None = None,
        request_key: str | None = None,
    ) -> None:
        """Release the user's license; ``rights_group`` is their new group, if known. A new
        group that needs a license contradicts the release and is refused."""
        if user_id not in self.licenses:
            raise LicenseNotHeld("the user holds no license on this cloud")
        if rights_group is not None:
            _rule(UnknownRightsGroup, "the rights group", check_rights_group, rights_group)
        if rights_group is not None and self.is_licensed_group(rights_group):
            raise LicensedRightsGroup(
                f"the rights group {rights_group!r} needs a license: change the user's "
                "rights group instead of releasing the license"
            )
        self.trigger_event(
            self.LicenseReleased,
            timestamp=at,
            user_id=user_id,
            previous_rights_group=self.licenses[user_id],
            licenses_assigned=len(self.licenses) - 1,
            seats=self.seats,
            actor=actor,
            rights_group=rights_group,
            request_key=request_key,
        )

    def set_rights_group(
        self,
        *,
        user_id: str,
        rights_group: str,
        actor: Actor,
        at: datetime,
        previous_rights_group: str | None = None,
        request_key: str | None = None,
    ) -> str:
        """Put the user in ``rights_group``: the group decides whether they hold a license.

        - a licensed group, no license held: ``LicenseAssigned`` (:class:`NoFreeSeat` when
          every seat is taken); ``previous_rights_group`` is the unlicensed group they had;
        - an unlicensed group (``guest`` or any group not licensed on this cloud), a license
          held: ``LicenseReleased`` with the new group;
        - another licensed group, a license held: ``LicenseRightsGroupChanged``;
        - otherwise the state already matches and nothing is recorded.

        Returns the outcome: ``assigned``, ``released``, ``changed`` or ``unchanged``.
        """
        _rule(UnknownRightsGroup, "the rights group", check_rights_group, rights_group)
        held = self.licenses.get(user_id)
        if held is None:
            # A license held under an id recorded before the identifier rule can still be
            # changed or released; a new one needs a valid id.
            _rule(InvalidUserId, "the user id", check_identifier, user_id)
        if self.is_licensed_group(rights_group):
            if held is None:
                self.assign_license(
                    user_id=user_id,
                    rights_group=rights_group,
                    actor=actor,
                    at=at,
                    previous_rights_group=previous_rights_group,
                    request_key=request_key,
                )
                return "assigned"
            if held == rights_group:
                return "unchanged"
            self.trigger_event(
                self.LicenseRightsGroupChanged,
                timestamp=at,
                user_id=user_id,
                rights_group=rights_group,
                previous_rights_group=held,
                licenses_assigned=len(self.licenses),
                seats=self.seats,
                actor=actor,
                request_key=request_key,
            )
            return "changed"
        if held is None:
            return "unchanged"
        self.release_license(
            user_id=user_id,
            actor=actor,
            at=at,
            rights_group=rights_group,
            request_key=request_key,
        )
        return "released"

    def change_billing_email(
        self, *, billing_email: str, actor: Actor, at: datetime, request_key: str | None = None
    ) -> bool:
        """Record the new address; returns False (recording nothing) when it is unchanged."""
        _check_email(billing_email)
        if billing_email == self.terms.billing_email:
            return False
        self.trigger_event(
            self.BillingEmailChanged,
            timestamp=at,
            billing_email=billing_email,
            actor=actor,
            request_key=request_key,
        )
        return True

    # ---- queries ------------------------------------------------------------------------

    def as_at(self, at: datetime) -> Cloud:
        """A copy of this cloud as the clock shows it at ``at``: the renewals due by then
        applied (period, seats after a scheduled reduction), their events discarded. Reads use
        it; only the scheduler or a command records a renewal."""
        copied = copy.copy(self)
        copied.licenses = dict(self.licenses)
        copied._pending_events = []
        copied.renew_due(at=at)
        copied._pending_events = []
        return copied

    def committed_request(self, request_key: str) -> int | None:
        """The version of the event recorded by the request ``request_key`` (one of the last
        :data:`REQUEST_KEYS_KEPT` commands of its kind recorded under a key on this cloud: the
        contract's (opening, billing e-mail changes), the seats' (purchases, reductions), the
        licenses' (assignments, releases, rights-group changes)), else
        None. A command that recorded several events (renewals due, then its own) is found at
        the version of its own, the last one."""
        requests: dict[str, RecentRequests] = getattr(self, "recent_requests", None) or {}
        for known in requests.values():
            version = known.version_of(request_key)
            if version is not None:
                return version
        return None

    def local_today(self, at: datetime) -> date:
        return local_date(at, self.terms.time_zone)

    @property
    def current_period(self) -> Period:
        """The period of ``period_index``; :class:`UnbillableContract` when it cannot be
        computed (a term recorded before the date rule)."""
        return _period_at(self.terms.term_start, self.terms.period_kind, self.period_index)

    def is_licensed_group(self, rights_group: str) -> bool:
        """Whether a member of ``rights_group`` holds a license on this cloud."""
        return (
            rights_group not in UNLICENSED_RIGHTS_GROUPS
            and rights_group in self.licensed_rights_groups
        )

    @property
    def licenses_assigned(self) -> int:
        return len(self.licenses)

    @property
    def licenses_free(self) -> int:
        return self.seats - len(self.licenses)
