"""One message to the mail server over SMTP, with the security and login the settings ask for."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib

from notifications.settings import NotificationSettings


async def deliver(email: EmailMessage, envelope_from: str, recipient: str, settings: NotificationSettings) -> None:
    """Hand the message over; raises aiosmtplib's errors (SMTP replies, OSErrors) for the caller to classify."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    await asyncio.wait_for(
        aiosmtplib.send(
            email,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            sender=envelope_from,
            recipients=[recipient],
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            validate_certs=settings.smtp_validate_certs,
            username=settings.smtp_username or None,
            password=password if settings.smtp_username else None,
            timeout=settings.smtp_timeout_seconds,
        ),
        # aiosmtplib's timeout is per operation; this bounds the whole exchange.
        settings.smtp_timeout_seconds,
    )
