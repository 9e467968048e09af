"""Delegates' pages: the event's registration form, confirmation, the manage page and the privacy notice.

Plain HTML forms with POST-redirect-GET, so every page works without JavaScript. They validate
with the same models and call the same handlers as the JSON API.

Cross-site submission: the pages set no cookies, so a form posted from another site carries no
authority of the delegate's; actions on a registration need its manage token in the form. Every
form also carries a token signed with a key derived from the link key (HMAC over the form's
purpose, e.g. the event slug or the registration id and action, the time it was rendered and a
random nonce), so a post is accepted only for a form this service rendered for that very page
within a day. The Origin header cannot serve here: with `Referrer-Policy: no-referrer` browsers
send `Origin: null` on form posts. The token's nonce is also the registration's Idempotency-Key,
so a double-submitted form registers once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import ValidationError

from plenary_kit import dates
from plenary_kit.auth import hash_token
from plenary_kit.mongo import Document
from registration import domain
from registration.api import PUBLIC_REGISTRATION, RegistrationsDep, StoreDep
from registration.domain import QuestionKind, RegistrationRejected, Status
from registration.store import Store

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# As long as the handler remembers an Idempotency-Key, so a resubmitted form is still recognised.
FORM_TOKEN_LIFETIME = timedelta(hours=24)
MAX_FORM_BYTES = 64 * 1024

OTHER = "Other"
ROLES = [
    "Headteacher",
    "Deputy or assistant head",
    "SENCO",
    "Subject or phase leader",
    "Early years lead",
    "Trust leader or CEO",
    "Governor",
    "Teacher",
    "Teacher educator",
    "Local authority officer",
    "University staff",
    "Employer",
]
LOCAL_AUTHORITIES = {
    "Liverpool City Region": ["Halton", "Knowsley", "Liverpool", "Sefton", "St Helens", "Wirral"],
    "Neighbouring authorities": ["Cheshire West and Chester", "Lancashire", "Warrington"],
}

# The form's fields in page order; the error summary lists errors in this order.
FIELDS = [
    "name", "email", "organisation", "role", "role_other", "phase", "local_authority", "ticket_type", "sessions",
    "dietary_needs", "access_needs", "answers", "consent",
]
MESSAGES = {
    "name": "Enter your full name",
    "email": "Enter an email address in the correct format, like name@school.org.uk",
    "organisation": "Enter the name of your organisation or school",
    "role": "Choose your role, or choose Other and tell us your role",
    "phase": "Choose a phase from the list",
    "local_authority": "Choose a local authority from the list",
    "ticket_type": "Choose a ticket type",
    "sessions": "Choose each workshop only once",
    "consent": "Tick the box to agree to the privacy notice",
}
LABELS = {
    "name": "Full name",
    "organisation": "Organisation or school",
    "role": "Role",
    "role_other": "Your role",
    "local_authority": "Local authority",
    "dietary_needs": "Dietary needs",
    "access_needs": "Access needs",
}
ALREADY_REGISTERED = "This email address is already registered for this event. Check your inbox for your manage link."
# What the manage page says after an action; only these fixed texts, never text from the address.
NOTICES = {
    "cancelled": "Your registration has been cancelled.",
    "updated": "Your details have been saved.",
    "resent": "We have sent your ticket email again. It can take a few minutes to arrive.",
    "resend_too_soon": "We sent your email a moment ago. Please wait a minute before asking again.",
    "accepted": "You have accepted the place. Your ticket is on its way by email.",
    "offer_expired": "The offer has expired, so the place has gone to the next person on the waiting list.",
    "expired": "That page had been open too long, so nothing was changed. Please try again.",
    "unchanged": "Nothing was changed: your registration can no longer be changed this way.",
}

WEB = Path(__file__).parent / "web"
_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
STATIC = {
    path.name: (path.read_bytes(), _MEDIA_TYPES[path.suffix])
    for path in (WEB / "static").iterdir()
    if path.suffix in _MEDIA_TYPES
}

_templates = Environment(
    loader=PackageLoader("registration", "web/templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates ship with the service: no need to look at their files on every page.
    auto_reload=False,
)


# --- Responses ------------------------------------------------------------------------------------


def _secured(response: Response, personal: bool) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if personal:
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(template: str, status: int = 200, personal: bool = True, **context: Any) -> Response:
    """A rendered page; all but the privacy notice are `personal`: they show a delegate's details or
    carry a form's single-use token, so no browser or proxy may keep them."""
    html = _templates.get_template(template).render(**context)
    return _secured(HTMLResponse(html, status_code=status), personal)


def _redirect(url: str) -> Response:
    return _secured(RedirectResponse(url, status_code=303), personal=True)


def _problem(status: int, title: str, message: str) -> Response:
    return _page("problem.html", status=status, title=title, message=message)


def _event_not_found() -> Response:
    return _problem(
        404,
        "Event not found",
        "We could not find that event. Check the web address, or ask the organiser for the registration link.",
    )


def _link_not_recognised() -> Response:
    # One answer for an unknown registration and a wrong token: the page reveals nothing either way.
    return _problem(
        404,
        "This link does not work",
        "We could not find a registration for this link. "
        "Copy the whole link from your confirmation email and try again.",
    )


# --- Form tokens ----------------------------------------------------------------------------------


def _form_key(request: Request) -> bytes:
    key: bytes | None = getattr(request.app.state, "form_token_key", None)
    if key is None:
        # A key of its own derived from the link key, so form tokens and sealed tokens never share one.
        link_key = request.app.state.runtime.settings.link_key()
        key = hmac.new(link_key, b"plenary registration form token", hashlib.sha256).digest()
        request.app.state.form_token_key = key
    return key


def issue_form_token(key: bytes, purpose: str, now: datetime) -> str:
    issued = str(int(now.timestamp()))
    nonce = secrets.token_urlsafe(18)
    return f"{issued}.{nonce}.{_mac(key, purpose, issued, nonce)}"


def check_form_token(key: bytes, purpose: str, token: str, now: datetime) -> str | None:
    """The token's nonce when it was issued for `purpose` within its lifetime, else None."""
    issued, _, rest = token.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued.isdigit() and nonce and mac):
        return None
    # Bytes: compare_digest raises on a str holding anything but ASCII, and the token is what was posted.
    if not hmac.compare_digest(mac.encode(), _mac(key, purpose, issued, nonce).encode()):
        return None
    age = now - datetime.fromtimestamp(int(issued), UTC)
    if age > FORM_TOKEN_LIFETIME or age < -timedelta(minutes=5):
        return None
    return nonce


def _mac(key: bytes, purpose: str, issued: str, nonce: str) -> str:
    return hmac.new(key, "\n".join([purpose, issued, nonce]).encode(), hashlib.sha256).hexdigest()


# --- Reading forms --------------------------------------------------------------------------------


class FormTooLarge(Exception):
    pass


@dataclass
class Form:
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def first(self, name: str) -> str:
        return next((value for key, value in self.pairs if key == name), "")

    def every(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


async def _read_form(request: Request) -> Form:
    """An url-encoded form body, refused past MAX_FORM_BYTES before it is all read."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
    return Form(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=500))


# --- What the pages show --------------------------------------------------------------------------


def places(count: int) -> str:
    if count <= 0:
        return "No places left"
    return "1 place left" if count == 1 else f"{count} places left"


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    hint: str = ""
    disabled: bool = False


@dataclass(frozen=True)
class Question:
    code: str
    label: str
    kind: str
    required: bool
    options: list[Choice]

    @property
    def name(self) -> str:
        return f"answer-{self.code}"

    @property
    def anchor(self) -> str:
        return self.name if self.kind == QuestionKind.TEXT else f"{self.name}-0"


YES_NO = [Choice("yes", "Yes"), Choice("no", "No")]


def _questions(event: Mapping[str, Any]) -> list[Question]:
    return [
        Question(
            code=q["code"],
            label=q["label"],
            kind=q["kind"],
            required=bool(q.get("required")),
            options=YES_NO if q["kind"] == QuestionKind.YES_NO else [Choice(o, o) for o in q.get("options") or []],
        )
        for q in event.get("questions", [])
    ]


@dataclass
class Problems:
    """A form's errors: each with the field it belongs to and the element its summary link moves to."""

    fields: dict[str, str] = field(default_factory=dict)
    anchors: dict[str, str] = field(default_factory=dict)
    form: str = ""

    def add(self, name: str, message: str, anchor: str | None = None) -> None:
        if name not in self.fields:
            self.fields[name] = message
            self.anchors[name] = anchor or {"ticket_type": "ticket_type-0", "sessions": "sessions-0"}.get(name, name)

    def summary(self) -> list[dict[str, str]]:
        def rank(name: str) -> int:
            base = name.partition(".")[0]
            return FIELDS.index(base) if base in FIELDS else len(FIELDS)

        return [{"href": "#" + self.anchors[n], "message": self.fields[n]} for n in sorted(self.fields, key=rank)]

    def __bool__(self) -> bool:
        return bool(self.fields or self.form)


def event_view(event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    zone = dates.zone(event["timezone"])
    state, opens = "open", ""
    try:
        domain.check_window(event, now)
    except RegistrationRejected as exc:
        state = "not_open" if exc.code == "registration_not_open" else "closed"
        if event.get("registration_opens_at"):
            opens = dates.moment(event["registration_opens_at"], zone)
    ticket_left = event.get("ticket_left", {})
    ticket_types = []
    for ticket in event["ticket_types"]:
        left = ticket_left.get(ticket["code"])
        hint = "" if left is None else (places(left) if left > 0 else "Full – you can join the waiting list")
        ticket_types.append(Choice(ticket["code"], ticket["name"], hint))
    sessions = []
    event_day = event["starts_at"].astimezone(zone).date()
    for session in event.get("sessions", []):
        left = event.get("session_left", {}).get(session["code"], 0)
        time = dates.span(session["starts_at"], session["ends_at"], zone)
        if session["starts_at"].astimezone(zone).date() == event_day:
            time = time.partition(", ")[2]
        status = places(left) if left > 0 else "Full – you can join the waiting list"
        sessions.append(Choice(session["code"], session["title"], f"{time} · {status}"))
    return {
        "slug": event["slug"],
        "title": event["title"],
        "venue": event["venue"],
        "when": dates.span(event["starts_at"], event["ends_at"], zone),
        "places_left": places(event["places_left"]),
        "full": event["places_left"] <= 0,
        "state": state,
        "opens": opens,
        "ticket_types": ticket_types,
        "sessions": sessions,
        "questions": _questions(event),
        "organiser_contact": event.get("organiser_contact") or "",
    }


PHASE_NAMES = {phase.value: label for phase, label in domain.PHASE_LABELS.items()}
LISTS: dict[str, Any] = {
    "roles": [Choice(r, r) for r in [*ROLES, OTHER]],
    "phases": [Choice(value, label) for value, label in PHASE_NAMES.items()],
    "local_authorities": {group: [Choice(a, a) for a in members] for group, members in LOCAL_AUTHORITIES.items()},
    "other_authority": [Choice(OTHER, OTHER)],
}


def _public_url(request: Request) -> str:
    configured: str | None = request.app.state.runtime.settings.plenary_public_url
    return (configured or str(request.base_url)).rstrip("/")


def manage_path(registration_id: str, token: str, action: str = "") -> str:
    return f"/manage/{quote(registration_id)}{action}?token={quote(token, safe='')}"


# --- The registration form ------------------------------------------------------------------------


def _values(form: Form, questions: list[Question]) -> dict[str, Any]:
    """What the delegate typed or chose, to fill the form again when it comes back with errors."""
    return {
        "name": form.first("name"),
        "email": form.first("email"),
        "organisation": form.first("organisation"),
        "role": form.first("role"),
        "role_other": form.first("role_other"),
        "phase": form.first("phase"),
        "local_authority": form.first("local_authority"),
        "ticket_type": form.first("ticket_type"),
        "sessions": form.every("sessions"),
        "dietary_needs": form.first("dietary_needs"),
        "access_needs": form.first("access_needs"),
        "answers": {
            q.code: form.every(q.name) if q.kind == QuestionKind.MULTIPLE_CHOICE else form.first(q.name)
            for q in questions
        },
        "consent": form.first("consent") == "yes",
    }


def _role(values: Mapping[str, Any], problems: Problems) -> str:
    if values["role"] != OTHER:
        return str(values["role"])
    other = str(values["role_other"]).strip()
    if not other:
        problems.add("role_other", "Tell us your role, as you chose Other")
    return other or OTHER


def _answers(values: Mapping[str, Any], questions: list[Question]) -> dict[str, Any]:
    """Form answers in the API's shape: text, an option, a list of options, or true/false."""
    answers: dict[str, Any] = {}
    for question in questions:
        value = values["answers"].get(question.code)
        if question.kind == QuestionKind.YES_NO:
            if value in ("yes", "no"):
                answers[question.code] = value == "yes"
        elif value:
            answers[question.code] = value
    return answers


def _registration_request(
    values: Mapping[str, Any], questions: list[Question], event: Document, problems: Problems
) -> domain.RegistrationCreate | None:
    """The API's model of the registration, or None with every problem found recorded."""
    if not values["consent"]:
        # The model's own consent rule runs only once every field is valid; the page shows all at once.
        problems.add("consent", MESSAGES["consent"])
    payload = {
        "name": values["name"],
        "email": values["email"],
        "organisation": values["organisation"],
        "role": _role(values, problems),
        "phase": values["phase"],
        "local_authority": values["local_authority"],
        "dietary_needs": values["dietary_needs"],
        "access_needs": values["access_needs"],
        "ticket_type": values["ticket_type"],
        "sessions": values["sessions"],
        "answers": _answers(values, questions),
        "consent": True,
    }
    try:
        domain.check_answers(event.get("questions", []), payload["answers"])
    except RegistrationRejected as exc:
        _add_rejection(exc, questions, problems)
    try:
        request = domain.RegistrationCreate.model_validate(payload)
    except ValidationError as exc:
        _add_validation_errors(exc, problems)
        return None
    return None if problems else request


def _add_validation_errors(exc: ValidationError, problems: Problems) -> None:
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "string_too_long" and name in LABELS:
            problems.add(name, f"{LABELS[name]} must be {error['ctx']['max_length']} characters or fewer")
        elif name in MESSAGES:
            problems.add(name, MESSAGES[name])
        else:
            problems.form = problems.form or "Some of your answers could not be accepted. Check them and try again."


def _add_answer_problem(question: Question, message: str, problems: Problems) -> None:
    if message == "An answer is required.":
        verb = "Enter" if question.kind == QuestionKind.TEXT else "Choose"
        text = f"{verb} an answer to “{question.label}”"
    else:
        text = f"“{question.label}”: {message}"
    problems.add(f"answers.{question.code}", text, question.anchor)


def _add_rejection(exc: RegistrationRejected, questions: list[Question], problems: Problems) -> None:
    """A handler's refusal shown on the field it is about, or at the top of the form."""
    by_code = {q.code: q for q in questions}
    if exc.code == "validation_error":
        for problem in exc.extra.get("fields", []):
            name, _, code = str(problem["field"]).partition(".")
            if name == "answers" and code in by_code:
                _add_answer_problem(by_code[code], str(problem["message"]), problems)
            elif name in MESSAGES:
                problems.add(name, MESSAGES[name])
            else:
                problems.form = problems.form or exc.message
    elif exc.code == "already_registered":
        problems.add("email", ALREADY_REGISTERED)
    elif exc.code in ("session_full", "unknown_session"):
        problems.add("sessions", exc.message.replace("session", "workshop"))
    elif exc.code == "unknown_ticket_type":
        problems.add("ticket_type", MESSAGES["ticket_type"])
    elif exc.code == "idempotency_key_reused":
        problems.form = "This form was already sent with other details. Check your details and send it again."
    else:
        problems.form = exc.message


def _event_page(
    request: Request, event: Document, values: Mapping[str, Any], problems: Problems, status: int = 200
) -> Response:
    now = datetime.now(UTC)
    return _page(
        "event.html",
        status=status,
        event=event_view(event, now),
        values=values,
        problems=problems,
        summary=problems.summary(),
        form_token=issue_form_token(_form_key(request), f"register:{event['slug']}", now),
        lists=LISTS,
    )


@router.get("/events/{slug}", response_class=HTMLResponse)
async def event_page(slug: str, request: Request, store: StoreDep) -> Response:
    event = await store.event_by_slug(slug)
    if event is None:
        return _event_not_found()
    return _event_page(request, event, _values(Form(), _questions(event)), Problems())


@router.post("/events/{slug}/register", response_class=HTMLResponse)
async def register(slug: str, request: Request, store: StoreDep, registrations: RegistrationsDep) -> Response:
    wait = PUBLIC_REGISTRATION.wait(request)
    if wait:
        response = _problem(
            429,
            "Too many registrations from your connection",
            f"Please wait {wait} seconds, then go back and send the form again. Your answers are still there.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    event = await store.event_by_slug(slug)
    if event is None:
        return _event_not_found()
    try:
        form = await _read_form(request)
    except FormTooLarge:
        return _problem(413, "Your answers are too long", "Go back, shorten your answers and try again.")
    questions = _questions(event)
    values, problems = _values(form, questions), Problems()
    nonce = check_form_token(_form_key(request), f"register:{slug}", form.first("form_token"), datetime.now(UTC))
    if nonce is None:
        problems.form = "This form has expired. Check your details and send it again."
        return _event_page(request, event, values, problems, status=400)
    registration = _registration_request(values, questions, event, problems)
    if registration is None:
        return _event_page(request, event, values, problems, status=422)
    try:
        reply = await registrations.register(event["_id"], registration, nonce)
    except RegistrationRejected as exc:
        if exc.code == "event_not_found":
            return _event_not_found()
        _add_rejection(exc, questions, problems)
        fresh = await store.event(event["_id"]) or event
        return _event_page(request, fresh, values, problems, status=exc.status)
    registered = f"/events/{quote(slug)}/registered/{quote(reply.body['id'])}"
    return _redirect(f"{registered}?token={quote(reply.body['manage_token'], safe='')}")


# --- Confirmation and manage pages ----------------------------------------------------------------


async def _own_registration(store: Store, registration_id: str, token: str | None) -> Document | None:
    """The registration when `token` is its manage token; otherwise nothing, whoever's it is."""
    if not token:
        return None
    registration = await store.registration(registration_id)
    if registration is None:
        return None
    if not hmac.compare_digest(str(registration["manage_token_hash"]), hash_token(token)):
        return None
    return registration


async def _registration_view(store: Store, registration: Document, event: Document) -> dict[str, Any]:
    zone = dates.zone(event["timezone"])
    titles = {s["code"]: s["title"] for s in event.get("sessions", [])}
    ticket_names = {t["code"]: t["name"] for t in event["ticket_types"]}
    waiting = registration.get("waiting_sessions") or []
    positions = await store.session_wait_positions(registration["_id"]) if waiting else {}
    workshops = [titles.get(code, code) for code in registration["sessions"]]
    workshops += [
        f"{titles.get(code, code)} – on the waiting list"
        + (f" (position {positions[code]})" if code in positions else "")
        for code in waiting
    ]
    offer = registration.get("offer")
    extra = [
        ("Phase", PHASE_NAMES.get(registration.get("phase") or "", registration.get("phase"))),
        ("Local authority", registration.get("local_authority")),
        ("Dietary needs", registration.get("dietary_needs")),
        ("Access needs", registration.get("access_needs")),
    ]
    answers = registration.get("answers") or {}
    for question in _questions(event):
        if question.code in answers:
            extra.append((question.label, _answer_text(answers[question.code])))
    return {
        "id": registration["_id"],
        "status": registration["status"],
        "position": registration.get("waitlist_position"),
        "offer_until": (
            dates.moment(offer["expires_at"], zone) if offer and registration["status"] == "waitlisted" else ""
        ),
        "name": registration["name"],
        "email": registration["email"],
        "organisation": registration["organisation"],
        "role": registration["role"],
        "extra": [(label, value) for label, value in extra if value],
        "ticket_type": ticket_names.get(registration["ticket_type"], registration["ticket_type"]),
        "show_ticket_type": len(ticket_names) > 1,
        "workshops": workshops,
        "has_workshops": bool(titles),
    }


def _answer_text(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


async def _authorised(store: Store, registration_id: str, token: str | None) -> tuple[Document, Document] | None:
    registration = await _own_registration(store, registration_id, token)
    if registration is None:
        return None
    event = await store.event(registration["event_id"])
    return None if event is None else (registration, event)


@router.get("/events/{slug}/registered/{registration_id}", response_class=HTMLResponse)
async def registered_page(
    slug: str, registration_id: str, request: Request, store: StoreDep, token: str = ""
) -> Response:
    found = await _authorised(store, registration_id, token)
    if found is None or found[1]["slug"] != slug:
        return _link_not_recognised()
    registration, event = found
    return _page(
        "registered.html",
        event=event_view(event, datetime.now(UTC)),
        registration=await _registration_view(store, registration, event),
        manage_url=_public_url(request) + manage_path(registration_id, token),
    )


@router.get("/manage/{registration_id}", response_class=HTMLResponse)
async def manage_page(
    registration_id: str, request: Request, store: StoreDep, token: str = "", done: str = ""
) -> Response:
    found = await _authorised(store, registration_id, token)
    if found is None:
        return _link_not_recognised()
    registration, event = found
    key, now = _form_key(request), datetime.now(UTC)
    return _page(
        "manage.html",
        event=event_view(event, now),
        registration=await _registration_view(store, registration, event),
        notice=NOTICES.get(done, ""),
        token=token,
        form_tokens={action: issue_form_token(key, f"{action}:{registration_id}", now) for action in POSTED_HERE},
        edit_url=manage_path(registration_id, token, "/edit"),
        cancel_url=manage_path(registration_id, token, "/cancel"),
    )


# The forms on the manage page itself; cancel and edit have pages of their own.
POSTED_HERE = ("resend", "accept")


@dataclass
class ActionForm:
    """A posted manage-page form whose manage token and form token have both been checked."""

    form: Form
    token: str
    registration: Document


async def _action_form(
    request: Request, store: Store, registration_id: str, action: str
) -> ActionForm | Response:
    """The checked form, or the page that refuses it: a wrong link, or a form we did not render lately."""
    try:
        form = await _read_form(request)
    except FormTooLarge:
        return _problem(413, "Your answers are too long", "Go back, shorten your answers and try again.")
    token = form.first("token")
    registration = await _own_registration(store, registration_id, token)
    if registration is None:
        return _link_not_recognised()
    purpose = f"{action}:{registration_id}"
    if check_form_token(_form_key(request), purpose, form.first("form_token"), datetime.now(UTC)) is None:
        return _done(registration_id, token, "expired")
    return ActionForm(form, token, registration)


def _done(registration_id: str, token: str, outcome: str) -> Response:
    return _redirect(f"{manage_path(registration_id, token)}&done={outcome}")


@router.post("/manage/{registration_id}/resend", response_class=HTMLResponse)
async def resend(registration_id: str, request: Request, store: StoreDep, registrations: RegistrationsDep) -> Response:
    checked = await _action_form(request, store, registration_id, "resend")
    if isinstance(checked, Response):
        return checked
    try:
        await registrations.resend(registration_id)
    except RegistrationRejected as exc:
        outcome = "resend_too_soon" if exc.code == "resend_too_soon" else "unchanged"
        return _done(registration_id, checked.token, outcome)
    return _done(registration_id, checked.token, "resent")


@router.post("/manage/{registration_id}/accept", response_class=HTMLResponse)
async def accept_offer(
    registration_id: str, request: Request, store: StoreDep, registrations: RegistrationsDep
) -> Response:
    checked = await _action_form(request, store, registration_id, "accept")
    if isinstance(checked, Response):
        return checked
    try:
        await registrations.accept_offer(registration_id)
    except RegistrationRejected as exc:
        return _done(registration_id, checked.token, "offer_expired" if exc.code == "offer_expired" else "unchanged")
    return _done(registration_id, checked.token, "accepted")


@router.get("/manage/{registration_id}/cancel", response_class=HTMLResponse)
async def cancel_page(registration_id: str, request: Request, store: StoreDep, token: str = "") -> Response:
    found = await _authorised(store, registration_id, token)
    if found is None:
        return _link_not_recognised()
    registration, event = found
    if registration["status"] == Status.CANCELLED:
        return _redirect(manage_path(registration_id, token))
    return _page(
        "cancel.html",
        event=event_view(event, datetime.now(UTC)),
        registration=await _registration_view(store, registration, event),
        token=token,
        form_token=issue_form_token(_form_key(request), f"cancel:{registration_id}", datetime.now(UTC)),
        manage_url=manage_path(registration_id, token),
    )


@router.post("/manage/{registration_id}/cancel", response_class=HTMLResponse)
async def cancel(registration_id: str, request: Request, store: StoreDep, registrations: RegistrationsDep) -> Response:
    checked = await _action_form(request, store, registration_id, "cancel")
    if isinstance(checked, Response):
        return checked
    try:
        await registrations.cancel(registration_id)
    except RegistrationRejected:
        return _done(registration_id, checked.token, "unchanged")
    return _done(registration_id, checked.token, "cancelled")


# --- Editing details ------------------------------------------------------------------------------


def _stored_values(registration: Document, questions: list[Question]) -> dict[str, Any]:
    """A registration's details as the edit form shows them."""
    role = registration["role"]
    known = role in ROLES or role == OTHER
    answers = registration.get("answers") or {}
    shown: dict[str, Any] = {}
    for question in questions:
        value = answers.get(question.code)
        if isinstance(value, bool):
            shown[question.code] = "yes" if value else "no"
        elif value is not None:
            shown[question.code] = value
    return {
        "name": registration["name"],
        "email": registration["email"],
        "organisation": registration["organisation"],
        "role": role if known else OTHER,
        "role_other": "" if known else role,
        "phase": registration.get("phase") or "",
        "local_authority": registration.get("local_authority") or "",
        "ticket_type": registration["ticket_type"],
        "sessions": [*registration["sessions"], *(registration.get("waiting_sessions") or [])],
        "dietary_needs": registration.get("dietary_needs") or "",
        "access_needs": registration.get("access_needs") or "",
        "answers": shown,
        "consent": True,
    }


def _update_request(
    values: Mapping[str, Any], questions: list[Question], event: Document, problems: Problems
) -> domain.RegistrationUpdate | None:
    answers = _answers(values, questions)
    try:
        domain.check_answers(event.get("questions", []), answers)
    except RegistrationRejected as exc:
        _add_rejection(exc, questions, problems)
    payload = {
        "name": values["name"],
        "organisation": values["organisation"],
        "role": _role(values, problems),
        "phase": values["phase"],
        "local_authority": values["local_authority"],
        "dietary_needs": values["dietary_needs"],
        "access_needs": values["access_needs"],
        # Every question is sent, so an answer the delegate cleared is cleared.
        "answers": {q.code: answers.get(q.code) for q in questions},
    }
    if event.get("sessions"):
        payload["sessions"] = values["sessions"]
    try:
        update = domain.RegistrationUpdate.model_validate(payload)
    except ValidationError as exc:
        _add_validation_errors(exc, problems)
        return None
    return None if problems else update


def _edit_page(
    request: Request,
    registration: Document,
    event: Document,
    token: str,
    values: Mapping[str, Any],
    problems: Problems,
    status: int = 200,
) -> Response:
    now = datetime.now(UTC)
    return _page(
        "edit.html",
        status=status,
        event=event_view(event, now),
        registration={"id": registration["_id"], "email": registration["email"]},
        values=values,
        problems=problems,
        summary=problems.summary(),
        token=token,
        form_token=issue_form_token(_form_key(request), f"edit:{registration['_id']}", now),
        manage_url=manage_path(registration["_id"], token),
        lists=LISTS,
    )


@router.get("/manage/{registration_id}/edit", response_class=HTMLResponse)
async def edit_page(registration_id: str, request: Request, store: StoreDep, token: str = "") -> Response:
    found = await _authorised(store, registration_id, token)
    if found is None:
        return _link_not_recognised()
    registration, event = found
    if registration["status"] == Status.CANCELLED:
        return _redirect(manage_path(registration_id, token))
    values = _stored_values(registration, _questions(event))
    return _edit_page(request, registration, event, token, values, Problems())


@router.post("/manage/{registration_id}/edit", response_class=HTMLResponse)
async def edit(registration_id: str, request: Request, store: StoreDep, registrations: RegistrationsDep) -> Response:
    checked = await _action_form(request, store, registration_id, "edit")
    if isinstance(checked, Response):
        return checked
    registration = checked.registration
    event = await store.event(registration["event_id"])
    if event is None:
        return _link_not_recognised()
    questions = _questions(event)
    values, problems = _values(checked.form, questions), Problems()
    update = _update_request(values, questions, event, problems)
    if update is None:
        return _edit_page(request, registration, event, checked.token, values, problems, status=422)
    try:
        await registrations.update(registration_id, update)
    except RegistrationRejected as exc:
        if exc.code in ("registration_cancelled", "registration_erased", "registration_not_found"):
            return _done(registration_id, checked.token, "unchanged")
        _add_rejection(exc, questions, problems)
        return _edit_page(request, registration, event, checked.token, values, problems, status=exc.status)
    return _done(registration_id, checked.token, "updated")


# --- Privacy notice and static files --------------------------------------------------------------


@router.get("/privacy", response_class=HTMLResponse)
async def privacy_page() -> Response:
    return _page("privacy.html", personal=False, version=domain.PRIVACY_NOTICE_VERSION)


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        return _problem(404, "Page not found", "There is nothing at this address.")
    content, media_type = found
    response = Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
