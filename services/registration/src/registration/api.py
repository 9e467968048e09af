"""HTTP routes of the registration service: parse, call a handler, shape the reply."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from plenary_kit.auth import hash_token, is_admin
from plenary_kit.errors import ApiError
from plenary_kit.mongo import Document
from plenary_kit.web import AdminTokenDep, Authorization, ManageToken, OrganiserDep
from registration import domain
from registration.domain import RegistrationRejected
from registration.handlers import Registrations
from registration.store import Store

router = APIRouter(prefix="/api/v1")


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_registrations(request: Request) -> Registrations:
    return request.app.state.registrations  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
RegistrationsDep = Annotated[Registrations, Depends(get_registrations)]


def _rejected(exc: RegistrationRejected) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


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
        "registration_opens_at": _iso(event.get("registration_opens_at")),
        "registration_closes_at": _iso(event.get("registration_closes_at")),
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
    }


def registration_public(registration: Document) -> dict[str, Any]:
    return {
        "id": registration["_id"],
        "event_id": registration["event_id"],
        "status": registration["status"],
        "name": registration["name"],
        "email": registration["email"],
        "organisation": registration["organisation"],
        "role": registration["role"],
        "ticket_type": registration["ticket_type"],
        "sessions": registration["sessions"],
        "answers": registration.get("answers", {}),
        "waitlist_position": registration.get("waitlist_position"),
        "created_at": registration["created_at"].isoformat(),
        "updated_at": registration["updated_at"].isoformat(),
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


@router.post("/events", status_code=201, dependencies=[OrganiserDep])
async def create_event(spec: domain.EventCreate, registrations: RegistrationsDep) -> dict[str, Any]:
    try:
        event = await registrations.create_event(spec)
    except RegistrationRejected as exc:
        raise _rejected(exc) from exc
    return event_public(event)


@router.get("/events")
async def list_events(store: StoreDep, slug: str | None = None) -> list[dict[str, Any]]:
    if slug is not None:
        event = await store.event_by_slug(slug)
        return [event_public(event)] if event else []
    return [event_public(event) for event in await store.list_events()]


@router.get("/events/{event_id}")
async def get_event(event_id: str, store: StoreDep) -> dict[str, Any]:
    event = await store.event(event_id)
    if event is None:
        raise ApiError(404, "event_not_found", "No such event.")
    return event_public(event)


@router.post("/events/{event_id}/registrations", status_code=201)
async def register(
    event_id: str,
    request: domain.RegistrationCreate,
    registrations: RegistrationsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> JSONResponse:
    try:
        reply = await registrations.register(event_id, request, idempotency_key)
    except RegistrationRejected as exc:
        raise _rejected(exc) from exc
    return JSONResponse(reply.body, status_code=reply.status)


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
    try:
        cancelled = await registrations.cancel(registration_id)
    except RegistrationRejected as exc:
        raise _rejected(exc) from exc
    return registration_public(cancelled)


CSV_COLUMNS = ["id", "status", "name", "email", "organisation", "role", "ticket_type", "sessions", "created_at"]


@router.get("/events/{event_id}/registrations", dependencies=[OrganiserDep], response_model=None)
async def list_registrations(
    event_id: str, store: StoreDep, accept: Annotated[str | None, Header()] = None
) -> Response | list[dict[str, Any]]:
    if await store.event(event_id) is None:
        raise ApiError(404, "event_not_found", "No such event.")
    rows = [registration_public(r) for r in await store.registrations_for(event_id)]
    if accept and "text/csv" in accept:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "sessions": " ".join(row["sessions"])})
        return Response(
            buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="registrations-{event_id}.csv"'},
        )
    return rows
