"""Ticketing rules and types: signing keys, ticket states, what a delegate may download. No I/O."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plenary_kit import ticketcode

ALGORITHM: Final = "Ed25519"

# QR box size in pixels per module: below 2 phones misread a screen, above 20 the image is pointlessly large.
MIN_QR_BOX: Final = 2
MAX_QR_BOX: Final = 20
DEFAULT_QR_BOX: Final = 8


class TicketStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"


class RevocationReason(StrEnum):
    CANCELLED = "cancelled"
    ERASED = "erased"
    # The old ticket of a registration whose ticket type changed; a new one replaces it.
    REISSUED = "reissued"


def revocation_reason(cancellation_reason: str) -> RevocationReason:
    """Why a cancelled registration's ticket stops admitting: an erasure says so, anything else is a cancellation."""
    if cancellation_reason == "erased":
        return RevocationReason.ERASED
    return RevocationReason.CANCELLED


def needs_reissue(ticket_type: str, new_ticket_type: str) -> bool:
    """The code carries the ticket type the door shows, so a changed type needs a newly signed ticket."""
    return ticket_type != new_ticket_type


@dataclass(frozen=True)
class SigningKey:
    """One event's Ed25519 key pair; every ticket of the event is signed with its active key.

    The private key is held as its raw 32 bytes, and that is how the store keeps it for now:
    private keys are stored unencrypted in MongoDB until encryption at rest is added.
    """

    key_id: str
    event_id: str
    public_key: bytes
    private_key: bytes
    created_at: datetime
    active: bool = True

    @classmethod
    def generate(cls, event_id: str, now: datetime) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        public = ticketcode.public_bytes(private)
        return cls(
            key_id=ticketcode.key_id_of(public),
            event_id=event_id,
            public_key=public,
            private_key=private.private_bytes_raw(),
            created_at=now,
        )

    @property
    def public_key_text(self) -> str:
        return public_key_text(self.public_key)

    def sign_ticket(self, ticket_id: str, ticket_type: str) -> str:
        """The code for the QR: event, ticket and ticket type signed with this key."""
        private = Ed25519PrivateKey.from_private_bytes(self.private_key)
        return ticketcode.encode(self.event_id, ticket_id, ticket_type, private)


def public_key_text(public_key: bytes) -> str:
    """How a public key travels in events and replies: URL-safe base64 of the raw 32 bytes."""
    return base64.urlsafe_b64encode(public_key).decode("ascii")


def now() -> datetime:
    """The current time at the millisecond precision MongoDB keeps, so events and replies agree."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
