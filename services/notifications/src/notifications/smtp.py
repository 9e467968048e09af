"""One message to the mail server over SMTP, with the security and login the settings ask for."""

from __future__ import annotations

import asyncio
import socket
from email.message import EmailMessage

import aiosmtplib

from notifications.settings import NotificationSettings


class MailSession:
    """A mail server session whose message has been accepted; `close` says goodbye (QUIT) and hangs up."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self._client = client

    async def close(self) -> None:
        try:
            await self._client.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass  # the message is the server's already; a goodbye unanswered changes nothing
        finally:
            self._client.close()


_local_hostname: str | None = None


async def local_hostname() -> str:
    """This host's name for EHLO, looked up once: aiosmtplib looks it up in a thread on every connection."""
    global _local_hostname
    if _local_hostname is None:
        _local_hostname = await asyncio.to_thread(socket.getfqdn)
    return _local_hostname


async def hand_over(
    email: EmailMessage, envelope_from: str, recipient: str, settings: NotificationSettings
) -> MailSession:
    """Hand the message over, returning as soon as the server has accepted it.

    The session is still open then: a crash before the caller records the acceptance sends the
    message again, so the caller records first and closes after (QUIT is one more round trip).
    Raises aiosmtplib's errors (SMTP replies, OSErrors) for the caller to classify.
    """
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls",
        validate_certs=settings.smtp_validate_certs,
        username=settings.smtp_username or None,
        password=password if settings.smtp_username else None,
        timeout=settings.smtp_timeout_seconds,
        local_hostname=await local_hostname(),
    )

    async def exchange() -> None:
        await client.connect()
        await client.send_message(email, sender=envelope_from, recipients=[recipient])

    try:
        # aiosmtplib's timeout is per operation; this bounds the whole exchange.
        await asyncio.wait_for(exchange(), settings.smtp_timeout_seconds)
    except BaseException:
        client.close()
        raise
    return MailSession(client)
