"""The SMTP transport against a real server: STARTTLS, implicit TLS, authentication, and how
each refusal is classified (temporary: retried; permanent: failed for good)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from datetime import UTC, datetime

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from seatledger.rendering import render_invoice_pdf
from services.notifier.message import MessageBuilder, Templates
from services.notifier.transport import PermanentFailure, SmtpTransport, TemporaryFailure
from tests.integration.notifier.smtp import RecordingHandler, SmtpServer, free_port
from tests.samples import make_invoice

pytestmark = pytest.mark.integration

USER, PASSWORD = "mailer", "s3cret-pass"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (server context, client context)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (USER, PASSWORD)
    return AuthResult(success=ok, handled=False)  # on failure the server replies 535


@pytest.fixture
def message():
    builder = MessageBuilder("billing@seatledger.example", render_invoice_pdf, Templates())
    return builder.build(make_invoice(email="ap@example.com"), datetime.now(UTC))


@pytest.fixture
def servers():
    started = []

    def start(handler, **options):
        server = SmtpServer(handler, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_starttls_with_authentication_delivers_the_message(certificate, servers, message):
    server_context, client_context = certificate
    handler = RecordingHandler()
    server = servers(
        handler,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    transport = SmtpTransport(
        "127.0.0.1",
        server.port,
        security="starttls",
        username=USER,
        password=PASSWORD,
        ssl_context=client_context,
    )

    transport.send(message)

    assert [r.rcpt_tos for r in handler.messages()] == [["ap@example.com"]]


def test_implicit_tls_delivers_the_message(certificate, servers, message):
    server_context, client_context = certificate
    handler = RecordingHandler()
    server = servers(handler, ssl_context=server_context)
    transport = SmtpTransport("127.0.0.1", server.port, security="tls", ssl_context=client_context)

    transport.send(message)

    assert len(handler.messages()) == 1


def test_wrong_credentials_are_a_temporary_configuration_failure(certificate, servers, message):
    server_context, client_context = certificate
    handler = RecordingHandler()
    server = servers(
        handler, tls_context=server_context, authenticator=authenticator, auth_required=True
    )
    transport = SmtpTransport(
        "127.0.0.1",
        server.port,
        security="starttls",
        username=USER,
        password="wrong",
        ssl_context=client_context,
    )

    with pytest.raises(TemporaryFailure) as failure:
        transport.send(message)

    assert failure.value.reason == "smtp_configuration"
    assert handler.messages() == []


def test_a_server_demanding_starttls_from_a_plain_client_is_a_temporary_failure(
    certificate, servers, message
):
    server_context, _ = certificate
    server = servers(RecordingHandler(), tls_context=server_context, require_starttls=True)

    with pytest.raises(TemporaryFailure) as failure:
        SmtpTransport("127.0.0.1", server.port).send(message)

    assert failure.value.code == 530


def test_an_untrusted_certificate_is_a_temporary_failure(certificate, servers, message):
    server_context, _ = certificate
    server = servers(RecordingHandler(), tls_context=server_context)

    with pytest.raises(TemporaryFailure) as failure:
        SmtpTransport("127.0.0.1", server.port, security="starttls").send(message)

    assert failure.value.reason == "tls"


def test_connection_refused_is_temporary(message):
    with pytest.raises(TemporaryFailure) as failure:
        SmtpTransport("127.0.0.1", free_port()).send(message)

    assert failure.value.reason == "connection_refused"


def test_a_server_that_never_answers_is_a_temporary_timeout(message):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]

        with pytest.raises(TemporaryFailure) as failure:
            SmtpTransport("127.0.0.1", port, timeout_s=0.3).send(message)

    assert failure.value.reason == "timeout"


def test_a_5xx_reply_to_the_recipient_is_permanent(servers, message):
    handler = RecordingHandler(rcpt_replies={"ap@example.com": ["550 5.1.1 no such user"]})
    server = servers(handler)

    with pytest.raises(PermanentFailure) as failure:
        SmtpTransport("127.0.0.1", server.port).send(message)

    assert failure.value.code == 550
    assert "no such user" in failure.value.detail
