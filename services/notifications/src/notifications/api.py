"""HTTP routes of the notifications service: the organisers' delivery log and resend."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from notifications.domain import Kind, Status
from notifications.handlers import Notifications, ResendRefused
from notifications.store import Store
from plenary_kit import mongo
from plenary_kit.errors import ApiError
from plenary_kit.mongo import Document, Session
from plenary_kit.web import OrganiserDep, correlation_id

router = APIRouter(prefix="/api/v1")


async def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def get_notifications(request: Request) -> Notifications:
    return request.app.state.notifications  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
NotificationsDep = Annotated[Notifications, Depends(get_notifications)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def notification_public(message: Document) -> dict[str, Any]:
    return {
        "id": message["_id"],
        "registration_id": message["registration_id"],
        "kind": message["kind"],
        "status": message["status"],
        "attempts": message["attempts"],
        "last_error": message.get("last_error"),
        "created_at": message["created_at"].isoformat(),
        "sent_at": _iso(message.get("sent_at")),
        "next_attempt_at": _iso(message.get("next_attempt_at")) if message["status"] == Status.RETRYING else None,
        # Reminders and thank-yous wait "pending" until this time.
        "due_at": _iso(message.get("due_at")),
    }


@router.get("/notifications", dependencies=[OrganiserDep])
async def list_notifications(
    store: StoreDep,
    registration_id: Annotated[str | None, Query(max_length=200)] = None,
    status: Status | None = None,
    kind: Kind | None = None,
) -> list[dict[str, Any]]:
    """The delivery log, newest first: one row per message, with its status and last error."""
    messages = await store.messages_for(registration_id, status, kind)
    return [notification_public(message) for message in messages]


@router.post("/notifications/{message_id}/resend", dependencies=[OrganiserDep], status_code=202)
async def resend_notification(
    request: Request,
    notifications: NotificationsDep,
    message_id: Annotated[str, Path(max_length=400)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> dict[str, Any]:
    """Send a sent or failed message again, to the delegate's current address; 202 with the new message.

    The same Idempotency-Key twice queues one message and answers with it both times.
    """
    runtime = request.app.state.runtime
    correlation = correlation_id()

    async def work(session: Session) -> Document:
        return await notifications.resend(message_id, idempotency_key, correlation, session)

    try:
        queued = await mongo.in_transaction(runtime.client, work)
    except ResendRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message) from refused
    return notification_public(queued)
