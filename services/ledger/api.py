"""The ledger's HTTP API (the paths are the product's contract).

Authorization: a cloud's owner (the token's ``sub`` equals the cloud's ``owner_id``) or the
scopes named per route. A caller with no right to a cloud at all gets 404 (the cloud's
existence is not revealed); a caller who may see it but not change it gets 403. Buying and
reducing seats need a fresh password authentication (RFC 9470 step-up).

Authorization comes before validation: a request that fails validation (its body, query or
path) is answered 401/403/404 when its caller has no right to the route or the cloud, and the
validation problem (422, with the fields) only to a caller who has. Every field follows its
rule in :mod:`schemas.fields`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import (
    BusinessDate,
    EmailAddress,
    Identifier,
    Instant,
    Money,
    Name,
    Percent,
    RightsGroup,
    TimeZoneName,
)
from seatledger.auth import (
    SCOPE_ADMIN,
    SCOPE_AUDIT,
    SCOPE_LICENSES,
    Authenticator,
    AuthError,
    Principal,
)
from seatledger.billing import BillingPeriod
from seatledger.http import CurrentPrincipal, Problem, annotate, problem_response
from seatledger.http.app import get_principal
from seatledger.http.idempotency import CONCURRENT_MODIFICATION, Rendered, pending_key
from services.ledger import domain
from services.ledger.application import (
    CloudAlreadyExists,
    CloudNotFound,
    ConcurrencyConflict,
    InvalidEffectiveDate,
    LedgerService,
    LedgerUnavailable,
    OpenCloud,
    Quote,
    QuoteNotHonoured,
    RequestKeyReused,
    request_identity,
)
from services.ledger.contract import event_id, to_cloud_event
from services.ledger.domain import Actor, Cloud, ContractTerms

T = TypeVar("T")

_STATUS: dict[type[Exception], tuple[int, str]] = {
    CloudNotFound: (404, "Cloud not found"),
    domain.LicenseNotHeld: (404, "License not found"),
    domain.InvalidContract: (422, "Invalid contract"),
    domain.InvalidBillingEmail: (422, "Invalid billing e-mail"),
    domain.InvalidUserId: (422, "Invalid user id"),
    domain.UnbillableContract: (409, "Cloud not billable"),
    domain.UnlicensedRightsGroup: (422, "Rights group needs no license"),
    domain.UnknownRightsGroup: (422, "Unknown rights group"),
    domain.LicensedRightsGroup: (422, "Rights group needs a license"),
    domain.ChargeDateOutsidePeriod: (422, "Charge date outside the period"),
    InvalidEffectiveDate: (422, "Invalid effective date"),
    domain.SeatsMustGrow: (409, "Seats must grow"),
    domain.NoFreeSeat: (409, "No free seat"),
    domain.LicenseAlreadyHeld: (409, "License already held"),
    domain.InvalidSeatReduction: (409, "Invalid seat reduction"),
    QuoteNotHonoured: (409, "Quote not honoured"),
    CloudAlreadyExists: (409, "Cloud already exists"),
    RequestKeyReused: (422, "Idempotency-Key reused"),
    ConcurrencyConflict: (409, "Concurrent modification"),
    LedgerUnavailable: (503, "Ledger unavailable"),
}


#: Problem types other than the one derived from the title.
_TYPES: dict[type[Exception], str] = {
    # The Idempotency-Key middleware releases the key on this 409: a retry may succeed.
    ConcurrencyConflict: CONCURRENT_MODIFICATION,
}


def _problem(exc: domain.LedgerError) -> Problem:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            status, title = _STATUS[cls]
            return Problem(status, title, str(exc), type_=_TYPES.get(cls), code=type(exc).__name__)
    return Problem(409, "Refused", str(exc), code=type(exc).__name__)


class _LoopBridge:
    """Hands the results of the committer thread to one event loop in bulk: one wake-up of
    the loop per batch of finished commands instead of one per command."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Future[Any], Future[Any]]] = []
        self._scheduled = False

    def watch(self, future: Future[T]) -> asyncio.Future[T]:
        waiter: asyncio.Future[T] = self.loop.create_future()
        future.add_done_callback(lambda done: self._finished(waiter, done))
        return waiter

    def _finished(self, waiter: asyncio.Future[Any], done: Future[Any]) -> None:
        with self._lock:
            self._pending.append((waiter, done))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ready, self._pending = self._pending, []
            self._scheduled = False
        for waiter, done in ready:
            if waiter.done():
                continue
            error = done.exception()
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(done.result())


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge] = (
    weakref.WeakKeyDictionary()
)


async def _await(future: Future[T]) -> T:
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges.setdefault(loop, _LoopBridge(loop))
    try:
        return await bridge.watch(future)
    except domain.LedgerError as exc:
        raise _problem(exc) from exc


def _wait(
    service: LedgerService,
    future: Future[T],
    request: Request,
    view: Callable[[T], dict[str, Any]],
    status: int = 201,
) -> T:
    """The command's result, waited for up to the service's command timeout. On timeout the
    answer is 503, and the request's ``Idempotency-Key`` (if any) stays in flight until the
    command resolves: then its real response (``view`` of the result with ``status``, or the
    command's problem) is kept for the key, so a retry never runs the command twice."""
    try:
        return service.wait(future)
    except domain.LedgerError as exc:
        raise _problem(exc) from exc
    except TimeoutError as exc:
        pending = pending_key(request.scope)
        if pending is not None:
            pending.settle_later(future, _renderer(request.url.path, view, status))
        raise Problem(
            503,
            "Ledger busy",
            "the command was not answered in time; retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        ) from exc


def request_key_of(request: Request) -> str | None:
    """The identity recorded with the event of a command made under an ``Idempotency-Key``
    (a digest of the caller's subject and the key), so a retry after a crash is answered with
    the committed result."""
    return request_key_in(request.scope)


def request_key_in(scope: Any) -> str | None:
    """:func:`request_key_of` from an ASGI scope (one dict lookup without a key)."""
    pending = pending_key(scope)
    if pending is None:
        return None
    return request_identity(pending.principal, pending.key)


def _renderer(
    path: str, view: Callable[[T], dict[str, Any]], status: int
) -> Callable[[Future[T]], Rendered | None]:
    """Renders a resolved command as its route would have answered it; None for an error
    that is not the ledger's refusal (its key is released)."""

    def render(done: Future[T]) -> Rendered | None:
        error = done.exception()
        if error is None:
            response = JSONResponse(jsonable_encoder(view(done.result())), status_code=status)
        elif isinstance(error, domain.LedgerError):
            problem = _problem(error)
            response = problem_response(
                problem.status,
                problem.title,
                problem.detail,
                headers=problem.headers,
                type_=problem.type,
                instance=path,
                **problem.extensions,
            )
        else:
            return None
        return response.status_code, response.raw_headers, bytes(response.body)

    return render


# --------------------------------------------------------------------------------------------
# Request bodies.


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenCloudBody(_Body):
    cloud_id: UUID | None = None
    name: Name
    owner_id: Identifier
    billing_email: EmailAddress
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    seat_price: Money
    billing_period: BillingPeriod
    term_start: BusinessDate
    time_zone: TimeZoneName = "Europe/Berlin"
    tax_rate: Percent
    locale: str = Field(pattern=r"^(de|en)$")
    seats: int = Field(ge=1, le=1_000_000, strict=True)


class SeatsBody(_Body):
    seats: int = Field(ge=1, le=1_000_000, strict=True)


class QuoteBody(SeatsBody):
    effective_date: BusinessDate | None = None


class PurchaseBody(SeatsBody):
    quote_id: UUID | None = None


class LicenseBody(_Body):
    user_id: Identifier
    rights_group: RightsGroup


class RightsGroupBody(_Body):
    rights_group: RightsGroup
    previous_rights_group: RightsGroup | None = Field(
        default=None,
        description="the unlicensed group the user had (e.g. guest), recorded on an assignment",
    )


class BillingEmailBody(_Body):
    billing_email: EmailAddress


# --------------------------------------------------------------------------------------------
# Views.


def _period(cloud: Cloud) -> dict[str, Any]:
    period = cloud.current_period
    return {
        "index": cloud.period_index,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }


def cloud_view(
    cloud: Cloud,
    *,
    as_of: datetime | None = None,
    now: datetime | None = None,
    state_at: datetime | None = None,
) -> dict[str, Any]:
    """The cloud as the clock shows it at ``state_at`` (else ``as_of``, else ``now``): a
    renewal that is due but not recorded yet (the scheduler records it) is applied to the
    period, the seats and the scheduled reduction shown, with ``renewal_pending`` true and
    ``recorded_period`` the period of the last recorded event; ``version`` is always the
    recorded one. ``as_of`` is echoed; ``state_at`` is the instant the state is shown at when
    it differs from ``as_of`` (an ``as_of`` in the future is answered with the state now).

    Raises :class:`~services.ledger.domain.UnbillableContract` for a cloud whose periods
    cannot be computed."""
    at = state_at or as_of or now
    shown = cloud.as_at(at) if at is not None else cloud
    terms = cloud.terms
    reduction = None
    if shown.scheduled_reduction is not None:
        reduction = {
            "seats": shown.scheduled_reduction,
            "effective_date": shown.current_period.end.isoformat(),
        }
    view: dict[str, Any] = {
        "cloud_id": str(cloud.id),
        "name": terms.name,
        "owner_id": terms.owner_id,
        "billing_email": terms.billing_email,
        "currency": terms.currency,
        "seat_price": format(terms.seat_price, "f"),
        "billing_period": terms.billing_period,
        "term_start": terms.term_start.isoformat(),
        "time_zone": terms.time_zone,
        "tax_rate": format(terms.tax_rate, "f"),
        "locale": terms.locale,
        "licensed_rights_groups": list(cloud.licensed_rights_groups),
        "seats": shown.seats,
        "licenses_assigned": shown.licenses_assigned,
        "licenses_free": shown.licenses_free,
        "licenses": [
            {"user_id": user, "rights_group": group}
            for user, group in sorted(cloud.licenses.items())
        ],
        "current_period": _period(shown),
        "renewal_pending": shown.period_index != cloud.period_index,
        "recorded_period": _period(cloud),
        "scheduled_reduction": reduction,
        "version": cloud.version,
    }
    if as_of is not None:
        view["as_of"] = as_of.isoformat()
        view["state_at"] = (state_at or as_of).isoformat()
    return view


def purchase_view(result: tuple[Cloud, Cloud.SeatsIncreased]) -> dict[str, Any]:
    """The answer to a purchase: the cloud and what was bought."""
    cloud, event = result
    view = cloud_view(cloud)
    view["purchase"] = {
        "seats_before": event.seats_before,
        "seats_after": event.seats_after,
        "seats_added": event.seats_after - event.seats_before,
        "charge_date": event.charge_date.isoformat(),
        "period_start": event.period_start.isoformat(),
        "period_end": event.period_end.isoformat(),
        "net": format(event.net, "f"),
        "currency": cloud.terms.currency,
        "quote_id": str(event.quote.quote_id) if event.quote is not None else None,
    }
    return view


def overview_entry(recorded: Cloud, now: datetime) -> dict[str, Any]:
    """A cloud's line in its owner's overview, its period by the clock (as GET of the cloud
    shows it). Raises :class:`~services.ledger.domain.UnbillableContract` for a cloud whose
    periods cannot be computed."""
    c = recorded.as_at(now)
    return {
        "cloud_id": str(c.id),
        "name": c.terms.name,
        "status": "active",
        "seats": c.seats,
        "licenses_assigned": c.licenses_assigned,
        "licenses_free": c.licenses_free,
        "current_period": _period(c),
        "renewal_pending": c.period_index != recorded.period_index,
        "scheduled_reduction": c.scheduled_reduction,
    }


def quote_view(quote: Quote) -> dict[str, Any]:
    return {
        "quote_id": str(quote.quote_id),
        "cloud_id": str(quote.cloud_id),
        "seats": quote.seats,
        "seats_before": quote.seats_before,
        "seats_added": quote.seats_added,
        "charge_date": quote.charge_date.isoformat(),
        "period_start": quote.period_start.isoformat(),
        "period_end": quote.period_end.isoformat(),
        "days_remaining": quote.remaining_days,
        "days_in_period": quote.period_days,
        "net": format(quote.net, "f"),
        "tax": format(quote.tax, "f"),
        "gross": format(quote.gross, "f"),
        "currency": quote.currency,
        "expires_at": quote.expires_at.isoformat(),
    }


# --------------------------------------------------------------------------------------------
# Authorization.


def actor_of(principal: Principal) -> Actor:
    return Actor("user", principal.subject)


def authorize(principal: Principal, cloud: Cloud, *, owner: bool, scopes: tuple[str, ...]) -> None:
    """Allow the owner (if ``owner``) or a holder of one of ``scopes``; else 403 for the owner
    or a caller with some billing scope, 404 for anyone else (existence is not revealed)."""
    if owner and principal.subject == cloud.terms.owner_id:
        return
    if scopes and principal.has_scope(*scopes):
        return
    knows_it = principal.subject == cloud.terms.owner_id
    if knows_it or principal.has_scope(SCOPE_ADMIN, SCOPE_AUDIT, SCOPE_LICENSES):
        raise AuthError("this action is not allowed for this token", status=403, error="forbidden")
    raise CloudNotFound(f"no cloud {cloud.id}")


def guarded(
    principal: Principal, *, owner: bool, scopes: tuple[str, ...]
) -> Callable[[Cloud], None]:
    def check(cloud: Cloud) -> None:
        authorize(principal, cloud, owner=owner, scopes=scopes)

    return check


# --------------------------------------------------------------------------------------------
# The router.


#: Checks a caller's right to a route before its request is validated (raises if none).
FirstCheck = Callable[[Principal, Request], None]


def authorize_first(check: FirstCheck) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a route's endpoint with the authorization its :class:`AuthorizeFirstRoute` runs
    when the request fails validation: a caller without rights gets 401/403/404, never the
    list of invalid fields."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.__dict__["authorize_first"] = check
        return endpoint

    return mark


class AuthorizeFirstRoute(APIRoute):
    """A route that, when its request fails validation, authorizes the caller first (the
    endpoint's :func:`authorize_first` check) and only then answers the 422. A valid request
    pays nothing extra: its endpoint authorizes as before."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        check: FirstCheck | None = getattr(self.endpoint, "authorize_first", None)
        if check is None:
            return handler

        async def authorized_first(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except RequestValidationError:
                principal = getattr(request.state, "principal", None)
                if principal is None:
                    principal = await get_principal(request)  # 401 for a bad token
                await run_in_threadpool(check, principal, request)
                raise
            return response

        return authorized_first


def build_router(service: LedgerService, authenticator: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["ledger"], route_class=AuthorizeFirstRoute)

    def on_cloud(*, owner: bool, scopes: tuple[str, ...]) -> FirstCheck:
        """The first check of a cloud route: the cloud exists and the caller may act on it
        (an unparseable cloud id is left to the validation answer)."""

        def check(principal: Principal, request: Request) -> None:
            try:
                cloud_id = UUID(str(request.path_params.get("cloud_id", "")))
            except ValueError:
                return
            precheck(principal, cloud_id, owner=owner, scopes=scopes)

        return check

    def admin_only(principal: Principal, request: Request) -> None:
        if not principal.has_scope(SCOPE_ADMIN):
            raise AuthError("opening a cloud needs the scope billing:admin", status=403)

    licenses_first = on_cloud(owner=True, scopes=(SCOPE_LICENSES,))
    owner_first = on_cloud(owner=True, scopes=())
    readers_first = on_cloud(owner=True, scopes=(SCOPE_ADMIN, SCOPE_AUDIT))

    def precheck(
        principal: Principal, cloud_id: UUID, *, owner: bool, scopes: tuple[str, ...]
    ) -> Cloud:
        try:
            cloud = service.get(cloud_id)
            authorize(principal, cloud, owner=owner, scopes=scopes)
        except domain.LedgerError as exc:
            raise _problem(exc) from exc
        return cloud

    # The license routes first: routes are tried in order and these carry the load.
    @router.post("/clouds/{cloud_id}/licenses", status_code=201, summary="Assign a license")
    @authorize_first(licenses_first)
    async def assign(
        cloud_id: UUID, body: LicenseBody, principal: CurrentPrincipal, request: Request
    ) -> JSONResponse:
        change = await _await(
            service.submit_assign(
                cloud_id,
                body.user_id,
                body.rights_group,
                actor_of(principal),
                authorize=guarded(principal, owner=True, scopes=(SCOPE_LICENSES,)),
                request_key=request_key_of(request),
            )
        )
        return JSONResponse(
            {
                "cloud_id": str(change.cloud_id),
                "user_id": body.user_id,
                "rights_group": body.rights_group,
                "seats": change.seats,
                "licenses_assigned": change.licenses_assigned,
                "licenses_free": change.licenses_free,
                "version": change.version,
            },
            status_code=201,
        )

    # ``user_id`` takes any path (also ``a/b``): a license recorded for such an id before the
    # identifier rule must stay releasable.
    @router.delete(
        "/clouds/{cloud_id}/licenses/{user_id:path}",
        status_code=204,
        summary="Release a license",
    )
    @authorize_first(licenses_first)
    async def release(
        cloud_id: UUID,
        user_id: str,
        principal: CurrentPrincipal,
        request: Request,
        rights_group: Annotated[
            RightsGroup | None,
            Query(description="the user's new, unlicensed rights group (e.g. guest), recorded"),
        ] = None,
    ) -> Response:
        await _await(
            service.submit_release(
                cloud_id,
                user_id,
                actor_of(principal),
                rights_group=rights_group,
                authorize=guarded(principal, owner=True, scopes=(SCOPE_LICENSES,)),
                request_key=request_key_of(request),
            )
        )
        return Response(status_code=204)

    @router.put(
        "/clouds/{cloud_id}/users/{user_id:path}/rights-group",
        summary="Set a user's rights group (assigns, keeps or releases the license)",
    )
    @authorize_first(licenses_first)
    async def rights_group(
        cloud_id: UUID,
        user_id: str,
        body: RightsGroupBody,
        principal: CurrentPrincipal,
        request: Request,
    ) -> JSONResponse:
        state = await _await(
            service.submit_rights_group(
                cloud_id,
                user_id,
                body.rights_group,
                actor_of(principal),
                previous_rights_group=body.previous_rights_group,
                authorize=guarded(principal, owner=True, scopes=(SCOPE_LICENSES,)),
                request_key=request_key_of(request),
            )
        )
        return JSONResponse(
            {
                "cloud_id": str(state.cloud_id),
                "user_id": state.user_id,
                "rights_group": state.rights_group,
                "holds_license": state.holds_license,
                "outcome": state.outcome,
                "seats": state.seats,
                "licenses_assigned": state.licenses_assigned,
                "licenses_free": state.licenses_free,
                "version": state.version,
            }
        )

    @router.post("/clouds", status_code=201, summary="Open a cloud's contract")
    @authorize_first(admin_only)
    async def open_cloud(
        body: OpenCloudBody, principal: CurrentPrincipal, request: Request
    ) -> JSONResponse:
        if not principal.has_scope(SCOPE_ADMIN):
            raise AuthError("opening a cloud needs the scope billing:admin", status=403)
        terms = ContractTerms(
            name=body.name,
            owner_id=body.owner_id,
            billing_email=body.billing_email,
            currency=body.currency,
            seat_price=body.seat_price,
            billing_period=body.billing_period.value,
            term_start=body.term_start,
            time_zone=body.time_zone,
            tax_rate=body.tax_rate,
            locale=body.locale,
        )
        try:
            terms.validate()
        except domain.LedgerError as exc:
            raise _problem(exc) from exc
        groups = service.licensed_rights_groups
        cloud, created = await _await(
            service.submit_open(
                OpenCloud(body.cloud_id, terms, body.seats, groups),
                actor_of(principal),
                request_key=request_key_of(request),
            )
        )
        annotate(request, cloud_id=str(cloud.id))
        return JSONResponse(
            cloud_view(cloud),
            status_code=201 if created else 200,
            headers={"Location": f"/v1/clouds/{cloud.id}"},
        )

    @router.get("/clouds/{cloud_id}", summary="A cloud's seats, licenses and period")
    @authorize_first(readers_first)
    def get_cloud(
        cloud_id: UUID,
        principal: CurrentPrincipal,
        as_of: Annotated[
            Instant | None,
            Query(
                description=(
                    "RFC 3339 instant (years 2000 to 2199): the state as it was then; an "
                    "instant after now is answered with the state now (`state_at`)"
                )
            ),
        ] = None,
    ) -> dict[str, Any]:
        current = precheck(principal, cloud_id, owner=True, scopes=(SCOPE_ADMIN, SCOPE_AUDIT))
        now = service.clock()
        try:
            if as_of is None:
                return cloud_view(current, now=now)
            if as_of >= now:
                # The future is not known yet: the state now, with both instants shown.
                return cloud_view(current, as_of=as_of, state_at=now)
            past = service.get(cloud_id, as_of)
            return cloud_view(past, as_of=as_of)
        except domain.LedgerError as exc:
            raise _problem(exc) from exc

    # ``owner_id`` takes any path: an owner id recorded before the identifier rule (``a/b``)
    # still has its overview.
    @router.get("/owners/{owner_id:path}/clouds", summary="The overview of an owner's clouds")
    def owner_clouds(owner_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
        if principal.subject != owner_id and not principal.has_scope(SCOPE_ADMIN, SCOPE_AUDIT):
            raise AuthError("only the owner sees this overview", status=403, error="forbidden")
        now = service.clock()
        clouds = []
        for recorded in service.clouds_of(owner_id):
            try:
                clouds.append(overview_entry(recorded, now))
            except domain.UnbillableContract as exc:
                clouds.append(
                    {
                        "cloud_id": str(recorded.id),
                        "name": recorded.terms.name,
                        "status": "unbillable",
                        "reason": str(exc),
                    }
                )
        return {"owner_id": owner_id, "clouds": clouds}

    @router.post(
        "/clouds/{cloud_id}/seat-quotes", summary="Price a seat purchase (records nothing)"
    )
    @authorize_first(owner_first)
    def quote(cloud_id: UUID, body: QuoteBody, principal: CurrentPrincipal) -> dict[str, Any]:
        precheck(principal, cloud_id, owner=True, scopes=())
        try:
            offer = service.quote(cloud_id, body.seats, body.effective_date)
        except domain.LedgerError as exc:
            raise _problem(exc) from exc
        return quote_view(offer)

    @router.post("/clouds/{cloud_id}/seat-purchases", status_code=201, summary="Buy seats")
    @authorize_first(owner_first)
    def purchase(
        cloud_id: UUID, body: PurchaseBody, principal: CurrentPrincipal, request: Request
    ) -> dict[str, Any]:
        precheck(principal, cloud_id, owner=True, scopes=())
        authenticator.require_step_up(principal)
        check = guarded(principal, owner=True, scopes=())
        result = _wait(
            service,
            service.submit_purchase(
                cloud_id,
                body.seats,
                actor_of(principal),
                body.quote_id,
                authorize=check,
                request_key=request_key_of(request),
            ),
            request,
            purchase_view,
        )
        return purchase_view(result)

    @router.post("/clouds/{cloud_id}/seat-reductions", status_code=201, summary="Reduce seats")
    @authorize_first(owner_first)
    def reduce(
        cloud_id: UUID, body: SeatsBody, principal: CurrentPrincipal, request: Request
    ) -> dict[str, Any]:
        precheck(principal, cloud_id, owner=True, scopes=())
        authenticator.require_step_up(principal)
        cloud = _wait(
            service,
            service.submit_reduction(
                cloud_id,
                body.seats,
                actor_of(principal),
                authorize=guarded(principal, owner=True, scopes=()),
                request_key=request_key_of(request),
            ),
            request,
            cloud_view,
        )
        return cloud_view(cloud)

    @router.put("/clouds/{cloud_id}/billing-email", summary="Change the billing e-mail")
    @authorize_first(owner_first)
    async def billing_email(
        cloud_id: UUID, body: BillingEmailBody, principal: CurrentPrincipal, request: Request
    ) -> dict[str, Any]:
        cloud = await _await(
            service.submit_billing_email(
                cloud_id,
                body.billing_email,
                actor_of(principal),
                authorize=guarded(principal, owner=True, scopes=()),
                request_key=request_key_of(request),
            )
        )
        return cloud_view(cloud)

    @router.get("/clouds/{cloud_id}/events", summary="A cloud's full history")
    @authorize_first(on_cloud(owner=False, scopes=(SCOPE_AUDIT, SCOPE_ADMIN)))
    def events(cloud_id: UUID, principal: CurrentPrincipal) -> dict[str, Any]:
        precheck(principal, cloud_id, owner=False, scopes=(SCOPE_AUDIT, SCOPE_ADMIN))
        history = []
        for stored in service.history(cloud_id):
            try:
                published = to_cloud_event(stored)
            except (ValueError, OverflowError) as exc:
                # Recorded by an older release and not expressible in the contract (e.g. a
                # term whose first period ends after the year 9999): listed, not published.
                history.append(
                    {
                        "version": stored.originator_version,
                        "id": str(event_id(cloud_id, stored.originator_version)),
                        "type": None,
                        "time": stored.timestamp.isoformat(),
                        "data": None,
                        "unpublishable": f"{type(stored).__name__}: {exc}",
                    }
                )
                continue
            if published is None:
                continue
            history.append(
                {
                    "version": stored.originator_version,
                    "id": published.id,
                    "type": published.type,
                    "time": stored.timestamp.isoformat(),
                    "data": published.data,
                }
            )
        return {"cloud_id": str(cloud_id), "events": history}

    return router
