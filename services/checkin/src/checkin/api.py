"""HTTP routes of the checkin service: parse, authorise, call a handler, shape the reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from checkin import domain
from checkin.door import Scans
from checkin.handlers import Devices
from checkin.views import LiveAttendance, Snapshots
from plenary_kit import qr, spreadsheet
from plenary_kit.auth import bearer, hash_token, is_admin
from plenary_kit.errors import ApiError
from plenary_kit.mongo import Document
from plenary_kit.ratelimit import RateLimit, client_address
from plenary_kit.web import MAX_STORED_INT, AdminTokenDep, Authorization

# Comments sent on an idle stream, so proxies and phones keep the connection open.
STREAM_KEEP_ALIVE_SECONDS = 15.0
NO_SHOW_COLUMNS = ("name", "organisation", "ticket_type", "registration_id", "ticket_id")

router = APIRouter(prefix="/api/v1")


def _caller(request: Request) -> str:
    """Who is scanning: the token's hash (one bucket per device), or the address when there is none."""
    token = bearer(request.headers.get("authorization"))
    return hash_token(token)[:32] if token else client_address(request)


# A door phone decides a scan or two a second; the burst lets it upload a long offline queue, and it
# waits out a 429 (Retry-After) with the rest of the queue kept.
SCANS = RateLimit("scans", per_second=20, burst=200, key=_caller)
# Enrolment codes are 192-bit random, so guessing is hopeless anyway; this keeps the log quiet.
ENROLMENT = RateLimit("enrolment", per_second=0.2, burst=10)


async def get_scans(request: Request) -> Scans:
    return request.app.state.scans  # type: ignore[no-any-return]


async def get_devices(request: Request) -> Devices:
    return request.app.state.devices  # type: ignore[no-any-return]


async def get_snapshots(request: Request) -> Snapshots:
    return request.app.state.snapshots  # type: ignore[no-any-return]


async def get_live(request: Request) -> LiveAttendance:
    return request.app.state.live  # type: ignore[no-any-return]


ScansDep = Annotated[Scans, Depends(get_scans)]
DevicesDep = Annotated[Devices, Depends(get_devices)]
SnapshotsDep = Annotated[Snapshots, Depends(get_snapshots)]
LiveDep = Annotated[LiveAttendance, Depends(get_live)]


async def organiser(admin_token: AdminTokenDep, devices: DevicesDep, authorization: Authorization = None) -> None:
    """Organiser only; a door device's token is known but out of scope here."""
    if is_admin(authorization, admin_token):
        return
    token = bearer(authorization)
    if token is None:
        raise ApiError(401, "unauthenticated", "An organiser token is required.")
    if await devices.authenticate(token) is not None:
        raise ApiError(403, "forbidden", "A door device can only scan.")
    raise ApiError(401, "unauthenticated", "This token is not valid.")


OrganiserDep = Depends(organiser)


async def scanner(
    event_id: str, admin_token: AdminTokenDep, devices: DevicesDep, authorization: Authorization = None
) -> Document | None:
    """The device scanning at this event, or None when an organiser scans."""
    if is_admin(authorization, admin_token):
        return None
    token = bearer(authorization)
    if token is None:
        raise ApiError(401, "unauthenticated", "A device or organiser token is required.")
    device = await devices.authenticate(token)
    if device is None:
        raise ApiError(401, "unauthenticated", "This token is not valid, or its device was revoked.")
    if device["event_id"] != event_id:
        raise ApiError(403, "forbidden", "This device is enrolled for another event.")
    return device


ScannerDep = Annotated[Document | None, Depends(scanner)]


async def this_device(devices: DevicesDep, authorization: Authorization = None) -> Document:
    token = bearer(authorization)
    device = await devices.authenticate(token) if token is not None else None
    if device is None:
        raise ApiError(401, "unauthenticated", "A valid device token is required.")
    return device


def device_public(device: Document) -> dict[str, Any]:
    return {
        "device_id": device["_id"],
        "event_id": device["event_id"],
        "name": device["name"],
        "gates": device["gates"],
        "enrolled": device.get("enrolled_at") is not None,
        "revoked": device.get("revoked_at") is not None,
        "created_at": _iso(device.get("created_at")),
        "enrolled_at": _iso(device.get("enrolled_at")),
        "revoked_at": _iso(device.get("revoked_at")),
        "last_seen": _iso(device.get("last_seen_at")),
    }


def scan_public(scan: Document) -> dict[str, Any]:
    return {
        "scan_id": scan["_id"],
        "ticket_id": scan.get("ticket_id"),
        "gate": scan["gate"],
        "direction": scan["direction"],
        "verdict": scan["verdict"],
        "device_id": scan.get("device_id"),
        "scanned_at": _iso(scan.get("scanned_at")),
        "received_at": _iso(scan["received_at"]),
        "offline": scan.get("offline", False),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@router.post("/events/{event_id}/scans", dependencies=[SCANS.dependency])
async def scan(event_id: str, request: domain.ScanRequest, scans: ScansDep, device: ScannerDep) -> dict[str, Any]:
    if device is not None and request.gate not in device["gates"]:
        raise ApiError(403, "gate_not_assigned", f"This device is not assigned to gate {request.gate!r}.")
    return await scans.scan(event_id, request, device["_id"] if device else None)


@router.get("/events/{event_id}/attendance", dependencies=[OrganiserDep])
async def attendance(event_id: str, live: LiveDep) -> dict[str, Any]:
    return await live.current(event_id)


@router.get(
    "/events/{event_id}/attendance/stream",
    dependencies=[OrganiserDep],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def attendance_stream(event_id: str, live: LiveDep) -> StreamingResponse:
    """Server-Sent Events: the attendance now, then a new state within a second of every change."""

    async def frames() -> AsyncIterator[str]:
        async for state in live.watch(event_id, keep_alive=STREAM_KEEP_ALIVE_SECONDS):
            if state is None:
                yield ": keep-alive\n\n"
            else:
                yield f"event: attendance\ndata: {json.dumps(state, separators=(',', ':'))}\n\n"

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/events/{event_id}/snapshot")
async def snapshot(
    event_id: str, snapshots: SnapshotsDep, _: ScannerDep, since: Annotated[int, Query(ge=0, le=MAX_STORED_INT)] = 0
) -> dict[str, Any]:
    """Everything a door device needs offline, whole (since=0) or as the changes since its version."""
    return await snapshots.snapshot(event_id, since)


@router.get("/events/{event_id}/alerts", dependencies=[OrganiserDep])
async def alerts(
    event_id: str, snapshots: SnapshotsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    return await snapshots.alerts(event_id, limit)


@router.get("/events/{event_id}/no-shows", dependencies=[OrganiserDep])
async def no_shows(
    event_id: str, snapshots: SnapshotsDep, accept: Annotated[str | None, Header()] = None
) -> Any:
    absent = await snapshots.no_shows(event_id)
    if accept and "text/csv" in accept:
        return Response(
            spreadsheet.write_csv(NO_SHOW_COLUMNS, absent),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="no-shows-{event_id}.csv"'},
        )
    return absent


@router.get("/events/{event_id}/scans", dependencies=[OrganiserDep])
async def recent_scans(
    event_id: str, scans: ScansDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    return [scan_public(scan) for scan in await scans.recent(event_id, limit)]


@router.post("/events/{event_id}/devices", status_code=201, dependencies=[OrganiserDep])
async def create_device(
    event_id: str, spec: domain.DeviceCreate, devices: DevicesDep, request: Request
) -> dict[str, Any]:
    created = await devices.create(event_id, spec)
    # The phone opens this address from the dashboard's QR and swaps the one-time code for a token.
    enrolment_url = f"{str(request.base_url).rstrip('/')}/scan#enrol={created['enrolment_code']}"
    return {
        **device_public(created["device"]),
        "token": created["token"],
        "enrolment_code": created["enrolment_code"],
        "enrolment_url": enrolment_url,
        "enrolment_qr_svg": qr.svg(enrolment_url, box_size=6).decode(),
    }


@router.get("/devices/me")
async def whoami(device: Annotated[Document, Depends(this_device)]) -> dict[str, Any]:
    """The device holding this token: its event and gates, for the door app to set itself up."""
    return device_public(device)


@router.get("/events/{event_id}/devices", dependencies=[OrganiserDep])
async def list_devices(event_id: str, devices: DevicesDep) -> list[dict[str, Any]]:
    return [device_public(device) for device in await devices.for_event(event_id)]


@router.post("/devices/enrol", dependencies=[ENROLMENT.dependency])
async def enrol_device(enrolment: domain.DeviceEnrol, devices: DevicesDep) -> dict[str, Any]:
    enrolled = await devices.enrol(enrolment.enrolment_code)
    return {**device_public(enrolled["device"]), "token": enrolled["token"]}


@router.post("/devices/{device_id}/revoke", dependencies=[OrganiserDep])
async def revoke_device(device_id: str, devices: DevicesDep) -> dict[str, Any]:
    return device_public(await devices.revoke(device_id))
