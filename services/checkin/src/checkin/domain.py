"""Check-in rules and types: what a scan means for a ticket, who is inside, what is counted. No I/O."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from plenary_kit import events, ticketcode
from plenary_kit.errors import ApiError
from plenary_kit.ticketcode import MalformedCode, TicketCode

# What door staff see for a delegate an organiser erased; their admission still counts.
ERASED_NAME: Final = "Erased delegate"

Gate = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
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
    scanned_at: AwareDatetime | None = None
    offline: bool = False


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


@dataclass(frozen=True)
class Admission:
    """Where a ticket holder stands: first admitted when and where, and inside now or not."""

    first_at: datetime
    first_gate: str
    inside: bool


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


def counter_changes(movement: Movement, gate: str, ticket_type: str) -> dict[CounterKey, int]:
    """Increments to the event's attendance counters.

    `admitted`, `by_gate` and `by_ticket_type` count people at their first admission, so they add up;
    re-entries and exits only move `inside`.
    """
    if movement is Movement.FIRST_ENTRY:
        return {("admitted", ""): 1, ("inside", ""): 1, ("gate", gate): 1, ("ticket_type", ticket_type): 1}
    if movement is Movement.REENTRY:
        return {("inside", ""): 1}
    if movement is Movement.EXIT:
        return {("inside", ""): -1}
    return {}


def attendance(counters: Iterable[tuple[str, str, int]]) -> dict[str, Any]:
    """The organiser's attendance figures from (kind, key, n) counter rows."""
    totals = {"registered": 0, "admitted": 0, "inside": 0}
    by_gate: dict[str, int] = {}
    by_ticket_type: dict[str, int] = {}
    for kind, key, n in counters:
        if kind in totals:
            totals[kind] += n
        elif kind == "gate":
            by_gate[key] = by_gate.get(key, 0) + n
        elif kind == "ticket_type":
            by_ticket_type[key] = by_ticket_type.get(key, 0) + n
    return {
        **{kind: max(n, 0) for kind, n in totals.items()},
        "by_gate": dict(sorted(by_gate.items())),
        "by_ticket_type": dict(sorted(by_ticket_type.items())),
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
