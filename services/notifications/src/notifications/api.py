"""HTTP routes of the notifications service: the organisers' delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from notifications.domain import Status
from notifications.store import Store
from plenary_kit.mongo import Document
from plenary_kit.web import OrganiserDep

router = APIRouter(prefix="/api/v1")


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]


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
    }


@router.get("/notifications", dependencies=[OrganiserDep])
async def list_notifications(
    store: StoreDep,
    registration_id: Annotated[str | None, Query(max_length=200)] = None,
    status: Status | None = None,
) -> list[dict[str, Any]]:
    """The delivery log, newest first: one row per message, with its status and last error."""
    messages = await store.messages_for(registration_id, status)
    return [notification_public(message) for message in messages]
