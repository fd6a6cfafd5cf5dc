"""Outbound adapters that hand a message over: SMTP, or ``.eml`` files in the outbox folder.

A transport either returns (the message was accepted) or raises one of two errors:

- :class:`TemporaryFailure`: connection refused or lost, a timeout, a TLS handshake error, a
  4xx reply, an authentication failure or a demand for STARTTLS (configuration faults that are
  fixed without touching the invoice). The delivery is retried with backoff.
- :class:`PermanentFailure`: a 5xx reply (e.g. ``550 mailbox unavailable``) or an address the
  server refuses as invalid. The delivery is recorded as failed and never retried.

A transport is given the attempt's :class:`Fence` (its lease): it checks the fence before it
hands the message over (before ``DATA``, before the outbox file's rename), and aborts the
connection in progress the moment the fence says the lease is lost, so a sender that can no
longer keep its lease never goes on sending what another sender may take over.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Protocol


class TransportFailure(Exception):
    """The message was not handed over. ``reason`` is a stable, low-cardinality code."""

    def __init__(self, reason: str, detail: str, code: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.code = code


class TemporaryFailure(TransportFailure):
    """Retry later."""


class PermanentFailure(TransportFailure):
    """Never retry."""


class LeaseLost(TemporaryFailure):
    """The attempt's lease is lost: the message was not handed over (or the hand-over was cut
    off), and the delivery may be taken over by another sender."""

    def __init__(self, detail: str) -> None:
        super().__init__("lease_lost", detail)


class Fence(Protocol):
    """The lease of the attempt a message belongs to, as a transport sees it."""

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is held safely long enough to hand the
        message over."""

    def on_lost(self, abort: Callable[[], None]) -> Callable[[], None]:
        """Call ``abort`` (from another thread) when the lease is lost, at once if it is lost
        already; return the function that unregisters it."""


class Transport(Protocol):
    def send(self, message: EmailMessage, fence: Fence | None = None) -> None:
        """Hand ``message`` over, or raise :class:`TransportFailure`."""


def _shutdown(client: smtplib.SMTP) -> None:
    """Cut the connection under a blocked send (from another thread)."""
    sock: Any = getattr(client, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"]+")


def _reply_text(raw: bytes | str) -> str:
    """A server reply as it may be recorded, logged and published: one line, bounded length,
    and any e-mail address in it (servers often quote the recipient) replaced."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return _ADDRESS.sub("[address]", " ".join(text.split()))[:300]


#: 5xx replies that refuse the *connection's* configuration, not the message: authentication
#: or encryption required (530, RFC 4954 / 3207), mechanism too weak (534), credentials
#: invalid (535), encryption required for the mechanism (538). Fixing the settings delivers
#: the message, so they are retried like a temporary failure instead of failing the invoice.
CONFIGURATION_REPLIES = frozenset({530, 534, 535, 538})


def classify_reply(code: int, text: bytes | str, stage: str) -> TransportFailure:
    """A negative SMTP reply as a temporary (4xx, or a configuration refusal) or permanent
    (other 5xx) failure."""
    detail = f"{stage}: {code} {_reply_text(text)}"
    if code in CONFIGURATION_REPLIES:
        return TemporaryFailure("smtp_configuration", detail, code)
    if 400 <= code < 500:
        return TemporaryFailure("smtp_4xx", detail, code)
    if 500 <= code < 600:
        return PermanentFailure("smtp_5xx", detail, code)
    return TemporaryFailure("smtp_unexpected_reply", detail, code)


@dataclass
class SmtpTransport:
    """SMTP with no security, STARTTLS, or implicit TLS; optional authentication.

    One connection per message: an invoice e-mail is rare enough that keeping a connection
    open buys nothing, and a fresh connection makes every failure local to one message.
    """

    host: str
    port: int = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    local_hostname: str | None = None

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def send(self, message: EmailMessage, fence: Fence | None = None) -> None:
        try:
            self._send(message, fence)
        except TransportFailure:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise classify_reply(code, text, "RCPT") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise classify_reply(exc.smtp_code, exc.smtp_error, "MAIL") from exc
        except smtplib.SMTPDataError as exc:
            raise classify_reply(exc.smtp_code, exc.smtp_error, "DATA") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(
                "smtp_configuration", f"authentication refused: {exc.smtp_code}", exc.smtp_code
            ) from exc
        except smtplib.SMTPConnectError as exc:
            raise TemporaryFailure(
                "smtp_connect", f"greeting refused: {exc.smtp_code}", exc.smtp_code
            ) from exc
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):  # smtplib wraps a read timeout
                raise TemporaryFailure("timeout", f"no answer within {self.timeout_s}s") from exc
            raise TemporaryFailure("smtp_disconnected", str(exc)[:300]) from exc
        except smtplib.SMTPResponseException as exc:
            raise classify_reply(exc.smtp_code, exc.smtp_error, "SMTP") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise TemporaryFailure("smtp_not_supported", str(exc)[:300]) from exc
        except TimeoutError as exc:
            raise TemporaryFailure("timeout", f"no answer within {self.timeout_s}s") from exc
        except ssl.SSLError as exc:
            raise TemporaryFailure("tls", str(exc)[:300]) from exc
        except ConnectionRefusedError as exc:
            raise TemporaryFailure("connection_refused", f"{self.host}:{self.port}") from exc
        except OSError as exc:
            raise TemporaryFailure("network", f"{type(exc).__name__}: {exc}"[:300]) from exc
        except smtplib.SMTPException as exc:
            raise TemporaryFailure("smtp_error", f"{type(exc).__name__}: {exc}"[:300]) from exc

    def _send(self, message: EmailMessage, fence: Fence | None) -> None:
        if fence is not None:
            fence.check()
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout_s,
                context=self._context(),
            )
        else:
            client = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout_s
            )
        unregister: Callable[[], None] = lambda: None  # noqa: E731
        if fence is not None:
            unregister = fence.on_lost(lambda: _shutdown(client))
            handed_over = client.data

            def fenced_data(msg: Any) -> tuple[int, bytes]:
                fence.check()  # the last moment before the server may take the message
                return handed_over(msg)

            client.data = fenced_data  # type: ignore[method-assign]
        try:
            self._transaction(client, message)
        finally:
            unregister()

    def _transaction(self, client: smtplib.SMTP, message: EmailMessage) -> None:
        with client:
            client.ehlo()
            if self.security == "starttls":
                client.starttls(context=self._context())
                client.ehlo()
            if self.username:
                client.login(self.username, self.password or "")
            refused = client.send_message(message)
            if refused:  # only possible with several recipients; ours have one
                code, text = next(iter(refused.values()))
                raise classify_reply(code, text, "RCPT")


@dataclass
class OutboxTransport:
    """The embedded default: each message becomes an ``.eml`` file in ``folder``.

    The file name is derived from the ``Message-ID``, and the file is written atomically
    (temporary file, then rename): sending the same invoice again replaces the file with an
    identical message instead of adding a second one.
    """

    folder: Path

    def path_for(self, message: EmailMessage) -> Path:
        message_id = str(message["Message-ID"] or "").strip("<>")
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in message_id)
        if not safe:
            raise PermanentFailure("no_message_id", "a message without Message-ID")
        return self.folder / f"{safe}.eml"

    def send(self, message: EmailMessage, fence: Fence | None = None) -> None:
        target = self.path_for(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(message.as_bytes())
                    out.flush()
                    os.fsync(out.fileno())
                if fence is not None:
                    fence.check()
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TemporaryFailure("outbox_write", f"{type(exc).__name__}: {exc}"[:300]) from exc
