"""Settings of the notifications service: the shared ones plus the SMTP server, send rate and schedules."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr

from plenary_kit.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    # "starttls" upgrades a plain connection (port 587), "tls" speaks TLS from the first byte
    # (port 465), "none" is for a local sink such as the embedded one or Mailpit.
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Off only for a test server with a self-signed certificate.
    smtp_validate_certs: bool = True
    mail_from: str = "Plenary <events@plenary.example>"
    # Bounds one whole SMTP exchange; kept well inside the claim lease (domain.LEASE).
    smtp_timeout_seconds: float = 30.0
    # Messages handed to the SMTP server per second by all of this service's senders together;
    # 0 lifts the limit. Providers throttle or block a sender that bursts far above its quota.
    notifications_send_rate: float = 50.0
    # Messages one sender has in hand at once (each its own SMTP session). A remote provider takes
    # a few hundred milliseconds per message, so this bounds the rate one process can reach:
    # about this many divided by the seconds one message takes.
    notifications_send_concurrency: int = Field(default=16, ge=1)
    # How long before an event starts its confirmed delegates get their reminder.
    notifications_reminder_lead_hours: float = 24.0
    # How long after an event ends its delegates get the thank-you.
    notifications_thank_you_delay_hours: float = 2.0

    @property
    def reminder_lead(self) -> timedelta:
        return timedelta(hours=self.notifications_reminder_lead_hours)

    @property
    def thank_you_delay(self) -> timedelta:
        return timedelta(hours=self.notifications_thank_you_delay_hours)

    @classmethod
    def from_shared(cls, settings: ServiceSettings) -> NotificationSettings:
        """These settings for a process started with the shared ones; SMTP_* come from the environment."""
        if isinstance(settings, cls):
            return settings
        return cls(**settings.model_dump(exclude_unset=True))
