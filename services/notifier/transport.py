"""Outbound adapters that hand a message over: SMTP, or ``.eml`` files in the outbox folder.

A transport either returns (the message was accepted) or raises one of two errors:

- :class:`TemporaryFailure`: connection refused or lost, a timeout, a TLS handshake error, a
  4xx reply, an authentication failure or a demand for STARTTLS (configuration faults that are
  fixed without touching the invoice). The delivery is retried with backoff.
- :class:`PermanentFailure`: a 5xx reply (e.g. ``550 mailbox unavailable``) or an address the
  server refuses as invalid. The delivery is recorded as failed and never retried.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol


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


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` over, or raise :class:`TransportFailure`."""


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

    def send(self, message: EmailMessage) -> None:
        try:
            self._send(message)
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

    def _send(self, message: EmailMessage) -> None:
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

    def send(self, message: EmailMessage) -> None:
        target = self.path_for(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(message.as_bytes())
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TemporaryFailure("outbox_write", f"{type(exc).__name__}: {exc}"[:300]) from exc
