"""MongoDB access for the ticketing service: tickets, signing keys and cancelled registrations."""

from __future__ import annotations

import contextlib
from datetime import datetime

from bson import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from plenary_kit.mongo import Document, Session
from ticketing.domain import ALGORITHM, RevocationReason, SigningKey, TicketStatus


class CreatedConcurrently(PyMongoError):
    """A unique insert lost to another transaction that committed first.

    It carries the transient label so `with_transaction` runs the whole transaction again,
    and the retry reads the winner's document instead of inserting its own.
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} was created concurrently", error_labels=["TransientTransactionError"])


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.tickets = db["tickets"]
        # Private keys are stored raw (unencrypted) for now; see insert_key.
        self.signing_keys = db["signing_keys"]
        # Registrations cancelled before or after their ticket: a late confirmation must not issue one.
        self.cancelled = db["cancelled_registrations"]

    async def prepare(self) -> None:
        # One valid ticket per registration, however often its confirmation is delivered; a
        # registration whose ticket type changed also keeps its revoked earlier ticket.
        await self.tickets.create_index(
            "registration_id",
            name="one_valid_ticket_per_registration",
            unique=True,
            partialFilterExpression={"status": TicketStatus.VALID},
        )
        await self._drop_unique_registration_index()
        await self.tickets.create_index("registration_id")
        await self.tickets.create_index(
            "manage_token_hash", partialFilterExpression={"manage_token_hash": {"$type": "string"}}
        )
        # One active key per event, even when two first tickets are issued at the same moment.
        await self.signing_keys.create_index(
            "event_id", name="one_active_key_per_event", unique=True, partialFilterExpression={"active": True}
        )
        await self.signing_keys.create_index([("event_id", ASCENDING), ("created_at", ASCENDING)])

    async def _drop_unique_registration_index(self) -> None:
        """Databases made before tickets could be reissued allow one ticket per registration, ever."""
        index = (await self.tickets.index_information()).get("registration_id_1")
        if index is not None and index.get("unique"):
            # Another instance starting at the same moment may have dropped it first.
            with contextlib.suppress(OperationFailure):
                await self.tickets.drop_index("registration_id_1")

    async def ticket(self, ticket_id: str) -> Document | None:
        return await self.tickets.find_one({"_id": ticket_id})

    async def ticket_for_registration(self, registration_id: str, session: Session | None = None) -> Document | None:
        """The registration's ticket: its valid one, else the latest revoked one."""
        valid = await self.valid_ticket(registration_id, session)
        if valid is not None:
            return valid
        return await self.tickets.find_one(
            {"registration_id": registration_id}, sort=[("issued_at", DESCENDING)], session=session
        )

    async def has_ticket(self, registration_id: str, session: Session) -> bool:
        """Whether the registration was ever issued a ticket, valid or revoked since."""
        query = {"registration_id": registration_id}
        return await self.tickets.find_one(query, projection={"_id": 1}, session=session) is not None

    async def valid_ticket(self, registration_id: str, session: Session | None = None) -> Document | None:
        return await self.tickets.find_one(
            {"registration_id": registration_id, "status": TicketStatus.VALID}, session=session
        )

    async def forget_manage_token(self, registration_id: str, session: Session) -> None:
        """An erased delegate's manage link stops opening their tickets."""
        await self.tickets.update_many(
            {"registration_id": registration_id}, {"$unset": {"manage_token_hash": ""}}, session=session
        )

    async def registration_by_token_hash(self, token_hash: str) -> str | None:
        """The registration whose manage token has this hash, if it has a ticket."""
        found = await self.tickets.find_one({"manage_token_hash": token_hash}, projection={"registration_id": 1})
        return found["registration_id"] if found else None

    async def insert_ticket(self, ticket: Document, session: Session) -> None:
        try:
            await self.tickets.insert_one(ticket, session=session)
        except DuplicateKeyError as exc:
            raise CreatedConcurrently("ticket") from exc

    async def revoke_ticket(
        self, registration_id: str, reason: RevocationReason, at: datetime, session: Session
    ) -> Document | None:
        """Revoke the registration's valid ticket; None when there is none (or it is revoked already)."""
        return await self.tickets.find_one_and_update(
            {"registration_id": registration_id, "status": TicketStatus.VALID},
            {"$set": {"status": TicketStatus.REVOKED, "revoked_at": at, "reason": reason}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )

    async def record_cancellation(
        self, registration_id: str, event_id: str, reason: RevocationReason, at: datetime, session: Session
    ) -> None:
        await self.cancelled.update_one(
            {"_id": registration_id},
            {"$setOnInsert": {"event_id": event_id, "reason": reason, "cancelled_at": at}},
            upsert=True,
            session=session,
        )

    async def is_cancelled(self, registration_id: str, session: Session) -> bool:
        found = await self.cancelled.find_one({"_id": registration_id}, projection={"_id": 1}, session=session)
        return found is not None

    async def active_key(self, event_id: str, session: Session) -> SigningKey | None:
        found = await self.signing_keys.find_one({"event_id": event_id, "active": True}, session=session)
        return _signing_key(found) if found else None

    async def insert_key(self, key: SigningKey, session: Session) -> None:
        """Save a new signing key. The private key is stored raw, unencrypted, until encryption at rest is added."""
        # A clash on the _id (a key id another event already uses) retries too, with a fresh key.
        try:
            await self.signing_keys.insert_one(
                {
                    "_id": key.key_id,
                    "event_id": key.event_id,
                    "algorithm": ALGORITHM,
                    "public_key": Binary(key.public_key),
                    "private_key": Binary(key.private_key),
                    "created_at": key.created_at,
                    "active": key.active,
                },
                session=session,
            )
        except DuplicateKeyError as exc:
            raise CreatedConcurrently("signing key") from exc

    async def public_keys(self, event_id: str) -> list[Document]:
        """The event's keys, oldest first, without their private halves."""
        cursor = self.signing_keys.find({"event_id": event_id}, projection={"private_key": 0})
        return await cursor.sort("created_at", ASCENDING).to_list(100)


def _signing_key(row: Document) -> SigningKey:
    return SigningKey(
        key_id=row["_id"],
        event_id=row["event_id"],
        public_key=bytes(row["public_key"]),
        private_key=bytes(row["private_key"]),
        created_at=row["created_at"],
        active=row["active"],
    )
