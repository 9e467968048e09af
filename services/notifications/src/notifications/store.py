"""MongoDB access for the notifications service: the registration projection and outgoing messages."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from notifications.domain import DUE_FIELDS, Status
from plenary_kit.mongo import Document, Session, in_transaction, insert_missing, set_fields

LIST_LIMIT = 500


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._client = db.client
        # One document per registration holds every fact this service has seen about it,
        # from the registration and ticketing topics alike.
        self.registrations = db["registrations"]
        self.messages = db["messages"]
        # One small document per send-rate window, shared by every sender of the service (rate.py).
        self.send_windows = db["send_windows"]

    async def prepare(self) -> None:
        # Sparse: sent and failed messages drop out of the index the sender scans.
        await self.messages.create_index("next_attempt_at", sparse=True)
        await self.messages.create_index([("registration_id", ASCENDING), ("created_at", ASCENDING)])
        await self.messages.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
        await self.send_windows.create_index("expires_at", expireAfterSeconds=0)
        for field in DUE_FIELDS.values():
            # Sparse: only registrations with a reminder or thank-you still to come are in it.
            await self.registrations.create_index(field, sparse=True)

    async def projection(self, registration_id: str, session: Session | None = None) -> Document | None:
        return await self.registrations.find_one({"_id": registration_id}, session=session)

    async def record_facts(
        self,
        registration_id: str,
        facts: Document,
        session: Session,
        unless_known: Document | None = None,
        forget: list[str] | None = None,
    ) -> Document:
        """Add facts to the registration's projection and return all of it.

        Every handler writes this one document, so two transactions bringing the two
        halves of a confirmation conflict and one retries: the later one always sees both.
        `unless_known` holds times recorded only where the projection has none yet;
        `forget` names fields to remove (a cancelled delegate's reminder time).
        """
        update: Document = {"$set": facts}
        if unless_known:
            update["$min"] = unless_known
        if forget:
            update["$unset"] = dict.fromkeys(forget, "")
        projection = await self.registrations.find_one_and_update(
            {"_id": registration_id},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert projection is not None
        return projection

    async def record_many(
        self, facts: dict[str, Document], session: Session, known: dict[str, Document] | None = None
    ) -> dict[str, Document]:
        """Add facts to several registrations' projections; returns all of each.

        `known`: the projections as just read in this transaction, if the caller has read them.
        As `record_facts`, one write per projection, so a concurrent transaction writing the same
        registration conflicts with this one and one of the two retries.
        """
        return await set_fields(self.registrations, facts, session, existing=known)

    async def projections(self, registration_ids: list[str], session: Session | None = None) -> dict[str, Document]:
        cursor = self.registrations.find({"_id": {"$in": registration_ids}}, session=session)
        return {row["_id"]: row async for row in cursor}

    async def erase(self, registration_id: str, at: datetime, session: Session) -> None:
        """Forget the delegate's name, address and manage token; the registration's other facts stay."""
        await self.registrations.update_one(
            {"_id": registration_id},
            {
                "$set": {"erased_at": at, "updated_at": at},
                "$unset": {"snapshot.delegate": "", "manage_token": "", **dict.fromkeys(DUE_FIELDS.values(), "")},
            },
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
        return bool(await self.enqueue_many([message], session))

    async def enqueue_many(self, messages: list[Document], session: Session) -> set[str]:
        """Insert each message whose key does not exist yet; returns the keys inserted."""
        if not messages:
            return set()
        return {str(key) for key in await insert_missing(self.messages, messages, session)}

    async def due_registrations(self, field: str, now: datetime, limit: int) -> list[Document]:
        """Registrations whose reminder or thank-you (by its due field) has fallen due."""
        cursor = self.registrations.find({field: {"$lte": now}}, projection={field: 1}).sort(field, ASCENDING)
        return await cursor.limit(limit).to_list(limit)

    async def clear_due(self, registration_id: str, field: str, seen: datetime, session: Session) -> bool:
        """Mark a due time as dealt with, unless it changed since it was read (the event moved)."""
        result = await self.registrations.update_one(
            {"_id": registration_id, field: seen}, {"$unset": {field: ""}}, session=session
        )
        return result.modified_count == 1

    async def withdraw_claimed(self, key: str, claim: str) -> bool:
        """Drop a claimed reminder or thank-you that turned out to be no longer due when its time came."""
        result = await self.messages.delete_one({"_id": key, "status": Status.SENDING, "claim": claim})
        return result.deleted_count == 1

    async def claim_due(self, now: datetime, lease_until: datetime, claim: str, limit: int) -> list[Document]:
        """Take up to `limit` due messages for this sender; a message whose lease ran out is due again.

        Three round trips for the whole batch: find candidates, claim them with one conditional
        update that repeats the due test (so of two senders racing for a message, one gets it),
        and read back the ones this claim won. The search costs in proportion to every message
        due (the embedded document server reads the whole range before it sorts and limits), so
        the sender looks here only when it has no fresh messages named to it (see `claim`).
        """
        candidates = await (
            self.messages.find(_due(now), projection={"_id": 1}).sort("next_attempt_at", ASCENDING).limit(limit)
        ).to_list(limit)
        if not candidates:
            return []
        return await self.claim([candidate["_id"] for candidate in candidates], now, lease_until, claim)

    async def claim(self, keys: list[str], now: datetime, lease_until: datetime, claim: str) -> list[Document]:
        """Take those of these messages that are due: two look-ups by key and a commit, whatever else is waiting.

        In a transaction, though one conditional update would be atomic enough. A sender that dies
        while marking a message sent leaves that transaction open on the server, holding the message,
        until the server reaps it (after a minute); the message falls due again when its lease ends.
        A transaction's write that meets it fails at once and is retried, and each of its statements
        lets the server reap what has expired. An update outside a transaction waits instead, and on
        the embedded document server it waits holding the whole collection, with nothing left to
        reap the stale transaction: every sender stops.
        """

        async def work(session: Session) -> list[Document]:
            await self.messages.update_many(
                {"_id": {"$in": keys}, **_due(now)},
                {
                    "$set": {
                        "status": Status.SENDING, "claim": claim, "next_attempt_at": lease_until, "updated_at": now
                    },
                    "$inc": {"attempts": 1},
                },
                session=session,
            )
            return await self.messages.find({"_id": {"$in": keys}, "claim": claim}, session=session).to_list(len(keys))

        return await in_transaction(self._client, work)

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

    async def message(self, key: str, session: Session | None = None) -> Document | None:
        return await self.messages.find_one({"_id": key}, session=session)

    async def messages_for(
        self, registration_id: str | None, status: str | None, kind: str | None = None
    ) -> list[Document]:
        query: Document = {}
        if registration_id is not None:
            query["registration_id"] = registration_id
        if status is not None:
            query["status"] = status
        if kind is not None:
            query["kind"] = kind
        cursor = self.messages.find(query, projection={"content": 0}).sort("created_at", DESCENDING)
        return await cursor.limit(LIST_LIMIT).to_list(LIST_LIMIT)


def _due(now: datetime) -> Document:
    """A message that may be sent now: queued or retrying and due, or sending with its lease run out."""
    return {
        "next_attempt_at": {"$lte": now},
        "status": {"$in": [Status.PENDING, Status.RETRYING, Status.SENDING]},
    }
