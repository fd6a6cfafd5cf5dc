"""RFC 9457 problem details (``application/problem+json``) for every error answer."""

from __future__ import annotations

import json
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
        self.type = type_ or PROBLEM_BASE + title.lower().replace(" ", "-")
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


def raw_problem(status: int, title: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a problem, for ASGI middleware that answers by itself."""
    body = json.dumps(problem_body(status, title, detail)).encode()
    return [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ], body


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


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
        _log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
        return problem_response(
            500, "Internal Server Error", "an unexpected error occurred", instance=request.url.path
        )
