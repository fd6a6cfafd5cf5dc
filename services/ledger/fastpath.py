"""A direct route for the two license commands, the ledger's hot path.

``POST /v1/clouds/{cloud_id}/licenses`` and ``DELETE /v1/clouds/{cloud_id}/licenses/{user_id}``
carry the load of a user-admin service. FastAPI's per-request machinery (dependency solving,
request wrappers, body decoding through several layers) costs more event-loop time than the
command itself, and one event loop serves all requests of a process. This ASGI layer answers
those two requests directly, with the same model (:class:`~services.ledger.api.LicenseBody`),
the same authentication, authorization, command and answer as the FastAPI routes (the
identity of the request's ``Idempotency-Key`` is recorded with the event alike, so a retry
after a crash is answered with the committed result).

It only takes the plain case: a strictly formatted cloud id, a JSON body, a token that verifies
and a valid body (no query string on the DELETE). Anything else goes, unchanged and with its
body replayed, to the FastAPI routes, which answer it exactly as before (401, 422, ...). Errors
of the command itself are rendered by the app's own exception handlers. The layer sits inside
the request log and the ``Idempotency-Key`` middleware, so both see these requests as before,
under the same route template.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any
from uuid import UUID

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request

from seatledger.auth import Authenticator, AuthError
from seatledger.http import Problem
from seatledger.http.limits import replay_body
from services.ledger.api import LicenseBody, _await, actor_of, guarded, request_key_in
from services.ledger.application import LedgerService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ASSIGN = re.compile(rf"^/v1/clouds/({_UUID})/licenses$")
_RELEASE = re.compile(rf"^/v1/clouds/({_UUID})/licenses/([^/]+)$")
ASSIGN_ROUTE = "/v1/clouds/{cloud_id}/licenses"
RELEASE_ROUTE = "/v1/clouds/{cloud_id}/licenses/{user_id}"
_SCOPES_LICENSES = ("billing:licenses",)


class LicenseFastPath:
    """ASGI middleware answering the plain license commands (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api: FastAPI,
        service: LedgerService,
        authenticator: Authenticator,
    ) -> None:
        self.app = app
        self.api = api
        self.service = service
        self.authenticator = authenticator
        self._routes: dict[tuple[str, str], APIRoute] = {}

    def _route(self, method: str, path: str) -> APIRoute | None:
        key = (method, path)
        if key not in self._routes:
            for route in _api_routes(self.api.routes):
                if route.path_format == path and method in (route.methods or ()):
                    self._routes[key] = route
                    break
            else:
                return None
        return self._routes[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "POST":
            match = _ASSIGN.match(scope["path"])
            if match is not None:
                await self._assign(scope, receive, send, match.group(1))
                return
        elif method == "DELETE" and not scope.get("query_string"):
            match = _RELEASE.match(scope["path"])
            if match is not None:
                await self._release(scope, receive, send, match.group(1), match.group(2))
                return
        await self.app(scope, receive, send)

    # ---- the two commands -----------------------------------------------------------------

    async def _assign(self, scope: Scope, receive: Receive, send: Send, cloud: str) -> None:
        authorization, content_type = _headers(scope)
        raw = await _read_body(receive)
        route = self._route("POST", ASSIGN_ROUTE)
        principal = self._principal(authorization)
        body: LicenseBody | None = None
        if principal is not None and route is not None and _is_json(content_type):
            try:
                body = LicenseBody.model_validate_json(raw)
            except ValidationError:
                body = None
        if body is None or principal is None or route is None:
            await self.app(scope, replay_body(raw, receive), send)
            return
        scope["route"] = route
        scope["path_params"] = {"cloud_id": cloud}
        try:
            change = await _await(
                self.service.submit_assign(
                    UUID(cloud),
                    body.user_id,
                    body.rights_group,
                    actor_of(principal),
                    authorize=guarded(principal, owner=True, scopes=_SCOPES_LICENSES),
                    request_key=request_key_in(scope),
                )
            )
        except (Problem, AuthError) as exc:
            await self._error(scope, receive, send, exc)
            return
        response = JSONResponse(
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
        await response(scope, receive, send)

    async def _release(
        self, scope: Scope, receive: Receive, send: Send, cloud: str, user_id: str
    ) -> None:
        authorization, _ = _headers(scope)
        route = self._route("DELETE", RELEASE_ROUTE)
        principal = self._principal(authorization)
        if principal is None or route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["path_params"] = {"cloud_id": cloud, "user_id": user_id}
        try:
            await _await(
                self.service.submit_release(
                    UUID(cloud),
                    user_id,
                    actor_of(principal),
                    authorize=guarded(principal, owner=True, scopes=_SCOPES_LICENSES),
                    request_key=request_key_in(scope),
                )
            )
        except (Problem, AuthError) as exc:
            await self._error(scope, receive, send, exc)
            return
        await Response(status_code=204)(scope, receive, send)

    # ---- helpers --------------------------------------------------------------------------

    def _principal(self, authorization: str | None) -> Any:
        try:
            return self.authenticator.verify_header(authorization)
        except AuthError:
            return None  # the FastAPI route answers it (401 with WWW-Authenticate)

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer with the app's own exception handler for ``exc``."""
        handler = next(
            self.api.exception_handlers[cls]
            for cls in type(exc).__mro__
            if cls in self.api.exception_handlers
        )
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


def license_fast_path(
    api: FastAPI, service: LedgerService, authenticator: Authenticator
) -> Middleware:
    """The middleware entry to append innermost to ``api.user_middleware``."""
    return Middleware(LicenseFastPath, api=api, service=service, authenticator=authenticator)


def install_license_fast_path(
    api: FastAPI, service: LedgerService, authenticator: Authenticator
) -> None:
    """Put the fast path innermost (inside the request log and idempotency middleware) of an
    app whose middleware stack is not built yet (before its first request)."""
    api.user_middleware.append(license_fast_path(api, service, authenticator))


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also those of included routers (FastAPI keeps an included router as
    one entry holding the original router)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    authorization = content_type = None
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"authorization":
            authorization = value.decode("latin-1")
        elif lowered == b"content-type":
            content_type = value.decode("latin-1")
    return authorization, content_type


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
