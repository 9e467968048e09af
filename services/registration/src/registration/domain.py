"""Registration rules and types: who gets a place, who waits, what a delegate may see. No I/O."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from plenary_kit import events

PRIVACY_NOTICE_VERSION = "2026-09"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]


class Status(StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class TicketTypeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Text
    capacity: int | None = Field(default=None, ge=0)


class SessionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    title: Text
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: int = Field(ge=0)


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    title: Text
    venue: Text
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    timezone: Text
    capacity: int = Field(ge=0, le=1_000_000)
    ticket_types: list[TicketTypeSpec] = Field(
        default_factory=lambda: [TicketTypeSpec(code="delegate", name="Delegate")], min_length=1, max_length=20
    )
    sessions: list[SessionSpec] = Field(default_factory=list, max_length=100)
    registration_opens_at: AwareDatetime | None = None
    registration_closes_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _coherent(self) -> EventCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        for label, items in (("ticket type", self.ticket_types), ("session", self.sessions)):
            codes = [item.code for item in items]
            if len(codes) != len(set(codes)):
                raise ValueError(f"{label} codes must be unique")
        if (
            self.registration_opens_at
            and self.registration_closes_at
            and self.registration_closes_at <= self.registration_opens_at
        ):
            raise ValueError("registration_closes_at must be after registration_opens_at")
        return self


class RegistrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    email: EmailStr
    organisation: Text
    role: Text
    ticket_type: Code | None = None
    sessions: list[Code] = Field(default_factory=list, max_length=20)
    answers: dict[str, Any] = Field(default_factory=dict, max_length=50)
    consent: bool

    @model_validator(mode="after")
    def _consented(self) -> RegistrationCreate:
        if self.consent is not True:
            raise ValueError("consent to the privacy notice is required")
        if len(set(self.sessions)) != len(self.sessions):
            raise ValueError("each session may be chosen once")
        return self


class RegistrationAccepted(BaseModel):
    id: str
    status: Status
    manage_token: str


class RegistrationRejected(Exception):
    """A registration that cannot be taken, with the contract's stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def email_key(email: str) -> str:
    """One key per mailbox, so the same delegate cannot register twice by changing case."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def check_window(event: dict[str, Any], now: datetime) -> None:
    if event.get("closed"):
        raise RegistrationRejected(409, "registration_closed", "Registration for this event is closed.")
    opens, closes = event.get("registration_opens_at"), event.get("registration_closes_at")
    if opens and now < opens:
        raise RegistrationRejected(409, "registration_not_open", "Registration has not opened yet.")
    if closes and now >= closes:
        raise RegistrationRejected(409, "registration_closed", "Registration for this event is closed.")


def choose_ticket_type(event: dict[str, Any], requested: str | None) -> str:
    codes = [t["code"] for t in event["ticket_types"]]
    if requested is None:
        return codes[0]
    if requested not in codes:
        raise RegistrationRejected(422, "unknown_ticket_type", f"No ticket type {requested!r} at this event.")
    return requested


def check_sessions(event: dict[str, Any], requested: list[str]) -> None:
    known = {s["code"] for s in event.get("sessions", [])}
    unknown = sorted(set(requested) - known)
    if unknown:
        raise RegistrationRejected(422, "unknown_session", f"No session {unknown[0]!r} at this event.")


def summary(event: dict[str, Any]) -> events.EventSummary:
    return events.EventSummary(
        id=event["_id"],
        slug=event["slug"],
        title=event["title"],
        venue=event["venue"],
        starts_at=event["starts_at"],
        ends_at=event["ends_at"],
        timezone=event["timezone"],
    )


def delegate(registration: dict[str, Any]) -> events.Delegate:
    return events.Delegate(
        name=registration["name"],
        email=registration["email"],
        organisation=registration["organisation"],
        role=registration["role"],
    )
