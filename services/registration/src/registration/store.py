"""MongoDB access for the registration service: events, registrations, idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from plenary_kit.mongo import Document, Session


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.events = db["events"]
        self.registrations = db["registrations"]
        self.idempotency = db["idempotency_keys"]

    async def prepare(self) -> None:
        await self.events.create_index("slug", unique=True)
        await self.registrations.create_index([("event_id", ASCENDING), ("email_key", ASCENDING)], unique=True)
        await self.registrations.create_index("manage_token_hash", unique=True)
        await self.registrations.create_index(
            [("event_id", ASCENDING), ("status", ASCENDING), ("waitlist_position", ASCENDING)]
        )
        await self.idempotency.create_index("created_at", expireAfterSeconds=86400)

    async def event(self, event_id: str, session: Session | None = None) -> Document | None:
        return await self.events.find_one({"_id": event_id}, session=session)

    async def event_by_slug(self, slug: str) -> Document | None:
        return await self.events.find_one({"slug": slug})

    async def list_events(self) -> list[Document]:
        return await self.events.find({}).sort("starts_at", ASCENDING).to_list(500)

    async def insert_event(self, event: Document) -> None:
        await self.events.insert_one(event)

    async def take_place(self, event: Document, ticket_type: str, sessions: list[str], session: Session) -> bool:
        """Atomically take one place for the event, its ticket type and each session, or none at all."""
        condition: dict[str, Any] = {"_id": event["_id"], "places_left": {"$gt": 0}}
        for field in _limited_counters(event, ticket_type, sessions):
            condition[field] = {"$gt": 0}
        decrement = dict.fromkeys(["places_left", *_limited_counters(event, ticket_type, sessions)], -1)
        result = await self.events.update_one(condition, {"$inc": decrement}, session=session)
        return result.modified_count == 1

    async def release_place(self, event: Document, ticket_type: str, sessions: list[str], session: Session) -> None:
        increment = dict.fromkeys(["places_left", *_limited_counters(event, ticket_type, sessions)], 1)
        await self.events.update_one({"_id": event["_id"]}, {"$inc": increment}, session=session)

    async def next_waitlist_position(self, event_id: str, session: Session) -> int:
        event = await self.events.find_one_and_update(
            {"_id": event_id},
            {"$inc": {"waitlist_seq": 1}},
            projection={"waitlist_seq": 1},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        return int(event["waitlist_seq"]) if event else 0

    async def insert_registration(self, registration: Document, session: Session) -> None:
        await self.registrations.insert_one(registration, session=session)

    async def registration(self, registration_id: str, session: Session | None = None) -> Document | None:
        return await self.registrations.find_one({"_id": registration_id}, session=session)

    async def registration_by_token_hash(self, token_hash: str) -> Document | None:
        return await self.registrations.find_one({"manage_token_hash": token_hash}, projection={"_id": 1})

    async def registrations_for(self, event_id: str) -> list[Document]:
        return await self.registrations.find({"event_id": event_id}).sort("created_at", ASCENDING).to_list(None)

    async def first_waitlisted(self, event_id: str, session: Session) -> Document | None:
        return await self.registrations.find_one(
            {"event_id": event_id, "status": "waitlisted"},
            sort=[("waitlist_position", ASCENDING)],
            session=session,
        )

    async def set_status(
        self, registration_id: str, expected: str, changes: Document, session: Session
    ) -> bool:
        result = await self.registrations.update_one(
            {"_id": registration_id, "status": expected}, {"$set": changes}, session=session
        )
        return result.modified_count == 1

    async def idempotent_reply(self, key: str) -> Document | None:
        return await self.idempotency.find_one({"_id": key})

    async def remember_reply(
        self, key: str, fingerprint: str, status: int, body: Document, now: datetime, session: Session
    ) -> None:
        await self.idempotency.insert_one(
            {"_id": key, "fingerprint": fingerprint, "status": status, "body": body, "created_at": now},
            session=session,
        )


def _limited_counters(event: Document, ticket_type: str, sessions: list[str]) -> list[str]:
    """Counter fields that limit this choice: the ticket type's (when it has a cap) and each session's."""
    fields = [f"ticket_left.{ticket_type}"] if ticket_type in event.get("ticket_left", {}) else []
    return fields + [f"session_left.{code}" for code in sessions]
