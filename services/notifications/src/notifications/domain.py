"""Notification rules and types: which message a registration needs, and when to try again. No I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pydantic import AwareDatetime, BaseModel, ConfigDict

from plenary_kit import events

RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0
# Transient failures are retried without an attempt limit for this long, then the message fails.
RETRY_WINDOW = timedelta(hours=24)
# How long a sender owns a claimed message; past it, another sender may claim it again.
LEASE = timedelta(seconds=90)


class Kind(StrEnum):
    CONFIRMATION = "confirmation"
    WAITLISTED = "waitlisted"
    PROMOTED = "promoted"
    OFFERED = "offered"
    CANCELLED = "cancelled"
    OFFER_EXPIRED = "offer_expired"
    REMINDER = "reminder"
    THANK_YOU = "thank_you"


# Sent at a set time rather than when an event arrives. The time waits in the registration's
# projection under DUE_FIELDS[kind] until the scheduler turns it into a message.
SCHEDULED_KINDS = (Kind.REMINDER, Kind.THANK_YOU)
DUE_FIELDS = {Kind.REMINDER: "reminder_due_at", Kind.THANK_YOU: "thank_you_due_at"}
# A thank-you held up longer than this (the service was down for days) is no longer worth sending.
THANK_YOU_STALE = timedelta(days=7)


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"


class RegistrationStatus(StrEnum):
    WAITLISTED = "waitlisted"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class TicketFacts(BaseModel):
    model_config = ConfigDict(frozen=True)
    ticket_id: str
    code: str
    ticket_type: str | None = None


class MessageContent(BaseModel):
    """Everything a message needs to be composed, copied from the events that caused it."""

    model_config = ConfigDict(frozen=True)
    registration_id: str
    delegate: events.Delegate
    event: events.EventSummary
    ticket_type: str | None = None
    sessions: list[str] = []
    ticket: TicketFacts | None = None
    waitlist_position: int | None = None
    previous_status: str | None = None
    # The delegate's manage link, with their token in it; None when it cannot be built.
    manage_url: str | None = None
    offer_expires_at: AwareDatetime | None = None


def message_key(registration_id: str, kind: Kind, version: str = "1") -> str:
    """The message's idempotency key: one message per registration, kind and version, ever."""
    return f"{registration_id}:{kind}:{version}"


def resend_version(ticket_id: str, request_id: str) -> str:
    """Each resend request sends the ticket once more, however often the request is delivered."""
    return f"{ticket_id}:resend:{request_id}"


def offer_version(expires_at: datetime) -> str:
    """One email per offer: a copy of the same offer has the same expiry, a later offer another."""
    return str(int(expires_at.timestamp()))


def manage_url(public_url: str | None, registration_id: str, token: str | None) -> str | None:
    """The delegate's manage page, where they view, change, cancel or accept an offer."""
    if not public_url or not token:
        return None
    return f"{public_url.rstrip('/')}/manage/{quote(registration_id, safe='')}?token={quote(token, safe='')}"


def is_erased(projection: dict[str, Any] | None) -> bool:
    """An erased delegate is never written to again: no address to write to, no details to keep."""
    return projection is not None and projection.get("erased_at") is not None


def registration_status(projection: dict[str, Any]) -> RegistrationStatus | None:
    """The registration's status from the facts seen so far, whatever order they arrived in.

    Each fact is kept as its own field, so a late or repeated event can never move a
    registration backwards: cancellation outranks confirmation, which outranks waiting.
    """
    if projection.get("cancelled_at"):
        return RegistrationStatus.CANCELLED
    if projection.get("confirmed_at"):
        return RegistrationStatus.CONFIRMED
    if projection.get("waitlisted_at"):
        return RegistrationStatus.WAITLISTED
    return None


def content(projection: dict[str, Any], public_url: str | None, **details: Any) -> MessageContent:
    """A message about the registration as last seen, with the delegate's manage link where known."""
    registration_id = projection["_id"]
    return MessageContent(
        registration_id=registration_id,
        manage_url=manage_url(public_url, registration_id, projection.get("manage_token")),
        **{**projection["snapshot"], **details},
    )


def confirmation_content(projection: dict[str, Any], public_url: str | None = None) -> MessageContent | None:
    """The ticket confirmation, once the registration is confirmed and its ticket is known."""
    ticket = projection.get("ticket")
    snapshot = projection.get("snapshot")
    if registration_status(projection) != RegistrationStatus.CONFIRMED or not ticket or not snapshot:
        return None
    if is_erased(projection):
        return None
    facts = TicketFacts(**ticket)
    # The ticket names its own type: after a change of type it may arrive before the update does.
    ticket_type = facts.ticket_type or snapshot.get("ticket_type")
    return content(projection, public_url, ticket=facts, ticket_type=ticket_type)


@dataclass(frozen=True)
class Scheduled:
    """A message due at a set time: its kind, its version (the time it is about) and when to send it."""

    kind: Kind
    version: str
    due_at: datetime


def schedule(projection: dict[str, Any], reminder_lead: timedelta, thank_you_delay: timedelta) -> list[Scheduled]:
    """The reminder and thank-you a registration should have, as things stand; none unless confirmed.

    Each is versioned by the event time it is about, so a rescheduled event gets a new reminder
    and the old one, if still unsent, is withdrawn.
    """
    snapshot = projection.get("snapshot")
    if registration_status(projection) != RegistrationStatus.CONFIRMED or not snapshot or is_erased(projection):
        return []
    event = events.EventSummary.model_validate(snapshot["event"])
    return [
        Scheduled(Kind.REMINDER, str(int(event.starts_at.timestamp())), event.starts_at - reminder_lead),
        Scheduled(Kind.THANK_YOU, str(int(event.ends_at.timestamp())), event.ends_at + thank_you_delay),
    ]


def due_times(
    event: events.EventSummary, reminder_lead: timedelta, thank_you_delay: timedelta, now: datetime
) -> dict[str, datetime]:
    """The projection fields to set for a confirmed delegate: each time still to come.

    A time already past is left out: a delegate confirmed the day before has just been told.
    """
    times = {
        DUE_FIELDS[Kind.REMINDER]: event.starts_at - reminder_lead,
        DUE_FIELDS[Kind.THANK_YOU]: event.ends_at + thank_you_delay,
    }
    return {field: at for field, at in times.items() if at > now}


def still_timely(scheduled: Scheduled, projection: dict[str, Any], now: datetime) -> bool:
    """Whether a message that fell due is still worth sending now, however late it is being looked at."""
    event = events.EventSummary.model_validate(projection["snapshot"]["event"])
    if scheduled.kind == Kind.REMINDER:
        return now < event.starts_at
    return now < scheduled.due_at + THANK_YOU_STALE


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: half the capped delay fixed, half random, so senders spread out."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(max(attempts - 1, 0), 30))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class DeliveryFailure:
    error: str
    permanent: bool
    # The SMTP reply code, when the server gave one, and the exception's class: safe to log,
    # unlike the reply text, which may quote the recipient's address.
    code: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Next:
    status: Status
    next_attempt_at: datetime | None


def after_failure(
    failure: DeliveryFailure, attempts: int, created_at: datetime, now: datetime, rng: random.Random
) -> Next:
    if failure.permanent or now - created_at >= RETRY_WINDOW:
        return Next(Status.FAILED, None)
    return Next(Status.RETRYING, now + timedelta(seconds=retry_delay(attempts, rng)))
