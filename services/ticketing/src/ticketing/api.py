"""HTTP routes of the ticketing service: tickets, their QR images and PDFs, keys, revocations, reissue."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response

from plenary_kit import qr
from plenary_kit.auth import hash_token, is_admin
from plenary_kit.errors import ApiError
from plenary_kit.mongo import Document
from plenary_kit.web import (
    MAX_STORED_INT,
    AdminTokenDep,
    Authorization,
    ManageToken,
    OrganiserDep,
    correlation_id,
)
from ticketing import domain, printable
from ticketing.handlers import Tickets
from ticketing.store import Store

router = APIRouter(prefix="/api/v1")

# A ticket code admits its holder: no shared cache may keep it.
PRIVATE: Final = {"Cache-Control": "private, no-store"}


async def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def get_tickets(request: Request) -> Tickets:
    return request.app.state.tickets  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
TicketsDep = Annotated[Tickets, Depends(get_tickets)]
QrBox = Annotated[int, Query(ge=domain.MIN_QR_BOX, le=domain.MAX_QR_BOX, description="pixels per QR module")]


def ticket_public(ticket: Document) -> dict[str, Any]:
    return {
        "ticket_id": ticket["_id"],
        "event_id": ticket["event_id"],
        "registration_id": ticket["registration_id"],
        "status": ticket["status"],
        "code": ticket["code"],
        "ticket_type": ticket["ticket_type"],
        "sessions": ticket.get("sessions", []),
        "key_id": ticket["key_id"],
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


@router.get("/tickets/{ticket_id}/ticket.pdf", response_class=Response)
async def ticket_pdf(
    ticket_id: str,
    store: StoreDep,
    admin_token: AdminTokenDep,
    authorization: Authorization = None,
    manage_token: ManageToken = None,
) -> Response:
    """The ticket to print: event, date, venue, delegate, ticket type, workshops and the QR code."""
    ticket = await _authorised_ticket(store, ticket_id, admin_token, authorization, manage_token)
    if ticket["status"] != domain.TicketStatus.VALID:
        raise ApiError(409, "ticket_revoked", "This ticket has been revoked; it cannot be printed.")
    event = await store.event(ticket["event_id"]) or {}
    titles = {s["code"]: s["title"] for s in event.get("sessions", [])}
    printed = printable.PrintedTicket(
        event_title=event.get("title", "Your event"),
        venue=event.get("venue", ""),
        starts_at=event.get("starts_at"),
        ends_at=event.get("ends_at"),
        timezone=event.get("timezone", "UTC"),
        delegate_name=ticket.get("holder_name"),
        ticket_type=ticket["ticket_type"],
        code=ticket["code"],
        ticket_id=ticket["_id"],
        workshops=[titles.get(code, code) for code in ticket.get("sessions", [])],
    )
    document = await asyncio.to_thread(printable.render, printed)
    headers = {**PRIVATE, "Content-Disposition": f'inline; filename="ticket-{ticket["_id"]}.pdf"'}
    return Response(document, media_type="application/pdf", headers=headers)


@router.post("/registrations/{registration_id}/ticket/reissue", status_code=201, dependencies=[OrganiserDep])
async def reissue_ticket(registration_id: str, response: Response, tickets: TicketsDep) -> dict[str, Any]:
    """A new code for a lost or shared ticket; the old code is revoked and `ticket.revoked`/`ticket.issued` follow."""
    ticket = await tickets.reissue_for_organiser(registration_id, correlation_id())
    response.headers.update(PRIVATE)
    return ticket_public(ticket)


@router.get("/events/{event_id}/keys")
async def event_keys(event_id: str, store: StoreDep) -> dict[str, Any]:
    """Public keys, oldest first (a rotated key stays, inactive), and the session numbering codes refer to."""
    return {
        "event_id": event_id,
        "keys": [key_public(key) for key in await store.public_keys(event_id)],
        "sessions": await store.numbered_sessions(event_id),
    }


@router.post("/events/{event_id}/keys/rotate", status_code=201, dependencies=[OrganiserDep])
async def rotate_key(event_id: str, tickets: TicketsDep) -> dict[str, Any]:
    """New tickets are signed with a fresh key from now on; codes signed earlier still verify."""
    key = await tickets.rotate_key(event_id)
    return {
        "key_id": key.key_id,
        "algorithm": domain.ALGORITHM,
        "public_key": key.public_key_text,
        "created_at": key.created_at.isoformat(),
        "active": key.active,
    }


Since = Annotated[
    int,
    Query(ge=0, le=MAX_STORED_INT, description="the version the device already holds; 0 for the whole list"),
]
Limit = Annotated[int, Query(ge=1, le=domain.MAX_REVOCATIONS_PAGE, description="revocations per page")]


@router.get("/events/{event_id}/revocations", dependencies=[OrganiserDep])
async def revocations(
    event_id: str, store: StoreDep, since: Since = 0, limit: Limit = domain.MAX_REVOCATIONS_PAGE
) -> dict[str, Any]:
    """The event's revoked tickets after version `since`; ask again with the returned version until complete."""
    current, rows = await store.revocations(event_id, since, limit)
    page = domain.revocation_page(event_id, since, current, rows, limit)
    return {
        "event_id": page.event_id,
        "since": page.since,
        "version": page.version,
        "complete": page.complete,
        "revoked": [
            {
                "ticket_id": row["_id"],
                "reason": row["reason"],
                "revoked_at": row["revoked_at"].isoformat(),
                "version": row["revocation_version"],
            }
            for row in page.rows
        ],
    }
