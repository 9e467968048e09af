"""Registration rules and types: who gets a place, who waits, what a delegate may see. No I/O."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from plenary_kit import events
from plenary_kit.dates import Instant, TimeZoneName
from plenary_kit.errors import ApiError

PRIVACY_NOTICE_VERSION = "2026-09"
# A delegate may ask for their ticket email again at most this often.
RESEND_INTERVAL = timedelta(seconds=60)
ERASED_NAME = "Erased delegate"
MAX_GROUP = 30
TEXT_ANSWER_MAX = 1000

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
LocalAuthority = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Needs = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Option = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


def _blank_to_none(value: Any) -> Any:
    """An empty form field means "not answered", not an invalid answer."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


Blank = BeforeValidator(_blank_to_none)


class Status(StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    EARLY_YEARS = "early_years"
    PRIMARY = "primary"
    SECONDARY = "secondary"
    SPECIAL = "special"
    ALTERNATIVE_PROVISION = "alternative_provision"
    FURTHER_EDUCATION = "further_education"
    HIGHER_EDUCATION = "higher_education"
    OTHER = "other"


PHASE_LABELS: dict[Phase, str] = {
    Phase.EARLY_YEARS: "Early years",
    Phase.PRIMARY: "Primary",
    Phase.SECONDARY: "Secondary",
    Phase.SPECIAL: "Special (SEN)",
    Phase.ALTERNATIVE_PROVISION: "Alternative provision",
    Phase.FURTHER_EDUCATION: "Further education",
    Phase.HIGHER_EDUCATION: "Higher education",
    Phase.OTHER: "Other",
}

_PHASE_ALIASES: dict[str, Phase] = {
    **{phase.value: phase for phase in Phase},
    **{label.casefold(): phase for phase, label in PHASE_LABELS.items()},
    "special": Phase.SPECIAL,
    "sen": Phase.SPECIAL,
    "send": Phase.SPECIAL,
    "eyfs": Phase.EARLY_YEARS,
    "ap": Phase.ALTERNATIVE_PROVISION,
    "fe": Phase.FURTHER_EDUCATION,
    "he": Phase.HIGHER_EDUCATION,
}


def phase_from_text(text: str) -> Phase | None:
    """A phase as people write it in a spreadsheet: the code, the label, or a common abbreviation."""
    cleaned = " ".join(text.split()).casefold()
    if not cleaned:
        return None
    for candidate in (cleaned, cleaned.replace(" ", "_").replace("-", "_")):
        if candidate in _PHASE_ALIASES:
            return _PHASE_ALIASES[candidate]
    raise ValueError(f"unknown phase {text.strip()!r}; use one of {', '.join(p.value for p in Phase)}")


class QuestionKind(StrEnum):
    TEXT = "text"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"


CHOICE_KINDS = frozenset({QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE})


class QuestionSpec(BaseModel):
    """A question the organiser adds to the registration form."""

    model_config = ConfigDict(extra="forbid")
    code: Code
    label: Label
    kind: QuestionKind
    required: bool = False
    options: list[Option] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _options_fit_kind(self) -> QuestionSpec:
        if self.kind in CHOICE_KINDS:
            if not self.options:
                raise ValueError(f"a {self.kind} question needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError("options must be unique")
        elif self.options:
            raise ValueError(f"a {self.kind} question has no options")
        return self


class TicketTypeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Text
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)


class SessionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    title: Text
    starts_at: Instant
    ends_at: Instant
    capacity: int = Field(ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _in_order(self) -> SessionSpec:
        if self.ends_at <= self.starts_at:
            raise ValueError("a session's ends_at must be after its starts_at")
        return self


OfferWindowHours = Annotated[float, Field(gt=0, le=24 * 30)]


def _unique_codes(label: str, codes: list[str]) -> None:
    if len(codes) != len(set(codes)):
        raise ValueError(f"{label} codes must be unique")


def _check_times(starts_at: datetime, ends_at: datetime, opens_at: datetime | None, closes_at: datetime | None) -> None:
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    if opens_at and closes_at and closes_at <= opens_at:
        raise ValueError("registration_closes_at must be after registration_opens_at")


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    title: Text
    venue: Text
    starts_at: Instant
    ends_at: Instant
    timezone: TimeZoneName
    capacity: int = Field(ge=0, le=1_000_000)
    ticket_types: list[TicketTypeSpec] = Field(
        default_factory=lambda: [TicketTypeSpec(code="delegate", name="Delegate")], min_length=1, max_length=20
    )
    sessions: list[SessionSpec] = Field(default_factory=list, max_length=100)
    registration_opens_at: Instant | None = None
    registration_closes_at: Instant | None = None
    organiser_contact: EmailStr | None = None
    offer_window_hours: OfferWindowHours | None = None
    questions: list[QuestionSpec] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _coherent(self) -> EventCreate:
        _check_times(self.starts_at, self.ends_at, self.registration_opens_at, self.registration_closes_at)
        _unique_codes("ticket type", [t.code for t in self.ticket_types])
        _unique_codes("session", [s.code for s in self.sessions])
        _unique_codes("question", [q.code for q in self.questions])
        return self


class TicketTypeChange(BaseModel):
    """A ticket type to change (by code) or add; `capacity: null` makes it unlimited."""

    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Text | None = None
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)


class SessionChange(BaseModel):
    """A session to change (by code) or add (then title, times and capacity are needed)."""

    model_config = ConfigDict(extra="forbid")
    code: Code
    title: Text | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)


def _refuse_nulls(model: BaseModel, names: tuple[str, ...]) -> None:
    nulled = sorted(n for n in names if n in model.model_fields_set and getattr(model, n) is None)
    if nulled:
        raise ValueError(f"{', '.join(nulled)} cannot be removed")


class EventUpdate(BaseModel):
    """An organiser's change to an event; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    title: Text | None = None
    venue: Text | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    timezone: TimeZoneName | None = None
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)
    registration_opens_at: Instant | None = None
    registration_closes_at: Instant | None = None
    organiser_contact: EmailStr | None = None
    offer_window_hours: OfferWindowHours | None = None
    questions: list[QuestionSpec] | None = Field(default=None, max_length=50)
    ticket_types: list[TicketTypeChange] | None = Field(default=None, max_length=20)
    sessions: list[SessionChange] | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _no_missing_essentials(self) -> EventUpdate:
        _refuse_nulls(
            self,
            ("title", "venue", "starts_at", "ends_at", "timezone", "capacity", "questions", "ticket_types", "sessions"),
        )
        for label, codes in (
            ("ticket type", [t.code for t in self.ticket_types or []]),
            ("session", [s.code for s in self.sessions or []]),
            ("question", [q.code for q in self.questions or []]),
        ):
            _unique_codes(label, codes)
        return self


class _DelegateDetails(BaseModel):
    """The built-in questions every registration form asks."""

    model_config = ConfigDict(extra="forbid")
    phase: Annotated[Phase | None, Blank] = None
    local_authority: Annotated[LocalAuthority | None, Blank] = None
    dietary_needs: Annotated[Needs | None, Blank] = None
    access_needs: Annotated[Needs | None, Blank] = None


def _sessions_once(sessions: list[str] | None) -> None:
    if sessions is not None and len(set(sessions)) != len(sessions):
        raise ValueError("each session may be chosen once")


class RegistrationCreate(_DelegateDetails):
    name: Text
    email: EmailStr
    organisation: Text
    role: Text
    ticket_type: Annotated[Code | None, Blank] = None
    sessions: list[Code] = Field(default_factory=list, max_length=20)
    answers: dict[str, Any] = Field(default_factory=dict, max_length=50)
    consent: bool

    @model_validator(mode="after")
    def _consented(self) -> RegistrationCreate:
        if self.consent is not True:
            raise ValueError("consent to the privacy notice is required")
        _sessions_once(self.sessions)
        return self


class RegistrationUpdate(_DelegateDetails):
    """A delegate's or organiser's edit; fields left out stay, optional details may be set to null."""

    name: Text | None = None
    organisation: Text | None = None
    role: Text | None = None
    answers: dict[str, Any] | None = Field(default=None, max_length=50)
    sessions: list[Code] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _keeps_essentials(self) -> RegistrationUpdate:
        _refuse_nulls(self, ("name", "organisation", "role", "answers", "sessions"))
        _sessions_once(self.sessions)
        return self


class Booker(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    email: EmailStr


class GroupDelegate(_DelegateDetails):
    """One colleague in a group booking; the organisation defaults to the group's."""

    name: Text
    email: EmailStr
    role: Text
    organisation: Annotated[Text | None, Blank] = None
    ticket_type: Annotated[Code | None, Blank] = None
    sessions: list[Code] = Field(default_factory=list, max_length=20)
    answers: dict[str, Any] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _sessions(self) -> GroupDelegate:
        _sessions_once(self.sessions)
        return self


class GroupRegistrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation: Text
    consent: bool
    booker: Booker
    delegates: list[GroupDelegate] = Field(min_length=1, max_length=MAX_GROUP)

    @model_validator(mode="after")
    def _consented(self) -> GroupRegistrationCreate:
        if self.consent is not True:
            raise ValueError("consent to the privacy notice is required")
        return self

    def registrations(self) -> list[RegistrationCreate]:
        """Each delegate as a registration of their own."""
        return [
            RegistrationCreate(
                **d.model_dump(exclude={"organisation"}),
                organisation=d.organisation or self.organisation,
                consent=True,
            )
            for d in self.delegates
        ]


class RegistrationAccepted(BaseModel):
    id: str
    status: Status
    manage_token: str


class RegistrationRejected(ApiError):
    """A request that cannot be carried out, with the contract's stable code (and extra reply fields)."""


def invalid(fields: list[dict[str, str]]) -> RegistrationRejected:
    """The contract's 422 for answers and other checks that need the event to judge."""
    names = ", ".join(sorted({f["field"] for f in fields}))
    return RegistrationRejected(422, "validation_error", f"Please check: {names}.", fields=fields)


def not_found() -> RegistrationRejected:
    return RegistrationRejected(404, "registration_not_found", "No such registration.")


def event_not_found() -> RegistrationRejected:
    return RegistrationRejected(404, "event_not_found", "No such event.")


def already_registered(emails: list[str]) -> RegistrationRejected:
    if len(emails) == 1:
        message = f"{emails[0]} is already registered for this event."
    else:
        message = f"Already registered for this event: {', '.join(emails)}."
    return RegistrationRejected(409, "already_registered", message, emails=emails)


def email_key(email: str) -> str:
    """One key per mailbox, so the same delegate cannot register twice by changing case."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def check_window(event: Mapping[str, Any], now: datetime) -> None:
    if event.get("closed"):
        raise RegistrationRejected(409, "registration_closed", "Registration for this event is closed.")
    opens, closes = event.get("registration_opens_at"), event.get("registration_closes_at")
    if opens and now < opens:
        raise RegistrationRejected(409, "registration_not_open", "Registration has not opened yet.")
    if closes and now >= closes:
        raise RegistrationRejected(409, "registration_closed", "Registration for this event is closed.")


def choose_ticket_type(event: Mapping[str, Any], requested: str | None) -> str:
    codes = [t["code"] for t in event["ticket_types"]]
    if requested is None:
        return str(codes[0])
    if requested not in codes:
        raise RegistrationRejected(422, "unknown_ticket_type", f"No ticket type {requested!r} at this event.")
    return requested


def check_sessions(event: Mapping[str, Any], requested: list[str]) -> None:
    known = {s["code"] for s in event.get("sessions", [])}
    unknown = sorted(set(requested) - known)
    if unknown:
        raise RegistrationRejected(422, "unknown_session", f"No session {unknown[0]!r} at this event.")


def _answer(question: Mapping[str, Any], value: Any) -> tuple[Any, str | None]:
    """The cleaned answer (None when unanswered) or why it cannot be taken."""
    kind = question["kind"]
    options = question.get("options") or []
    if value is None:
        return None, None
    if kind == QuestionKind.TEXT:
        if not isinstance(value, str):
            return None, "Must be text."
        text = value.strip()
        if len(text) > TEXT_ANSWER_MAX:
            return None, f"Must be at most {TEXT_ANSWER_MAX} characters."
        return text or None, None
    if kind == QuestionKind.SINGLE_CHOICE:
        if not isinstance(value, str):
            return None, "Must be one of the options."
        if not value.strip():
            return None, None
        return (value, None) if value in options else (None, "Must be one of the options.")
    if kind == QuestionKind.MULTIPLE_CHOICE:
        chosen = [value] if isinstance(value, str) else value
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            return None, "Must be a list of options."
        picked = list(dict.fromkeys(c for c in chosen if c.strip()))
        if any(c not in options for c in picked):
            return None, "Every choice must be one of the options."
        return picked or None, None
    if not isinstance(value, bool):
        return None, "Must be yes (true) or no (false)."
    return value, None


def check_answers(
    questions: list[Mapping[str, Any]], answers: Mapping[str, Any], prefix: str = "answers"
) -> dict[str, Any]:
    """The answers cleaned against the event's questions, or a 422 naming every answer at fault."""
    by_code = {q["code"]: q for q in questions}
    problems = [
        {"field": f"{prefix}.{code}", "message": "There is no such question."}
        for code in answers
        if code not in by_code
    ]
    cleaned: dict[str, Any] = {}
    for code, question in by_code.items():
        value, problem = _answer(question, answers.get(code))
        if problem is None and value is None and question.get("required"):
            problem = "An answer is required."
        if problem:
            problems.append({"field": f"{prefix}.{code}", "message": problem})
        elif value is not None:
            cleaned[code] = value
    if problems:
        raise invalid(problems)
    return cleaned


def merge_answers(
    questions: list[Mapping[str, Any]], stored: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """An edit's answers: unchanged ones stay, null or blank clears, answers to withdrawn questions drop."""
    current = {q["code"] for q in questions}
    merged = {code: value for code, value in stored.items() if code in current}
    merged.update(changes)
    return check_answers(questions, {code: value for code, value in merged.items() if value is not None})


def holds_place(registration: Mapping[str, Any]) -> bool:
    """Confirmed delegates hold a place, and so does a waiting delegate with an open offer."""
    status = registration["status"]
    return status == Status.CONFIRMED or (status == Status.WAITLISTED and bool(registration.get("offer")))


def check_changeable(registration: Mapping[str, Any]) -> None:
    if registration.get("erased_at"):
        raise RegistrationRejected(409, "registration_erased", "This registration has been erased.")
    if registration["status"] == Status.CANCELLED:
        raise RegistrationRejected(409, "registration_cancelled", "This registration has been cancelled.")


def check_offer(registration: Mapping[str, Any], now: datetime) -> datetime:
    """The expiry of the registration's open offer, or why it cannot be accepted."""
    if registration["status"] == Status.CANCELLED and registration.get("cancel_reason") == "offer_expired":
        raise RegistrationRejected(409, "offer_expired", "The offer of a place has expired.")
    check_changeable(registration)
    offer = registration.get("offer")
    if registration["status"] != Status.WAITLISTED or not offer:
        raise RegistrationRejected(409, "no_offer", "There is no offer of a place to accept.")
    expires_at: datetime = offer["expires_at"]
    if expires_at <= now:
        raise RegistrationRejected(409, "offer_expired", "The offer of a place has expired.")
    return expires_at


def offer_expiry(event: Mapping[str, Any], now: datetime) -> datetime | None:
    hours = event.get("offer_window_hours")
    return now + timedelta(hours=hours) if hours else None


def resend_wait(last_requested: datetime | None, now: datetime) -> int:
    """Seconds until the delegate may ask for their email again; 0 when they may now."""
    if last_requested is None:
        return 0
    remaining = (last_requested + RESEND_INTERVAL - now).total_seconds()
    return max(0, int(remaining + 0.999))


@dataclass(frozen=True)
class Allocation:
    """Where one new registration lands: a place (with the workshops it could get) or the waiting list."""

    sessions: list[str]
    # Workshops the delegate queues for, with their place in each queue.
    waiting_sessions: dict[str, int] = field(default_factory=dict)
    # Set when there is no place: the delegate's place on the event's waiting list.
    waitlist_position: int | None = None


@dataclass
class Places:
    """An event's capacity counters as read in one transaction, spent in memory by a batch of arrivals.

    The same rules as taking places one conditional update at a time: an event place and a ticket-type
    place (when the type is capped) are needed for a place at all; then each workshop wanted is held
    when it has room and queued for when it has none. No event place means the event's waiting list.
    """

    places_left: int
    ticket_left: dict[str, int]
    session_left: dict[str, int]
    waitlist_seq: int
    session_wait_seq: dict[str, int]

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Places:
        return cls(
            places_left=int(event["places_left"]),
            ticket_left={code: int(n) for code, n in event.get("ticket_left", {}).items()},
            session_left={code: int(n) for code, n in event.get("session_left", {}).items()},
            waitlist_seq=int(event.get("waitlist_seq", 0)),
            session_wait_seq={code: int(n) for code, n in event.get("session_wait_seq", {}).items()},
        )

    def copy(self) -> Places:
        return Places(
            self.places_left,
            dict(self.ticket_left),
            dict(self.session_left),
            self.waitlist_seq,
            dict(self.session_wait_seq),
        )

    def allocate(self, ticket_type: str, wanted: list[str]) -> Allocation:
        capped = ticket_type in self.ticket_left
        if self.places_left <= 0 or (capped and self.ticket_left[ticket_type] <= 0):
            self.waitlist_seq += 1
            return Allocation(sessions=list(wanted), waitlist_position=self.waitlist_seq)
        self.places_left -= 1
        if capped:
            self.ticket_left[ticket_type] -= 1
        held: list[str] = []
        waiting: dict[str, int] = {}
        for code in wanted:
            if self.session_left.get(code, 0) > 0:
                self.session_left[code] -= 1
                held.append(code)
            else:
                self.session_wait_seq[code] = self.session_wait_seq.get(code, 0) + 1
                waiting[code] = self.session_wait_seq[code]
        return Allocation(sessions=held, waiting_sessions=waiting)

    def spent_since(self, before: Places) -> tuple[dict[str, int], dict[str, int]]:
        """The counter moves from `before` to now as an `$inc`, and the floor each decreased counter needs."""
        moves: dict[str, int] = {}
        floors: dict[str, int] = {}

        def move(name: str, old: int, new: int) -> None:
            if new != old:
                moves[name] = new - old
            if new < old:
                floors[name] = old - new

        move("places_left", before.places_left, self.places_left)
        move("waitlist_seq", before.waitlist_seq, self.waitlist_seq)
        for code, left in self.ticket_left.items():
            move(f"ticket_left.{code}", before.ticket_left[code], left)
        for code, left in self.session_left.items():
            move(f"session_left.{code}", before.session_left[code], left)
        for code, seq in self.session_wait_seq.items():
            move(f"session_wait_seq.{code}", before.session_wait_seq.get(code, 0), seq)
        return moves, floors


@dataclass(frozen=True)
class SessionMoves:
    """How a registration holding a place moves from its workshops to the ones now wanted."""

    release: list[str]
    stop_waiting: list[str]
    add: list[str]
    keep_held: list[str]
    keep_waiting: list[str]


def session_moves(held: list[str], waiting: list[str], wanted: list[str]) -> SessionMoves:
    wanted_set = set(wanted)
    return SessionMoves(
        release=[c for c in held if c not in wanted_set],
        stop_waiting=[c for c in waiting if c not in wanted_set],
        add=[c for c in wanted if c not in held and c not in waiting],
        keep_held=[c for c in held if c in wanted_set],
        keep_waiting=[c for c in waiting if c in wanted_set],
    )


def erased_details(registration_id: str) -> dict[str, Any]:
    """What is left of a delegate after erasure: nothing that names them, the counts' facts kept."""
    return {
        "name": ERASED_NAME,
        "email": "",
        "email_key": f"erased:{registration_id}",
        "organisation": "",
        "role": "",
        "phase": None,
        "local_authority": None,
        "dietary_needs": None,
        "access_needs": None,
        "answers": {},
        # A hash nobody's token can produce: the manage link stops working.
        "manage_token_hash": f"erased:{registration_id}",
        "consent.booker": None,
        "waiting_sessions": [],
    }


@dataclass
class EventPlan:
    """An event update as one conditional write: fields to set, counters to move and the floors they need."""

    set: dict[str, Any] = field(default_factory=dict)
    inc: dict[str, int] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    # counter -> the least value it must have now, so that moving it never goes below zero
    floors: dict[str, int] = field(default_factory=dict)
    places_freed: bool = False
    sessions_freed: list[str] = field(default_factory=list)


def newly_limited_ticket_types(event: Mapping[str, Any], update: EventUpdate) -> list[str]:
    """Existing unlimited ticket types given a capacity: their places taken must be counted first."""
    limited = event.get("ticket_left", {})
    existing = {t["code"] for t in event["ticket_types"]}
    return [
        t.code
        for t in update.ticket_types or []
        if t.code in existing and t.code not in limited and "capacity" in t.model_fields_set and t.capacity is not None
    ]


def _below_taken(field_name: str, taken: int) -> RegistrationRejected:
    return RegistrationRejected(
        409,
        "capacity_below_taken",
        f"{taken} place(s) are already taken; {field_name} cannot be lower.",
        field=field_name,
        taken=taken,
    )


def _move_counter(plan: EventPlan, counter: str, left: int, capacity: int, new_capacity: int, name: str) -> None:
    taken = capacity - left
    if new_capacity < taken:
        raise _below_taken(name, taken)
    delta = new_capacity - capacity
    if delta:
        plan.inc[counter] = delta
        if delta < 0:
            plan.floors[counter] = -delta


def plan_event_update(event: Mapping[str, Any], update: EventUpdate, ticket_taken: Mapping[str, int]) -> EventPlan:
    """Decide how an organiser's change applies; refuses a capacity below the places already taken.

    `ticket_taken` counts the places held for each ticket type in `newly_limited_ticket_types`.
    """
    plan = EventPlan()
    given = update.model_fields_set
    for name in (
        "title",
        "venue",
        "starts_at",
        "ends_at",
        "timezone",
        "registration_opens_at",
        "registration_closes_at",
        "organiser_contact",
        "offer_window_hours",
    ):
        if name in given:
            plan.set[name] = getattr(update, name)
    merged = {**event, **plan.set}
    try:
        _check_times(
            merged["starts_at"],
            merged["ends_at"],
            merged.get("registration_opens_at"),
            merged.get("registration_closes_at"),
        )
    except ValueError as exc:
        raise invalid([{"field": "body", "message": str(exc)}]) from exc
    if update.questions is not None:
        plan.set["questions"] = [q.model_dump(exclude_none=True) for q in update.questions]
    if update.capacity is not None:
        _move_counter(plan, "places_left", event["places_left"], event["capacity"], update.capacity, "capacity")
        if update.capacity != event["capacity"]:
            plan.set["capacity"] = update.capacity
            plan.places_freed = update.capacity > event["capacity"]
    if update.ticket_types is not None:
        _plan_ticket_types(plan, event, update.ticket_types, ticket_taken)
    if update.sessions is not None:
        _plan_sessions(plan, event, update.sessions)
    return plan


def _plan_ticket_types(
    plan: EventPlan, event: Mapping[str, Any], changes: list[TicketTypeChange], ticket_taken: Mapping[str, int]
) -> None:
    types = [dict(t) for t in event["ticket_types"]]
    by_code = {t["code"]: t for t in types}
    limited = event.get("ticket_left", {})
    for change in changes:
        name = f"ticket_types.{change.code}.capacity"
        counter = f"ticket_left.{change.code}"
        current = by_code.get(change.code)
        if current is None:
            if change.name is None:
                field_name = f"ticket_types.{change.code}.name"
                raise invalid([{"field": field_name, "message": "A new ticket type needs a name."}])
            types.append({"code": change.code, "name": change.name, "capacity": change.capacity})
            if change.capacity is not None:
                plan.set[counter] = change.capacity
            continue
        if change.name is not None:
            current["name"] = change.name
        if "capacity" not in change.model_fields_set or change.capacity == current.get("capacity"):
            continue
        if change.capacity is None:
            plan.unset.append(counter)
            plan.places_freed = True
        elif current.get("capacity") is None or change.code not in limited:
            taken = ticket_taken.get(change.code, 0)
            if change.capacity < taken:
                raise _below_taken(name, taken)
            plan.set[counter] = change.capacity - taken
        else:
            _move_counter(plan, counter, limited[change.code], current["capacity"], change.capacity, name)
            plan.places_freed = plan.places_freed or change.capacity > current["capacity"]
        current["capacity"] = change.capacity
    plan.set["ticket_types"] = types
    if any(counter.startswith("ticket_left.") for counter in [*plan.set, *plan.unset]):
        # Registrations read the event before their transaction; this tells them its limits moved.
        plan.inc["limits_version"] = 1


def _plan_sessions(plan: EventPlan, event: Mapping[str, Any], changes: list[SessionChange]) -> None:
    sessions = [dict(s) for s in event.get("sessions", [])]
    by_code = {s["code"]: s for s in sessions}
    for change in changes:
        current = by_code.get(change.code)
        if current is None:
            missing = [n for n in ("title", "starts_at", "ends_at", "capacity") if getattr(change, n) is None]
            if missing:
                raise invalid(
                    [{"field": f"sessions.{change.code}.{n}", "message": "A new session needs it."} for n in missing]
                )
            current = change.model_dump()
            sessions.append(current)
            plan.set[f"session_left.{change.code}"] = change.capacity
        else:
            for name in ("title", "starts_at", "ends_at"):
                if getattr(change, name) is not None:
                    current[name] = getattr(change, name)
            if change.capacity is not None and change.capacity != current["capacity"]:
                _move_counter(
                    plan,
                    f"session_left.{change.code}",
                    event["session_left"][change.code],
                    current["capacity"],
                    change.capacity,
                    f"sessions.{change.code}.capacity",
                )
                if change.capacity > current["capacity"]:
                    plan.sessions_freed.append(change.code)
                current["capacity"] = change.capacity
        if current["ends_at"] <= current["starts_at"]:
            raise invalid([{"field": f"sessions.{change.code}.ends_at", "message": "Must be after starts_at."}])
    plan.set["sessions"] = sessions


def summary(event: Mapping[str, Any]) -> events.EventSummary:
    return events.EventSummary(
        id=event["_id"],
        slug=event["slug"],
        title=event["title"],
        venue=event["venue"],
        starts_at=event["starts_at"],
        ends_at=event["ends_at"],
        timezone=event["timezone"],
        organiser_contact=event.get("organiser_contact"),
        sessions=[
            events.SessionSummary(code=s["code"], title=s["title"], starts_at=s["starts_at"], ends_at=s["ends_at"])
            for s in event.get("sessions", [])
        ],
    )


def delegate(registration: Mapping[str, Any]) -> events.Delegate:
    return events.Delegate(
        name=registration["name"],
        email=registration["email"],
        organisation=registration["organisation"],
        role=registration["role"],
        phase=registration.get("phase"),
        local_authority=registration.get("local_authority"),
    )
