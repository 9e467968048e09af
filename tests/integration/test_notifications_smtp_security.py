"""SMTP security as configured: STARTTLS or implicit TLS, and login, against a real SMTP server."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from notifications import smtp
from notifications.settings import NotificationSettings
from plenary_stack.processes import free_port

USER, PASSWORD = "plenary", "correct horse battery staple"


class Collect:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def server(handler: Collect, tls_context: ssl.SSLContext, implicit: bool) -> Controller:
    options: dict[str, Any] = {"authenticator": authenticate, "auth_required": True}
    if implicit:
        options["ssl_context"] = tls_context
        # aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH; this session is TLS throughout.
        options["auth_require_tls"] = False
    else:
        options["tls_context"] = tls_context
        options["require_starttls"] = True
    return Controller(handler, hostname="127.0.0.1", port=free_port(), **options)


@pytest.fixture
def starttls_server(tls_context: ssl.SSLContext) -> Iterator[tuple[Controller, Collect]]:
    handler = Collect()
    controller = server(handler, tls_context, implicit=False)
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def implicit_tls_server(tls_context: ssl.SSLContext) -> Iterator[tuple[Controller, Collect]]:
    handler = Collect()
    controller = server(handler, tls_context, implicit=True)
    controller.start()
    yield controller, handler
    controller.stop()


def email() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Your place at Education Leadership in Challenging Times is confirmed"
    message["From"] = "Plenary <events@plenary.example>"
    message["To"] = "siobhan@st-helens-primary.example"
    message.set_content("Dear Siobhán,\n")
    return message


def settings(controller: Controller, security: str, **extra: Any) -> NotificationSettings:
    return NotificationSettings(
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_security=security,
        smtp_validate_certs=False,
        smtp_timeout_seconds=10,
        **extra,
    )


LOGIN = {"smtp_username": USER, "smtp_password": SecretStr(PASSWORD)}


async def send(message: EmailMessage, envelope_from: str, recipient: str, config: NotificationSettings) -> None:
    """As the sender does: hand the message over, then close the session."""
    mail = await smtp.hand_over(message, envelope_from, recipient, config)
    await mail.close()


async def test_starttls_with_login_delivers(starttls_server: tuple[Controller, Collect]) -> None:
    controller, handler = starttls_server
    await send(email(), "events@plenary.example", "siobhan@st-helens-primary.example",
               settings(controller, "starttls", **LOGIN))
    [(sender, recipients, raw)] = handler.received
    assert (sender, recipients) == ("events@plenary.example", ["siobhan@st-helens-primary.example"])
    assert b"Subject: Your place at Education Leadership" in raw


async def test_implicit_tls_with_login_delivers(implicit_tls_server: tuple[Controller, Collect]) -> None:
    controller, handler = implicit_tls_server
    await send(email(), "events@plenary.example", "siobhan@st-helens-primary.example",
               settings(controller, "tls", **LOGIN))
    assert len(handler.received) == 1


async def test_a_server_that_insists_on_tls_refuses_a_plain_session(
    starttls_server: tuple[Controller, Collect],
) -> None:
    controller, handler = starttls_server
    with pytest.raises(aiosmtplib.SMTPException):
        await send(email(), "events@plenary.example", "siobhan@st-helens-primary.example",
                   settings(controller, "none"))
    assert handler.received == []
