"""Bounds on every request, applied before anything else reads it.

- A header that names the caller or the request's identity (``Authorization``,
  ``Idempotency-Key``) given more than once: 400, so that the route and the idempotency store
  can never see different callers or keys.
- The body is read whole before the app sees it: at most ``max_body_bytes`` (413 beyond,
  refused at once when ``Content-Length`` announces more) within ``body_timeout_s`` of the
  headers (408 otherwise). A client that disconnects before its body is complete gets nothing
  processed: the app is never called, so no key is claimed and nothing is recorded.
- A response body larger than ``max_response_bytes`` is not sent: the answer is a 500 problem
  (it is a bug to fix, logged as such).

The time a client may take to send its headers is bounded by the HTTP server
(:mod:`seatledger.serving`), before a request reaches any app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio

from seatledger.http.problems import raw_problem
from seatledger.logging import get_logger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Headers a request may carry at most once.
SINGLE_HEADERS = (b"authorization", b"idempotency-key")
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

_log = get_logger("seatledger.http.limits")


@dataclass
class RequestLimits:
    """The bounds of an app's requests (``app.state.request_limits``); a process's settings
    may change them before it serves (:func:`seatledger.serving.serve_until_stopped`)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` for the app behind a middleware that has read the whole request body: the
    first message is that body, complete; later calls go to ``receive`` (the disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Disconnected(Exception):
    pass


class _TooLarge(Exception):
    pass


class RequestLimitsMiddleware:
    """ASGI middleware enforcing the bounds described in the module."""

    def __init__(self, app: ASGIApp, *, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    @property
    def max_body_bytes(self) -> int:
        return self.limits.max_body_bytes

    @property
    def body_timeout_s(self) -> float:
        return self.limits.body_timeout_s

    @property
    def max_response_bytes(self) -> int:
        return self.limits.max_response_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: set[bytes] = set()
        declared_length: int | None = None
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered in SINGLE_HEADERS:
                if lowered in seen:
                    header = lowered.decode().title()
                    await _answer(
                        send, 400, "Repeated header", f"the {header} header may be given only once"
                    )
                    return
                seen.add(lowered)
            elif lowered == b"content-length":
                try:
                    declared_length = int(value)
                except ValueError:
                    declared_length = None
        if declared_length is not None and declared_length > self.max_body_bytes:
            await self._too_large(send)
            return
        try:
            with anyio.fail_after(self.body_timeout_s):
                body = await self._read_body(receive)
        except _Disconnected:
            return  # nobody to answer; nothing was processed
        except _TooLarge:
            await self._too_large(send)
            return
        except TimeoutError:
            await _answer(
                send,
                408,
                "Request Timeout",
                f"the request body did not arrive within {self.body_timeout_s:g} seconds",
            )
            return

        await self.app(scope, replay_body(body, receive), self._bounded_send(scope, send))

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _answer(
            send,
            413,
            "Content Too Large",
            f"the request body may hold at most {self.max_body_bytes} bytes",
        )

    def _bounded_send(self, scope: Scope, send: Send) -> Send:
        limit = self.max_response_bytes
        sent = 0
        replaced = False

        async def bounded(message: Message) -> None:
            nonlocal sent, replaced
            if replaced:
                return  # the answer was replaced by a problem: the rest is dropped
            if message["type"] == "http.response.start":
                length = _content_length(message.get("headers", []))
                if length is not None and length > limit:
                    _log.error(
                        "response_too_large", path=scope.get("path"), size=length, limit=limit
                    )
                    replaced = True
                    await _answer(send, 500, "Internal Server Error", "the answer is too large")
                    return
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if sent > limit:
                    _log.error("response_too_large", path=scope.get("path"), limit=limit)
                    raise ResponseTooLarge(sent, limit)
            await send(message)

        return bounded


def _content_length(headers: Any) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class ResponseTooLarge(Exception):
    """A route produced an answer larger than the configured bound."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a response of {size} bytes exceeds the bound of {limit} bytes")


async def _answer(send: Send, status: int, title: str, detail: str) -> None:
    headers, body = raw_problem(status, title, detail)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
