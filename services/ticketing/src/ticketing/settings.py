"""Ticketing's settings: the shared ones plus the master key that seals signing keys at rest."""

from __future__ import annotations

from plenary_kit.settings import ServiceSettings
from ticketing import vault


class TicketingSettings(ServiceSettings):
    # URL-safe base64 of 32 bytes; every ticketing instance of a deployment needs the same one.
    plenary_ticket_master_key: str | None = None

    def master_key(self) -> bytes:
        return vault.master_key(self.plenary_ticket_master_key, self.plenary_var)

    @classmethod
    def of(cls, settings: ServiceSettings | None) -> TicketingSettings:
        """Shared settings given by a caller keep their values; the master key still comes from the environment."""
        if settings is None or isinstance(settings, TicketingSettings):
            return settings or cls()
        return cls(**settings.model_dump())
