"""Ticketing rules and types: signing keys, ticket states, what a delegate may download. No I/O."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plenary_kit import events, ticketcode
from plenary_kit.errors import ApiError

ALGORITHM: Final = "Ed25519"

# QR box size in pixels per module: below 2 phones misread a screen, above 20 the image is pointlessly large.
MIN_QR_BOX: Final = 2
MAX_QR_BOX: Final = 20
DEFAULT_QR_BOX: Final = 8
# A device asks for the revocations since its last version; this many come per page.
MAX_REVOCATIONS_PAGE: Final = 5000


class TicketingRefused(ApiError):
    """An organiser request that cannot be carried out, with the contract's stable code."""


def no_valid_ticket() -> TicketingRefused:
    return TicketingRefused(409, "no_valid_ticket", "This registration has no valid ticket to reissue.")


def no_signing_key() -> TicketingRefused:
    return TicketingRefused(
        404, "no_signing_key", "This event has no signing key yet; one is made with its first ticket."
    )


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


def needs_reissue(ticket: dict[str, Any], new_ticket_type: str, new_sessions: Iterable[str]) -> bool:
    """The code carries the ticket type and workshops the door checks, so a change to either needs a new code.

    Tickets issued before codes carried workshops know none; they are reissued on their first change.
    """
    return ticket["ticket_type"] != new_ticket_type or sorted(ticket.get("sessions", [])) != sorted(
        set(new_sessions)
    )


@dataclass(frozen=True)
class TicketHolder:
    """What a ticket is issued for: a registration's event, ticket type and workshops, and whose it is."""

    registration_id: str
    event_id: str
    ticket_type: str
    sessions: tuple[str, ...] = ()
    # Printed on the PDF ticket, never put in the code; forgotten when the delegate is erased.
    name: str | None = None
    manage_token_hash: str | None = None


def sessions_to_number(numbered: Sequence[str], wanted: Iterable[str]) -> list[str]:
    """Session codes not yet numbered for the event, in the order given (the event's own order first)."""
    fresh: list[str] = []
    for code in wanted:
        if code not in numbered and code not in fresh:
            fresh.append(code)
    return fresh


def entitlements(numbered: Sequence[str], sessions: Iterable[str]) -> list[int]:
    """The session numbers a code carries for these workshops.

    A session keeps its number for good once given (numbers are only appended), so codes
    signed earlier still name the same workshops when sessions are added to the event.
    """
    return sorted({numbered.index(code) for code in sessions})


@dataclass(frozen=True)
class RevocationPage:
    """Revocations of one event after a device's version, oldest first."""

    event_id: str
    since: int
    rows: list[dict[str, Any]]
    # The version the device has once it holds these rows: the newest row's, or the list's own when complete.
    version: int
    complete: bool = True


def revocation_page(event_id: str, since: int, current: int, rows: list[dict[str, Any]], limit: int) -> RevocationPage:
    """A page of the delta: complete when it reaches the event's current version."""
    if len(rows) >= limit and rows and rows[-1]["revocation_version"] < current:
        return RevocationPage(event_id, since, rows, rows[-1]["revocation_version"], complete=False)
    return RevocationPage(event_id, since, rows, max(current, since))


@dataclass(frozen=True)
class SigningKey:
    """One event's Ed25519 key pair; every new ticket of the event is signed with its active key.

    The private key is held here as its raw 32 bytes; the store keeps it sealed under the
    master key (see vault.py). A rotated key stays published, inactive, so the tickets it
    signed still verify.
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

    def sign_ticket(self, ticket_id: str, ticket_type: str, entitlements: Iterable[int] = ()) -> str:
        """The code for the QR: event, ticket, ticket type and workshop entitlements signed with this key."""
        private = Ed25519PrivateKey.from_private_bytes(self.private_key)
        return ticketcode.encode(self.event_id, ticket_id, ticket_type, private, entitlements)


def public_key_text(public_key: bytes) -> str:
    """How a public key travels in events and replies: URL-safe base64 of the raw 32 bytes."""
    return base64.urlsafe_b64encode(public_key).decode("ascii")


def now() -> datetime:
    """The current time at the millisecond precision MongoDB keeps, so events and replies agree."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def printable_event(summary: events.EventSummary) -> dict[str, Any]:
    """The event fields a printed ticket shows, from a registration event's summary of it."""
    return {
        "id": summary.id,
        "title": summary.title,
        "venue": summary.venue,
        "starts_at": summary.starts_at,
        "ends_at": summary.ends_at,
        "timezone": summary.timezone,
        "sessions": [{"code": s.code, "title": s.title} for s in summary.sessions],
    }
