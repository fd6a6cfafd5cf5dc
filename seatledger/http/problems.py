"""RFC 9457 problem details (``application/problem+json``) for every error answer.

An exception no route turned into an answer is classified by :func:`error_answer`: an
unavailable store or broker (a connection refused, lost or timed out, a pool without a free
connection, a locked SQLite file, ...) is a ``503`` problem with ``Retry-After``, anything else
a ``500`` problem. Either way the caller may retry, and a key of the request is left free.
"""

from __future__ import annotations

import json
import sqlite3
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from seatledger.auth import AuthError
from seatledger.logging import get_logger

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://seatledger.dev/problems/"
#: The problem type of an answer given while a store or broker does not answer.
UNAVAILABLE = PROBLEM_BASE + "service-unavailable"
#: Seconds a client is told to wait (``Retry-After``) when a dependency is unavailable.
RETRY_AFTER_S = 5

_log = get_logger("seatledger.http")


class Problem(Exception):
    """Raise in a route to answer with problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or problem_type(title)
        self.headers = headers or {}
        self.extensions = extensions


def problem_body(
    status: int,
    title: str,
    detail: str = "",
    *,
    type_: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_ or "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


def problem_response(
    status: int,
    title: str,
    detail: str = "",
    *,
    headers: dict[str, str] | None = None,
    type_: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, title, detail, type_=type_, instance=instance, **extensions),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problem_type(title: str) -> str:
    """The problem type named by a title (``Idempotency-Key reused`` ->
    ``.../problems/idempotency-key-reused``): one problem, one type, whoever answers it."""
    return PROBLEM_BASE + title.lower().replace(" ", "-")


def raw_problem(status: int, title: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a problem, for ASGI middleware that answers by itself (typed like
    a route's :class:`Problem` of the same title)."""
    body = json.dumps(problem_body(status, title, detail, type_=problem_type(title))).encode()
    return [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ], body


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _outage_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError]
    try:
        import psycopg

        types.append(psycopg.OperationalError)  # includes psycopg_pool.PoolTimeout
    except ImportError:  # pragma: no cover - installed with the project
        pass
    try:
        from eventsourcing.persistence import InterfaceError, OperationalError

        types.extend((OperationalError, InterfaceError))
    except ImportError:  # pragma: no cover - installed with the project
        pass
    try:
        from confluent_kafka import KafkaException

        types.append(KafkaException)
    except ImportError:  # pragma: no cover - installed with the project
        pass
    return tuple(types)


_OUTAGES = _outage_types()
#: SQLite errors that say the file is busy or unreachable (not a bug in a statement).
_SQLITE_OUTAGE_MESSAGES = ("locked", "busy", "unable to open", "disk i/o")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups (bounded)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 32:
        current = todo.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a store or broker is unavailable."""
    for cause in _causes(exc):
        if isinstance(cause, _OUTAGES):
            return True
        if isinstance(cause, sqlite3.OperationalError) and any(
            text in str(cause).lower() for text in _SQLITE_OUTAGE_MESSAGES
        ):
            return True
    return False


def error_answer(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, problem body and headers answering an exception no route handled."""
    if is_outage(exc):
        return (
            503,
            problem_body(
                503,
                "Service Unavailable",
                "a store or broker does not answer; retry later",
                type_=UNAVAILABLE,
            ),
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    return 500, problem_body(500, "Internal Server Error", "an unexpected error occurred"), {}


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a problem+json answer (including 404s of unknown routes,
    405s and validation errors)."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            headers=exc.headers,
            type_=exc.type,
            instance=request.url.path,
            **exc.extensions,
        )

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        headers = {}
        if exc.www_authenticate:
            headers["WWW-Authenticate"] = exc.www_authenticate
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            headers=headers,
            type_=PROBLEM_BASE + exc.error.replace("_", "-"),
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        return problem_response(
            exc.status_code,
            _title(exc.status_code),
            detail,
            headers=dict(exc.headers or {}),
            instance=request.url.path,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": ".".join(str(part) for part in err.get("loc", ())),
                "message": str(err.get("msg", "")),
            }
            for err in exc.errors()
        ]
        return problem_response(
            422,
            "Invalid request",
            "the request does not match the expected shape; see errors",
            type_=PROBLEM_BASE + "invalid-request",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        status, body, headers = error_answer(exc)
        log_error(exc, status)
        body["instance"] = request.url.path
        return JSONResponse(
            body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
        )


def log_error(exc: BaseException, status: int) -> None:
    """One log line for an exception answered with ``status`` (an outage as a warning)."""
    if status == 503:
        _log.warning("dependency_unavailable", error_type=type(exc).__name__, error=str(exc)[:500])
    else:
        _log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
