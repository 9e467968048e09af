"""Settings of the notifications service: the shared ones plus the SMTP server and sender address."""

from __future__ import annotations

from plenary_kit.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    mail_from: str = "Plenary <events@plenary.example>"
    # Bounds one whole SMTP exchange; kept well inside the claim lease (domain.LEASE).
    smtp_timeout_seconds: float = 30.0

    @classmethod
    def from_shared(cls, settings: ServiceSettings) -> NotificationSettings:
        """These settings for a process started with the shared ones; SMTP_* come from the environment."""
        if isinstance(settings, cls):
            return settings
        return cls(**settings.model_dump(exclude_unset=True))
