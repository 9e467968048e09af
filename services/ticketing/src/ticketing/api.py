"""HTTP routes of the ticketing service: a delegate's ticket, its QR image, and events' public keys."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response

from plenary_kit import qr
from plenary_kit.auth import hash_token, is_admin
from plenary_kit.errors import ApiError
from plenary_kit.mongo import Document
from plenary_kit.web import AdminTokenDep, Authorization, ManageToken
from ticketing import domain
from ticketing.store import Store

router = APIRouter(prefix="/api/v1")

# A ticket code admits its holder: no shared cache may keep it.
PRIVATE: Final = {"Cache-Control": "private, no-store"}


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
QrBox = Annotated[int, Query(ge=domain.MIN_QR_BOX, le=domain.MAX_QR_BOX, description="pixels per QR module")]


def ticket_public(ticket: Document) -> dict[str, Any]:
    return {
        "ticket_id": ticket["_id"],
        "event_id": ticket["event_id"],
        "registration_id": ticket["registration_id"],
        "status": ticket["status"],
        "code": ticket["code"],
        "ticket_type": ticket["ticket_type"],
        "issued_at": ticket["issued_at"].isoformat(),
    }


def key_public(key: Document) -> dict[str, Any]:
    return {
        "key_id": key["_id"],
        "algorithm": domain.ALGORITHM,
        "public_key": domain.public_key_text(bytes(key["public_key"])),
        "created_at": key["created_at"].isoformat(),
        "active": key["active"],
    }


async def authorise_ticket(
    store: Store,
    ticket: Document | None,
    admin_token: str,
    authorization: str | None,
    manage_token: str | None,
    registration_id: str | None,
) -> None:
    """Organisers see every ticket; a delegate's manage token opens only the ticket of their registration.

    Ticketing learns a registration's manage-token hash with its ticket, so before the ticket
    exists a manage token cannot be checked; the caller then answers 404, which tells a wrong
    token nothing it did not already know.
    """
    if is_admin(authorization, admin_token):
        return
    if manage_token:
        presented = hash_token(manage_token)
        if ticket is not None and _same_hash(ticket.get("manage_token_hash"), presented):
            return
        holder = await store.registration_by_token_hash(presented)
        # The holder may be this very registration, its ticket issued since `ticket` was read.
        if holder is not None and holder != registration_id:
            raise ApiError(403, "forbidden", "This manage link belongs to another registration.")
        if ticket is None:
            return
    raise ApiError(401, "unauthenticated", "A manage token or organiser token is required.")


def _same_hash(stored: str | None, presented: str) -> bool:
    return stored is not None and hmac.compare_digest(stored.encode(), presented.encode())


async def _authorised_ticket(
    store: Store, ticket_id: str, admin_token: str, authorization: str | None, manage_token: str | None
) -> Document:
    ticket = await store.ticket(ticket_id)
    registration_id = ticket["registration_id"] if ticket is not None else None
    await authorise_ticket(store, ticket, admin_token, authorization, manage_token, registration_id)
    if ticket is None:
        raise ApiError(404, "ticket_not_found", "No such ticket.")
    return ticket


@router.get("/registrations/{registration_id}/ticket")
async def registration_ticket(
    registration_id: str,
    response: Response,
    store: StoreDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> dict[str, Any]:
    ticket = await store.ticket_for_registration(registration_id)
    await authorise_ticket(store, ticket, admin_token, authorization, manage_token, registration_id)
    if ticket is None:
        raise ApiError(404, "ticket_not_found", "No ticket has been issued for this registration yet.")
    response.headers.update(PRIVATE)
    return ticket_public(ticket)


@router.get("/tickets/{ticket_id}/qr.png", response_class=Response)
async def ticket_qr_png(
    ticket_id: str,
    store: StoreDep,
    admin_token: AdminTokenDep,
    size: QrBox = domain.DEFAULT_QR_BOX,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> Response:
    ticket = await _authorised_ticket(store, ticket_id, admin_token, authorization, manage_token)
    # Rendering takes milliseconds of CPU; off the event loop it does not delay the consumer.
    image = await asyncio.to_thread(qr.png, ticket["code"], size)
    return Response(image, media_type="image/png", headers=PRIVATE)


@router.get("/tickets/{ticket_id}/qr.svg", response_class=Response)
async def ticket_qr_svg(
    ticket_id: str,
    store: StoreDep,
    admin_token: AdminTokenDep,
    size: QrBox = domain.DEFAULT_QR_BOX,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> Response:
    ticket = await _authorised_ticket(store, ticket_id, admin_token, authorization, manage_token)
    image = await asyncio.to_thread(qr.svg, ticket["code"], size)
    return Response(image, media_type="image/svg+xml", headers=PRIVATE)


@router.get("/events/{event_id}/keys")
async def event_keys(event_id: str, store: StoreDep) -> dict[str, Any]:
    return {"event_id": event_id, "keys": [key_public(key) for key in await store.public_keys(event_id)]}
