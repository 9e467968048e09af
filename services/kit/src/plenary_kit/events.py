"""Typed data for every event type on the Plenary topics, with its schema version."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class SessionSummary(_Data):
    """A workshop or session of the event, with its own time and room."""

    code: str
    title: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class EventSummary(_Data):
    """What downstream services need to know about the conference itself."""

    id: str
    slug: str
    title: str
    venue: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    timezone: str
    organiser_contact: str | None = None
    sessions: list[SessionSummary] = Field(default_factory=list)


class Delegate(_Data):
    name: str
    email: str
    organisation: str
    role: str
    # For attendance by phase and local authority; None where the delegate did not say.
    phase: str | None = None
    local_authority: str | None = None


class _RegistrationSnapshot(_Data):
    registration_id: str
    event: EventSummary
    delegate: Delegate
    ticket_type: str
    sessions: list[str] = Field(default_factory=list)
    # sha256 hex of the delegate's manage token (never the token), so ticketing can check it.
    manage_token_hash: str | None = None
    # The manage token sealed for the notifications service (plenary_kit.sealing), for the emailed link.
    manage_token_sealed: str | None = None


class RegistrationConfirmed(_RegistrationSnapshot):
    pass


class RegistrationWaitlisted(_RegistrationSnapshot):
    position: int


class RegistrationPromoted(_RegistrationSnapshot):
    pass


class RegistrationUpdated(_RegistrationSnapshot):
    """The delegate or an organiser changed details, ticket type or workshop choices."""

    status: Literal["confirmed", "waitlisted"]


class RegistrationOffered(_RegistrationSnapshot):
    """A place freed up for a waiting delegate, held until they accept or the offer expires."""

    offer_expires_at: AwareDatetime


class RegistrationCancelled(_Data):
    registration_id: str
    event: EventSummary
    delegate: Delegate
    previous_status: Literal["confirmed", "waitlisted"]
    reason: Literal["cancelled", "offer_expired", "erased"] = "cancelled"


class RegistrationResendRequested(_Data):
    """The delegate asked for their ticket email again."""

    registration_id: str
    event_id: str


class RegistrationErased(_Data):
    """An organiser erased the delegate: every service deletes or anonymises their personal data."""

    registration_id: str
    event_id: str


class TicketIssued(_Data):
    ticket_id: str
    registration_id: str
    event_id: str
    ticket_type: str
    code: str
    key_id: str
    public_key: str = Field(description="Ed25519 public key, URL-safe base64")
    issued_at: AwareDatetime


class TicketRevoked(_Data):
    ticket_id: str
    registration_id: str
    event_id: str
    reason: str


class NotificationSent(_Data):
    message_id: str
    registration_id: str
    kind: str
    sent_at: AwareDatetime


class NotificationFailed(_Data):
    message_id: str
    registration_id: str
    kind: str
    error: str


class _Attendance(_Data):
    scan_id: str
    event_id: str
    ticket_id: str | None
    gate: str
    direction: Literal["in", "out"]
    scanned_at: datetime
    device_id: str | None


class AttendanceAdmitted(_Attendance):
    pass


class AttendanceExited(_Attendance):
    pass


class AttendanceRejected(_Attendance):
    verdict: str


EventData = (
    RegistrationConfirmed
    | RegistrationWaitlisted
    | RegistrationPromoted
    | RegistrationCancelled
    | RegistrationUpdated
    | RegistrationOffered
    | RegistrationResendRequested
    | RegistrationErased
    | TicketIssued
    | TicketRevoked
    | NotificationSent
    | NotificationFailed
    | AttendanceAdmitted
    | AttendanceExited
    | AttendanceRejected
)

MODELS: Final[dict[str, type[EventData]]] = {
    "registration.confirmed": RegistrationConfirmed,
    "registration.waitlisted": RegistrationWaitlisted,
    "registration.promoted": RegistrationPromoted,
    "registration.cancelled": RegistrationCancelled,
    "registration.updated": RegistrationUpdated,
    "registration.offered": RegistrationOffered,
    "registration.resend_requested": RegistrationResendRequested,
    "registration.erased": RegistrationErased,
    "ticket.issued": TicketIssued,
    "ticket.revoked": TicketRevoked,
    "notification.sent": NotificationSent,
    "notification.failed": NotificationFailed,
    "attendance.admitted": AttendanceAdmitted,
    "attendance.exited": AttendanceExited,
    "attendance.rejected": AttendanceRejected,
}

VERSIONS: Final[dict[str, str]] = {event_type: "1" for event_type in MODELS}

_TYPES: Final = {model: event_type for event_type, model in MODELS.items()}


def type_of(data: EventData) -> str:
    return _TYPES[type(data)]
