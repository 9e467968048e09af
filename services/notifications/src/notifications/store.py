"""MongoDB access for the notifications service: the registration projection and outgoing messages."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from notifications.domain import Status
from plenary_kit.mongo import Document, Session

LIST_LIMIT = 500


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        # One document per registration holds every fact this service has seen about it,
        # from the registration and ticketing topics alike.
        self.registrations = db["registrations"]
        self.messages = db["messages"]

    async def prepare(self) -> None:
        # Sparse: sent and failed messages drop out of the index the sender scans.
        await self.messages.create_index("next_attempt_at", sparse=True)
        await self.messages.create_index([("registration_id", ASCENDING), ("created_at", ASCENDING)])
        await self.messages.create_index([("status", ASCENDING), ("created_at", DESCENDING)])

    async def projection(self, registration_id: str, session: Session) -> Document | None:
        return await self.registrations.find_one({"_id": registration_id}, session=session)

    async def record_facts(
        self, registration_id: str, facts: Document, session: Session, unless_known: Document | None = None
    ) -> Document:
        """Add facts to the registration's projection and return all of it.

        Every handler writes this one document, so two transactions bringing the two
        halves of a confirmation conflict and one retries: the later one always sees both.
        `unless_known` holds times recorded only where the projection has none yet.
        """
        update: Document = {"$set": facts}
        if unless_known:
            update["$min"] = unless_known
        projection = await self.registrations.find_one_and_update(
            {"_id": registration_id},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert projection is not None
        return projection

    async def erase(self, registration_id: str, at: datetime, session: Session) -> None:
        """Forget the delegate's name, address and manage token; the registration's other facts stay."""
        await self.registrations.update_one(
            {"_id": registration_id},
            {"$set": {"erased_at": at, "updated_at": at}, "$unset": {"snapshot.delegate": "", "manage_token": ""}},
            upsert=True,
            session=session,
        )

    async def erase_messages(self, registration_id: str, at: datetime, session: Session) -> list[Document]:
        """Strip the delegate from every stored message and fail those not yet sent; returns the failed ones.

        Ids, kinds, statuses and times stay, so the delivery log still counts every message.
        A message a sender holds already ("sending") is past stopping and settles as usual.
        """
        unsent = {"registration_id": registration_id, "status": {"$in": [Status.PENDING, Status.RETRYING]}}
        failed = await self.messages.find(unsent, projection={"kind": 1}, session=session).to_list(None)
        if failed:
            await self.messages.update_many(
                {"_id": {"$in": [message["_id"] for message in failed]}},
                {
                    "$set": {"status": Status.FAILED, "last_error": "erased", "failed_at": at, "updated_at": at},
                    "$unset": {"next_attempt_at": "", "claim": ""},
                },
                session=session,
            )
        await self.messages.update_many(
            {"registration_id": registration_id},
            {"$unset": {"content.delegate": "", "content.manage_url": ""}},
            session=session,
        )
        return failed

    async def enqueue(self, message: Document, session: Session) -> bool:
        """Insert the message unless its key exists; an upsert, so a repeat never aborts the transaction."""
        result = await self.messages.update_one(
            {"_id": message["_id"]}, {"$setOnInsert": message}, upsert=True, session=session
        )
        return result.upserted_id is not None

    async def claim_due(self, now: datetime, lease_until: datetime, claim: str) -> Document | None:
        """Take one due message for this sender, atomically; a message whose lease ran out is due again."""
        return await self.messages.find_one_and_update(
            {
                "next_attempt_at": {"$lte": now},
                "status": {"$in": [Status.PENDING, Status.RETRYING, Status.SENDING]},
            },
            {
                "$set": {"status": Status.SENDING, "claim": claim, "next_attempt_at": lease_until, "updated_at": now},
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def settle(
        self, key: str, claim: str, status: Status, changes: Document, session: Session | None = None
    ) -> bool:
        """Record the outcome of a send, only if this sender still holds the claim."""
        update: Document = {"$set": {"status": status, **changes}}
        if status in (Status.SENT, Status.FAILED):
            update["$unset"] = {"next_attempt_at": "", "claim": ""}
        result = await self.messages.update_one(
            {"_id": key, "status": Status.SENDING, "claim": claim}, update, session=session
        )
        return result.modified_count == 1

    async def message(self, key: str) -> Document | None:
        return await self.messages.find_one({"_id": key})

    async def messages_for(self, registration_id: str | None, status: str | None) -> list[Document]:
        query: Document = {}
        if registration_id is not None:
            query["registration_id"] = registration_id
        if status is not None:
            query["status"] = status
        cursor = self.messages.find(query, projection={"content": 0}).sort("created_at", DESCENDING)
        return await cursor.limit(LIST_LIMIT).to_list(LIST_LIMIT)
