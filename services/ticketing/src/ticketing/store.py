"""MongoDB access for the ticketing service: tickets, sealed signing keys, revocations and what tickets print."""

from __future__ import annotations

import contextlib
from datetime import datetime

from bson import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, insert_all
from ticketing.domain import ALGORITHM, RevocationReason, SigningKey, TicketStatus
from ticketing.vault import Vault

log = get_logger(__name__)


class CreatedConcurrently(PyMongoError):
    """A unique insert lost to another transaction that committed first.

    It carries the transient label so `with_transaction` runs the whole transaction again,
    and the retry reads the winner's document instead of inserting its own.
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} was created concurrently", error_labels=["TransientTransactionError"])


class Store:
    def __init__(self, db: AsyncDatabase[Document], vault: Vault) -> None:
        self.tickets = db["tickets"]
        # Private keys are kept sealed under the master key (vault.py), never raw.
        self.signing_keys = db["signing_keys"]
        self._vault = vault
        # Registrations cancelled before or after their ticket: a late confirmation must not issue one.
        self.cancelled = db["cancelled_registrations"]
        # Per event: the newest revocation version, which devices ask for deltas against.
        self.revocation_versions = db["revocation_versions"]
        # Per event: what a printed ticket shows (title, venue, dates), as registration last told us.
        self.events = db["events"]
        # Per event: session codes in the order they were numbered; the number is the entitlement bit.
        self.session_numbers = db["session_numbers"]

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
        await self.tickets.create_index(
            [("event_id", ASCENDING), ("revocation_version", ASCENDING)],
            name="revocations_by_version",
            partialFilterExpression={"revocation_version": {"$exists": True}},
        )
        await self._seal_plain_keys()
        await self._version_earlier_revocations()
        await self._check_master_key()

    async def _seal_plain_keys(self) -> None:
        """Keys stored raw before encryption at rest are sealed in place, once; running twice changes nothing."""
        async for row in self.signing_keys.find({"private_key": {"$exists": True}}):
            sealed = self._vault.seal(bytes(row["private_key"]), row["event_id"], row["_id"])
            await self.signing_keys.update_one(
                {"_id": row["_id"], "private_key": row["private_key"]},
                {
                    "$set": {"private_key_sealed": Binary(sealed), "sealed_by": self._vault.master_id},
                    "$unset": {"private_key": ""},
                },
            )
            log.info("signing_key_sealed", key_id=row["_id"], event_id=row["event_id"])

    async def _version_earlier_revocations(self) -> None:
        """Tickets revoked before revocation lists existed join their event's list as version 1."""
        query = {"status": TicketStatus.REVOKED, "revocation_version": {"$exists": False}}
        for event_id in await self.tickets.distinct("event_id", query):
            await self.revocation_versions.update_one({"_id": event_id}, {"$max": {"version": 1}}, upsert=True)
            await self.tickets.update_many({**query, "event_id": event_id}, {"$set": {"revocation_version": 1}})

    async def _check_master_key(self) -> None:
        """Refuse to start with a master key that cannot open the keys: every new ticket would fail."""
        row = await self.signing_keys.find_one({"active": True, "private_key_sealed": {"$exists": True}})
        if row is not None:
            _signing_key(row, self._vault)

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

    async def ticketed_among(self, registration_ids: list[str], session: Session) -> set[str]:
        """Those of the registrations ever issued a ticket, valid or revoked since."""
        cursor = self.tickets.find(
            {"registration_id": {"$in": registration_ids}}, projection={"registration_id": 1}, session=session
        )
        return {row["registration_id"] async for row in cursor}

    async def valid_ticket(self, registration_id: str, session: Session | None = None) -> Document | None:
        return await self.tickets.find_one(
            {"registration_id": registration_id, "status": TicketStatus.VALID}, session=session
        )

    async def forget_holder(self, registration_id: str, session: Session) -> None:
        """An erased delegate's manage link stops opening their tickets, and their name leaves them."""
        await self.tickets.update_many(
            {"registration_id": registration_id},
            {"$unset": {"manage_token_hash": "", "holder_name": ""}},
            session=session,
        )

    async def rename_holder(self, registration_id: str, name: str, session: Session) -> None:
        """A corrected name prints on the ticket; the code, which holds no name, stays as it is."""
        await self.tickets.update_many(
            {"registration_id": registration_id}, {"$set": {"holder_name": name}},
            session=session,
        )

    async def registration_by_token_hash(self, token_hash: str) -> str | None:
        """The registration whose manage token has this hash, if it has a ticket."""
        found = await self.tickets.find_one({"manage_token_hash": token_hash}, projection={"registration_id": 1})
        return found["registration_id"] if found else None

    async def insert_tickets(self, tickets: list[Document], session: Session) -> None:
        try:
            await insert_all(self.tickets, tickets, session)
        except DuplicateKeyError as exc:
            raise CreatedConcurrently("ticket") from exc

    async def revoke_ticket(
        self, registration_id: str, reason: RevocationReason, at: datetime, session: Session
    ) -> Document | None:
        """Revoke the registration's valid ticket, as the next entry of its event's revocation list.

        None when there is none (or it is revoked already).
        """
        valid = await self.valid_ticket(registration_id, session)
        if valid is None:
            return None
        version = await self._next_revocation_version(valid["event_id"], session)
        return await self.tickets.find_one_and_update(
            {"_id": valid["_id"], "status": TicketStatus.VALID},
            {
                "$set": {
                    "status": TicketStatus.REVOKED, "revoked_at": at, "reason": reason, "revocation_version": version
                }
            },
            return_document=ReturnDocument.AFTER,
            session=session,
        )

    async def _next_revocation_version(self, event_id: str, session: Session) -> int:
        try:
            counter = await self.revocation_versions.find_one_and_update(
                {"_id": event_id}, {"$inc": {"version": 1}}, upsert=True,
                return_document=ReturnDocument.AFTER, session=session,
            )
        except DuplicateKeyError as exc:
            raise CreatedConcurrently("revocation list") from exc
        if counter is None:
            raise RuntimeError("an upsert returned no document")
        return int(counter["version"])

    async def revocations(self, event_id: str, since: int, limit: int) -> tuple[int, list[Document]]:
        """The event's current revocation version, and up to `limit` revocations after `since`, oldest first.

        The version is read first: a revocation commits its ticket and its version together, so
        every revocation up to that version is visible to the read that follows.
        """
        counter = await self.revocation_versions.find_one({"_id": event_id})
        current = int(counter["version"]) if counter else 0
        cursor = self.tickets.find(
            {"event_id": event_id, "revocation_version": {"$gt": since, "$lte": current}},
            projection={"_id": 1, "reason": 1, "revoked_at": 1, "revocation_version": 1},
        )
        rows = await cursor.sort("revocation_version", ASCENDING).limit(limit).to_list(limit)
        return current, rows

    async def save_event(self, details: Document, seen_at: datetime, session: Session) -> None:
        """Keep the event's printable details as of the newest registration event seen; older ones change nothing."""
        known = await self.events.find_one({"_id": details["id"]}, projection={"seen_at": 1}, session=session)
        if known is not None and known["seen_at"] >= seen_at:
            return
        row = {key: value for key, value in details.items() if key != "id"}
        await self.events.replace_one(
            {"_id": details["id"]}, {**row, "seen_at": seen_at}, upsert=True, session=session
        )

    async def event(self, event_id: str, session: Session | None = None) -> Document | None:
        return await self.events.find_one({"_id": event_id}, session=session)

    async def numbered_sessions(self, event_id: str, session: Session | None = None) -> list[str]:
        found = await self.session_numbers.find_one({"_id": event_id}, session=session)
        return list(found["codes"]) if found else []

    async def number_sessions(self, event_id: str, codes: list[str], session: Session) -> None:
        """Append codes to the event's numbering; only ever appended, so numbers never move."""
        try:
            await self.session_numbers.update_one(
                {"_id": event_id}, {"$push": {"codes": {"$each": codes}}}, upsert=True, session=session
            )
        except DuplicateKeyError as exc:
            raise CreatedConcurrently("session numbering") from exc

    async def record_cancellation(
        self, registration_id: str, event_id: str, reason: RevocationReason, at: datetime, session: Session
    ) -> None:
        await self.cancelled.update_one(
            {"_id": registration_id},
            {"$setOnInsert": {"event_id": event_id, "reason": reason, "cancelled_at": at}},
            upsert=True,
            session=session,
        )

    async def cancelled_among(self, registration_ids: list[str], session: Session) -> set[str]:
        """Those of the registrations cancelled or erased, whose tickets must not be issued."""
        cursor = self.cancelled.find({"_id": {"$in": registration_ids}}, projection={"_id": 1}, session=session)
        return {row["_id"] async for row in cursor}

    async def active_key(self, event_id: str, session: Session) -> SigningKey | None:
        found = await self.signing_keys.find_one({"event_id": event_id, "active": True}, session=session)
        return _signing_key(found, self._vault) if found else None

    async def insert_key(self, key: SigningKey, session: Session) -> None:
        """Save a new signing key, its private half sealed under the master key."""
        # A clash on the _id (a key id another event already uses) retries too, with a fresh key.
        try:
            await self.signing_keys.insert_one(
                {
                    "_id": key.key_id,
                    "event_id": key.event_id,
                    "algorithm": ALGORITHM,
                    "public_key": Binary(key.public_key),
                    "private_key_sealed": Binary(self._vault.seal(key.private_key, key.event_id, key.key_id)),
                    "sealed_by": self._vault.master_id,
                    "created_at": key.created_at,
                    "active": key.active,
                },
                session=session,
            )
        except DuplicateKeyError as exc:
            raise CreatedConcurrently("signing key") from exc

    async def retire_key(self, key_id: str, at: datetime, session: Session) -> None:
        """The key signs no more tickets; it stays published so the tickets it signed still verify."""
        await self.signing_keys.update_one(
            {"_id": key_id, "active": True}, {"$set": {"active": False, "retired_at": at}}, session=session
        )

    async def public_keys(self, event_id: str) -> list[Document]:
        """The event's keys, oldest first, without their private halves."""
        cursor = self.signing_keys.find(
            {"event_id": event_id}, projection={"private_key": 0, "private_key_sealed": 0, "sealed_by": 0}
        )
        return await cursor.sort("created_at", ASCENDING).to_list(None)


def _signing_key(row: Document, vault: Vault) -> SigningKey:
    if "private_key_sealed" in row:
        private = vault.unseal(bytes(row["private_key_sealed"]), row["event_id"], row["_id"], row.get("sealed_by"))
    else:
        # Stored raw before keys were sealed, and not yet sealed by this instance's start.
        private = bytes(row["private_key"])
    return SigningKey(
        key_id=row["_id"],
        event_id=row["event_id"],
        public_key=bytes(row["public_key"]),
        private_key=private,
        created_at=row["created_at"],
        active=row["active"],
    )

