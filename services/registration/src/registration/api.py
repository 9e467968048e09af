"""HTTP routes of the registration service: parse, call a handler, shape the reply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from plenary_kit.auth import hash_token, is_admin
from plenary_kit.errors import ApiError
from plenary_kit.mongo import Document
from plenary_kit.ratelimit import RateLimit
from plenary_kit.web import AdminTokenDep, Authorization, ManageToken, OrganiserDep
from registration import csvfiles, domain
from registration.domain import RegistrationRejected
from registration.handlers import Registrations
from registration.imports import Imports
from registration.store import Store

router = APIRouter(prefix="/api/v1")

# Public registration, per client address: a school's whole staff behind one connection can register
# at once (a group registration is one request), a script cannot flood the event.
PUBLIC_REGISTRATION = RateLimit("registration", per_second=0.5, burst=30)


async def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def get_registrations(request: Request) -> Registrations:
    return request.app.state.registrations  # type: ignore[no-any-return]


async def get_imports(request: Request) -> Imports:
    return request.app.state.imports  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
RegistrationsDep = Annotated[Registrations, Depends(get_registrations)]
ImportsDep = Annotated[Imports, Depends(get_imports)]


def event_public(event: Document) -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        domain.check_window(event, now)
        open_now = True
    except RegistrationRejected:
        open_now = False
    return {
        "id": event["_id"],
        "slug": event["slug"],
        "title": event["title"],
        "venue": event["venue"],
        "starts_at": event["starts_at"].isoformat(),
        "ends_at": event["ends_at"].isoformat(),
        "timezone": event["timezone"],
        "capacity": event["capacity"],
        "places_left": max(event["places_left"], 0),
        "registration_open": open_now,
        "closed": bool(event.get("closed")),
        "registration_opens_at": _iso(event.get("registration_opens_at")),
        "registration_closes_at": _iso(event.get("registration_closes_at")),
        "organiser_contact": event.get("organiser_contact"),
        "offer_window_hours": event.get("offer_window_hours"),
        "ticket_types": [
            {**t, "places_left": event.get("ticket_left", {}).get(t["code"])} for t in event["ticket_types"]
        ],
        "sessions": [
            {
                **s,
                "starts_at": s["starts_at"].isoformat(),
                "ends_at": s["ends_at"].isoformat(),
                "places_left": max(event["session_left"].get(s["code"], 0), 0),
            }
            for s in event.get("sessions", [])
        ],
        "questions": event.get("questions", []),
    }


def registration_public(registration: Document) -> dict[str, Any]:
    offer = registration.get("offer")
    consent = registration.get("consent") or {}
    return {
        "id": registration["_id"],
        "event_id": registration["event_id"],
        "status": registration["status"],
        "name": registration["name"],
        "email": registration["email"],
        "organisation": registration["organisation"],
        "role": registration["role"],
        "phase": registration.get("phase"),
        "local_authority": registration.get("local_authority"),
        "dietary_needs": registration.get("dietary_needs"),
        "access_needs": registration.get("access_needs"),
        "ticket_type": registration["ticket_type"],
        "sessions": registration["sessions"],
        "waiting_sessions": registration.get("waiting_sessions", []),
        "answers": registration.get("answers", {}),
        "waitlist_position": registration.get("waitlist_position"),
        "offer": {"offered_at": _iso(offer["offered_at"]), "expires_at": _iso(offer["expires_at"])} if offer else None,
        "consent": {
            "source": consent.get("source", "delegate"),
            "given_at": _iso(consent.get("given_at")),
            "notice_version": consent.get("notice_version"),
        },
        "created_at": registration["created_at"].isoformat(),
        "updated_at": registration["updated_at"].isoformat(),
        "cancelled_at": _iso(registration.get("cancelled_at")),
        "cancel_reason": registration.get("cancel_reason"),
        "erased": bool(registration.get("erased_at")),
    }


def import_public(job: Document) -> dict[str, Any]:
    return {
        "import_id": job["_id"],
        "event_id": job["event_id"],
        "status": job["status"],
        "total": job["total"],
        "processed": job["processed"],
        "imported": job["imported"],
        "rejected": job["rejected"],
        "skipped": job["skipped"],
        "rows": job["rows"],
        "created_at": job["created_at"].isoformat(),
        "finished_at": _iso(job.get("finished_at")),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def authorise_registration(
    store: Store,
    registration_id: str,
    admin_token: str,
    authorization: str | None,
    manage_token: str | None,
) -> Document:
    """Organisers see every registration; a delegate's manage token opens only their own."""
    if is_admin(authorization, admin_token):
        registration = await store.registration(registration_id)
        if registration is None:
            raise ApiError(404, "registration_not_found", "No such registration.")
        return registration
    if manage_token:
        registration = await store.registration(registration_id)
        if registration is not None and registration["manage_token_hash"] == hash_token(manage_token):
            return registration
        if await store.registration_by_token_hash(hash_token(manage_token)) is not None:
            raise ApiError(403, "forbidden", "This manage link belongs to another registration.")
    raise ApiError(401, "unauthenticated", "A manage token or organiser token is required.")


async def _event(store: Store, event_id: str) -> Document:
    event = await store.event(event_id)
    if event is None:
        raise ApiError(404, "event_not_found", "No such event.")
    return event


# Events (organisers manage them; anyone may read them)


@router.post("/events", status_code=201, dependencies=[OrganiserDep])
async def create_event(spec: domain.EventCreate, registrations: RegistrationsDep) -> dict[str, Any]:
    return event_public(await registrations.create_event(spec))


@router.get("/events")
async def list_events(store: StoreDep, slug: str | None = None) -> list[dict[str, Any]]:
    if slug is not None:
        event = await store.event_by_slug(slug)
        return [event_public(event)] if event else []
    return [event_public(event) for event in await store.list_events()]


@router.get("/events/{event_id}")
async def get_event(event_id: str, store: StoreDep) -> dict[str, Any]:
    return event_public(await _event(store, event_id))


@router.patch("/events/{event_id}", dependencies=[OrganiserDep])
async def update_event(event_id: str, update: domain.EventUpdate, registrations: RegistrationsDep) -> dict[str, Any]:
    return event_public(await registrations.update_event(event_id, update))


@router.post("/events/{event_id}/close", dependencies=[OrganiserDep])
async def close_event(event_id: str, registrations: RegistrationsDep) -> dict[str, Any]:
    return event_public(await registrations.set_registration_open(event_id, False))


@router.post("/events/{event_id}/open", dependencies=[OrganiserDep])
async def open_event(event_id: str, registrations: RegistrationsDep) -> dict[str, Any]:
    return event_public(await registrations.set_registration_open(event_id, True))


# Registering


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post("/events/{event_id}/registrations", status_code=201, dependencies=[PUBLIC_REGISTRATION.dependency])
async def register(
    event_id: str,
    request: domain.RegistrationCreate,
    registrations: RegistrationsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    reply = await registrations.register(event_id, request, idempotency_key)
    return JSONResponse(reply.body, status_code=reply.status)


@router.post(
    "/events/{event_id}/registrations/group", status_code=201, dependencies=[PUBLIC_REGISTRATION.dependency]
)
async def register_group(
    event_id: str,
    request: domain.GroupRegistrationCreate,
    registrations: RegistrationsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    reply = await registrations.register_group(event_id, request, idempotency_key)
    return JSONResponse(reply.body, status_code=reply.status)


@router.post(
    "/events/{event_id}/imports",
    status_code=202,
    dependencies=[OrganiserDep],
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def start_import(
    event_id: str,
    request: Request,
    imports: ImportsDep,
    content_type: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    if (content_type or "").split(";")[0].strip().lower() != "text/csv":
        raise ApiError(415, "unsupported_media_type", "Send the file as text/csv.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > csvfiles.MAX_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > csvfiles.MAX_BYTES:
            raise _too_large()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "invalid_encoding", "The file must be UTF-8 encoded text.") from exc
    job = await imports.start(event_id, text)
    return {"import_id": job["_id"], "status": job["status"], "total": job["total"]}


def _too_large() -> ApiError:
    return ApiError(413, "file_too_large", f"A file may be at most {csvfiles.MAX_BYTES // (1024 * 1024)} MB.")


@router.get("/imports/{import_id}", dependencies=[OrganiserDep])
async def get_import(import_id: str, store: StoreDep) -> dict[str, Any]:
    job = await store.import_job(import_id)
    if job is None:
        raise ApiError(404, "import_not_found", "No such import.")
    return import_public(job)


@router.get("/events/{event_id}/registrations", dependencies=[OrganiserDep], response_model=None)
async def list_registrations(
    event_id: str,
    store: StoreDep,
    accept: Annotated[str | None, Header()] = None,
    format_: Annotated[Literal["csv", "json"] | None, Query(alias="format")] = None,
) -> Response | list[dict[str, Any]]:
    event = await _event(store, event_id)
    registrations = await store.registrations_for(event_id)
    if format_ == "csv" or (format_ is None and accept and "text/csv" in accept):
        return Response(
            csvfiles.export_csv(registrations, event.get("questions", [])),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="registrations-{event["slug"]}.csv"'},
        )
    return [registration_public(r) for r in registrations]


# A delegate's own registration (manage token) or any registration (organiser)


@router.get("/registrations/{registration_id}")
async def get_registration(
    registration_id: str,
    store: StoreDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> dict[str, Any]:
    registration = await authorise_registration(store, registration_id, admin_token, authorization, manage_token)
    return registration_public(registration)


@router.patch("/registrations/{registration_id}")
async def update_registration(
    registration_id: str,
    changes: domain.RegistrationUpdate,
    store: StoreDep,
    registrations: RegistrationsDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> dict[str, Any]:
    await authorise_registration(store, registration_id, admin_token, authorization, manage_token)
    return registration_public(await registrations.update(registration_id, changes))


@router.post("/registrations/{registration_id}/cancel")
async def cancel_registration(
    registration_id: str,
    store: StoreDep,
    registrations: RegistrationsDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> dict[str, Any]:
    await authorise_registration(store, registration_id, admin_token, authorization, manage_token)
    return registration_public(await registrations.cancel(registration_id))


@router.post("/registrations/{registration_id}/resend", status_code=202)
async def resend_ticket(
    registration_id: str,
    store: StoreDep,
    registrations: RegistrationsDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> dict[str, Any]:
    await authorise_registration(store, registration_id, admin_token, authorization, manage_token)
    await registrations.resend(registration_id)
    return {"status": "requested"}


@router.post("/registrations/{registration_id}/accept-offer")
async def accept_offer(
    registration_id: str,
    store: StoreDep,
    registrations: RegistrationsDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> dict[str, Any]:
    await authorise_registration(store, registration_id, admin_token, authorization, manage_token)
    return registration_public(await registrations.accept_offer(registration_id))


@router.post("/registrations/{registration_id}/erase", dependencies=[OrganiserDep])
async def erase_registration(registration_id: str, registrations: RegistrationsDep) -> dict[str, Any]:
    return registration_public(await registrations.erase(registration_id))
