"""Check-in rules and types: what a scan means for a ticket, who is inside, what is counted. No I/O."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from plenary_kit import events, ticketcode
from plenary_kit.dates import Instant
from plenary_kit.errors import ApiError
from plenary_kit.ticketcode import MalformedCode, TicketCode

# What door staff see for a delegate an organiser erased; their admission still counts.
ERASED_NAME: Final = "Erased delegate"

Gate = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
SessionCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
DeviceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Verdict(StrEnum):
    ADMITTED = "admitted"
    ALREADY_ADMITTED = "already_admitted"
    EXITED = "exited"
    REVOKED = "revoked"
    UNKNOWN_TICKET = "unknown_ticket"
    INVALID_SIGNATURE = "invalid_signature"
    WRONG_EVENT = "wrong_event"
    MALFORMED = "malformed"
    # Only for workshop-room scans: a genuine ticket without a place in that workshop.
    NOT_ENTITLED = "not_entitled"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Movement(StrEnum):
    """What a scan changes about where the ticket holder is."""

    FIRST_ENTRY = "first_entry"
    REENTRY = "reentry"
    EXIT = "exit"
    NONE = "none"


class ScanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # An empty or garbled code is a `malformed` verdict, not a request error: the scanner must never
    # get stuck on whatever its camera read.
    code: str = Field(max_length=1000)
    gate: Gate
    direction: Direction
    nonce: str = Field(min_length=8, max_length=100)
    scanned_at: Instant | None = None
    offline: bool = False
    # What a device showed for a scan it decided offline; "admitted" (assumed when absent) means the
    # holder went in, so finding them already inside is a double entry to raise with the organiser.
    offline_verdict: Verdict | None = None
    # A workshop-room scan: entry to this session, checked against the delegate's workshops.
    session: SessionCode | None = None

    @property
    def admitted_offline(self) -> bool:
        return self.offline and self.offline_verdict in (None, Verdict.ADMITTED)


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: DeviceName
    gates: list[Gate] = Field(min_length=1, max_length=20)

    @field_validator("gates")
    @classmethod
    def _distinct(cls, gates: list[str]) -> list[str]:
        if len(set(gates)) != len(gates):
            raise ValueError("each gate may be listed once")
        return gates


class DeviceEnrol(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enrolment_code: str = Field(min_length=1, max_length=200)


class CheckinRefused(ApiError):
    """A request the check-in service will not carry out, with the contract's stable code."""


@dataclass(frozen=True)
class TicketState:
    ticket_type: str
    revoked: bool
    # A cancelled registration's ticket no longer admits, even before its revocation arrives.
    cancelled: bool = False
    sessions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Admission:
    """Where a ticket holder stands: first admitted when and where, and inside now or not."""

    first_at: datetime
    first_gate: str
    inside: bool
    # The device that last let them in, so an offline upload can tell a double entry from a repeat.
    last_device_id: str | None = None
    last_at: datetime | None = None


@dataclass(frozen=True)
class Attendee:
    name: str
    ticket_type: str


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    movement: Movement = Movement.NONE
    first_admitted: Admission | None = None


def delegate_fields(delegate: events.Delegate, erased: bool) -> dict[str, Any]:
    """The delegate as the projection keeps them; nothing at all once erased, so a late event restores nothing."""
    if erased:
        return {}
    return {
        "name": delegate.name,
        "organisation": delegate.organisation,
        "role": delegate.role,
        # Kept for attendance by phase and local authority.
        "phase": delegate.phase,
        "local_authority": delegate.local_authority,
    }


def to_millis(moment: datetime) -> datetime:
    """UTC at millisecond precision, as MongoDB stores it, so a time reads back exactly as first replied."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def scan_time(request: ScanRequest, received_at: datetime) -> datetime:
    """When the scan happened: the device's clock only for scans it queued offline, else our own."""
    if request.offline and request.scanned_at is not None:
        return to_millis(request.scanned_at)
    return to_millis(received_at)


def parse_code(text: str) -> TicketCode | None:
    try:
        return ticketcode.decode(text)
    except MalformedCode:
        return None


def check_code(code: TicketCode | None, event_id: str, public_key: bytes | None) -> Verdict | None:
    """Why a code cannot be honoured at this event, or None when it is genuine and ours.

    `public_key` is this event's key with the code's key id, if there is one. A code naming one of
    our keys is verified before its event is compared, so an altered event id reads as a forgery
    (`invalid_signature`); a code whose key we do not hold is another event's (`wrong_event`) or,
    claiming to be ours, a forgery.
    """
    if code is None:
        return Verdict.MALFORMED
    if public_key is None:
        return Verdict.WRONG_EVENT if code.event_id != event_id else Verdict.INVALID_SIGNATURE
    if not ticketcode.verify(code, public_key):
        return Verdict.INVALID_SIGNATURE
    if code.event_id != event_id:
        return Verdict.WRONG_EVENT
    return None


def state_at(
    ticket_type: str | None,
    revoked_at: datetime | None,
    cancelled_at: datetime | None,
    sessions: Iterable[str],
    at: datetime | None,
) -> TicketState | None:
    """The ticket as it stood at `at` (now when None): a scan made offline before a revocation still counts."""
    # A revocation can arrive before its issue; until issued, the ticket is not one we can admit.
    if not ticket_type:
        return None

    def happened(moment: datetime | None) -> bool:
        return moment is not None and (at is None or to_millis(moment) <= at)

    return TicketState(
        ticket_type=ticket_type,
        revoked=happened(revoked_at),
        cancelled=happened(cancelled_at),
        sessions=tuple(sessions),
    )


def decide_room(
    ticket: TicketState | None, session: str, room_admission: Admission | None, direction: Direction
) -> Decision:
    """The verdict at a workshop room's door: the workshop must be one of the delegate's."""
    if ticket is None:
        return Decision(Verdict.UNKNOWN_TICKET)
    if direction is Direction.OUT:
        return Decision(Verdict.EXITED)
    if ticket.revoked or ticket.cancelled:
        return Decision(Verdict.REVOKED)
    if session not in ticket.sessions:
        return Decision(Verdict.NOT_ENTITLED)
    if room_admission is not None:
        return Decision(Verdict.ALREADY_ADMITTED, first_admitted=room_admission)
    return Decision(Verdict.ADMITTED, Movement.FIRST_ENTRY)


def is_double_entry(request: ScanRequest, decision: Decision, device_id: str | None) -> bool:
    """An offline admission of someone already let in by another device, found when the device uploads."""
    if not request.admitted_offline or decision.verdict is not Verdict.ALREADY_ADMITTED:
        return False
    earlier = decision.first_admitted
    return earlier is not None and earlier.last_device_id != device_id


def decide(ticket: TicketState | None, admission: Admission | None, direction: Direction) -> Decision:
    """The verdict for a genuine code, given what we know of its ticket and its holder's whereabouts."""
    if ticket is None:
        return Decision(Verdict.UNKNOWN_TICKET)
    barred = ticket.revoked or ticket.cancelled
    if direction is Direction.OUT:
        # Leaving is never refused: someone inside always gets out, so "inside" stays true.
        if admission is not None and admission.inside:
            return Decision(Verdict.EXITED, Movement.EXIT)
        return Decision(Verdict.REVOKED) if barred else Decision(Verdict.EXITED)
    if barred:
        return Decision(Verdict.REVOKED)
    if admission is None:
        return Decision(Verdict.ADMITTED, Movement.FIRST_ENTRY)
    if admission.inside:
        return Decision(Verdict.ALREADY_ADMITTED, first_admitted=admission)
    return Decision(Verdict.ADMITTED, Movement.REENTRY)


CounterKey = tuple[str, str]

# How a delegate who did not give their phase or local authority is counted.
NOT_GIVEN: Final = "Not given"


@dataclass(frozen=True)
class Profile:
    """What attendance is broken down by, besides the gate: the ticket type and the delegate's answers."""

    ticket_type: str
    phase: str | None = None
    local_authority: str | None = None


def minute_of(at: datetime) -> str:
    return to_millis(at).replace(second=0, microsecond=0).isoformat()


def counter_changes(
    movement: Movement, gate: str, profile: Profile, at: datetime | None = None
) -> dict[CounterKey, int]:
    """Increments to the event's attendance counters.

    `admitted` and every breakdown count people at their first admission, so each breakdown adds
    up to `admitted`; re-entries and exits only move `inside`.
    """
    if movement is Movement.FIRST_ENTRY:
        changes: dict[CounterKey, int] = {
            ("admitted", ""): 1,
            ("inside", ""): 1,
            ("gate", gate): 1,
            ("ticket_type", profile.ticket_type): 1,
            ("phase", profile.phase or NOT_GIVEN): 1,
            ("local_authority", profile.local_authority or NOT_GIVEN): 1,
        }
        if at is not None:
            changes[("minute", minute_of(at))] = 1
        return changes
    if movement is Movement.REENTRY:
        return {("inside", ""): 1}
    if movement is Movement.EXIT:
        return {("inside", ""): -1}
    return {}


def room_changes(movement: Movement, session: str) -> dict[CounterKey, int]:
    """A workshop room counts each delegate once, at their first entry; the venue's figures stay as they are."""
    return {("session", session): 1} if movement is Movement.FIRST_ENTRY else {}


TOTALS: Final = ("registered", "admitted", "inside", "alerts")
BREAKDOWNS: Final = {
    "gate": "by_gate",
    "ticket_type": "by_ticket_type",
    "session": "by_session",
    "phase": "by_phase",
    "local_authority": "by_local_authority",
}


def attendance(counters: Iterable[tuple[str, str, int]]) -> dict[str, Any]:
    """The organiser's attendance figures from (kind, key, n) counter rows."""
    totals = dict.fromkeys(TOTALS, 0)
    breakdowns: dict[str, dict[str, int]] = {name: {} for name in BREAKDOWNS.values()}
    minutes: dict[str, int] = {}
    for kind, key, n in counters:
        if kind in totals:
            totals[kind] += n
        elif kind in BREAKDOWNS:
            figures = breakdowns[BREAKDOWNS[kind]]
            figures[key] = figures.get(key, 0) + n
        elif kind == "minute":
            minutes[key] = minutes.get(key, 0) + n
    figures = {kind: max(n, 0) for kind, n in totals.items()}
    return {
        "registered": figures["registered"],
        "admitted": figures["admitted"],
        "inside": figures["inside"],
        "no_shows": max(figures["registered"] - figures["admitted"], 0),
        **{name: dict(sorted((k, v) for k, v in values.items() if v > 0)) for name, values in breakdowns.items()},
        "arrivals_per_minute": [{"minute": minute, "admitted": n} for minute, n in sorted(minutes.items()) if n > 0],
        "alerts": figures["alerts"],
    }


def reply(decision: Decision, attendee: Attendee | None, scan_id: str) -> dict[str, Any]:
    """The scan's answer as JSON; stored as is, so a repeated nonce gets exactly this again."""
    body: dict[str, Any] = {"verdict": decision.verdict.value, "scan_id": scan_id}
    if attendee is not None:
        body["attendee"] = {"name": attendee.name, "ticket_type": attendee.ticket_type}
    if decision.first_admitted is not None:
        body["first_admitted"] = {
            "at": to_millis(decision.first_admitted.first_at).isoformat(),
            "gate": decision.first_admitted.first_gate,
        }
    return body


def ticket_status(ticket: TicketState) -> str:
    if ticket.revoked:
        return "revoked"
    return "cancelled" if ticket.cancelled else "valid"


def attendance_event(
    verdict: Verdict, *, scan_id: str, event_id: str, ticket_id: str | None, gate: str, direction: Direction,
    scanned_at: datetime, device_id: str | None,
) -> events.EventData:
    fields: dict[str, Any] = {
        "scan_id": scan_id,
        "event_id": event_id,
        "ticket_id": ticket_id,
        "gate": gate,
        "direction": direction.value,
        "scanned_at": scanned_at,
        "device_id": device_id,
    }
    if verdict is Verdict.ADMITTED:
        return events.AttendanceAdmitted(**fields)
    if verdict is Verdict.EXITED:
        return events.AttendanceExited(**fields)
    return events.AttendanceRejected(**fields, verdict=verdict.value)


def public_key_bytes(encoded: str, key_id: str) -> bytes:
    """The raw Ed25519 key from a ticket event, refused unless it is the key its id names."""
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("public key is not URL-safe base64") from exc
    if len(raw) != 32:
        raise ValueError("public key is not 32 bytes")
    if ticketcode.key_id_of(raw) != key_id:
        raise ValueError("public key does not match its key id")
    return raw
