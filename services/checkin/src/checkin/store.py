"""MongoDB access for the checkin service: ticket projection, keys, admissions, scans, counters, devices."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from checkin.domain import ERASED_NAME, CounterKey
from plenary_kit.mongo import Document, Session, by_id, set_fields

# last_seen is for the organiser's eyes; writing it on every scan would only add load at the doors.
LAST_SEEN_RESOLUTION = timedelta(seconds=10)

# Each figure is spread over this many documents, summed when read: concurrent scans then rarely
# update the same document, so their transactions rarely conflict and retry.
COUNTER_SHARDS = 16


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.tickets = db["tickets"]
        self.registrations = db["registrations"]
        self.keys = db["keys"]
        self.admissions = db["admissions"]
        self.scans = db["scans"]
        self.counters = db["counters"]
        self.devices = db["devices"]
        self.events = db["events"]
        self.versions = db["versions"]
        self.room_admissions = db["room_admissions"]
        self.alerts = db["alerts"]

    async def prepare(self) -> None:
        await self.tickets.create_index("registration_id")
        await self.tickets.create_index([("event_id", ASCENDING), ("version", ASCENDING)])
        await self.registrations.create_index([("event_id", ASCENDING), ("version", ASCENDING)])
        await self.room_admissions.create_index("event_id")
        await self.alerts.create_index([("event_id", ASCENDING), ("raised_at", DESCENDING)])
        await self.keys.create_index("event_id")
        # Admissions carry the snapshot version of their last change, so a door phone's delta sync
        # gets only those that moved since it last asked.
        await self.admissions.create_index([("event_id", ASCENDING), ("version", ASCENDING)])
        if "event_id_1" in await self.admissions.index_information():
            await self.admissions.drop_index("event_id_1")
        # The nonce index is what makes a retried scan come back with its first answer, recorded once.
        await self.scans.create_index("nonce_key", unique=True)
        await self.scans.create_index([("event_id", ASCENDING), ("received_at", DESCENDING)])
        await self.scans.create_index("ticket_id")
        await self.counters.create_index("event_id")
        await self.devices.create_index("token_hashes", unique=True)
        await self.devices.create_index("enrolment_code_hash", unique=True)
        await self.devices.create_index("event_id")

    # Projection of tickets and registrations, written by the event handlers.

    async def save_event(self, event: Document, session: Session) -> None:
        await self.events.update_one({"_id": event["id"]}, {"$set": event}, upsert=True, session=session)

    async def event(self, event_id: str) -> Document | None:
        return await self.events.find_one({"_id": event_id})

    async def next_version(self, event_id: str, session: Session) -> int:
        """The event's next snapshot version. Taken in the writing transaction, whose conflicts on this
        one document make versions commit in order: a device that has seen N never misses one below N."""
        [version] = await self.next_versions(event_id, 1, session)
        return version

    async def next_versions(self, event_id: str, count: int, session: Session) -> range:
        """The event's next `count` snapshot versions, taken together as `next_version` takes one."""
        found = await self.versions.find_one_and_update(
            {"_id": event_id}, {"$inc": {"n": count}}, upsert=True, return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert found is not None  # upserted
        return range(int(found["n"]) - count + 1, int(found["n"]) + 1)

    async def version(self, event_id: str) -> int:
        found = await self.versions.find_one({"_id": event_id})
        return int(found["n"]) if found else 0

    async def stamp_registration(self, registration_id: str, version: int, session: Session) -> None:
        await self.registrations.update_one(
            {"_id": registration_id}, {"$set": {"version": version}}, session=session
        )

    async def tickets_for(self, event_id: str, since: int) -> list[Document]:
        """The event's issued tickets changed after version `since`, or whose registration changed after it.

        Each read names one index and nothing else: the embedded document server answers a filter
        with any further condition (`$exists`, a second field beside an `$in`) by reading every
        ticket of the event, so what is not indexed is checked here.
        """
        changed = _changed_since(event_id, since)
        registrations = {row["_id"]: row for row in await self.registrations.find(changed).to_list(None)}
        found = await self.tickets.find(changed).to_list(None)
        if since and registrations:
            found += await self.tickets.find({"registration_id": {"$in": list(registrations)}}).to_list(None)
        by_id = {ticket["_id"]: ticket for ticket in found}
        # A ticket row without a type is a revocation that arrived before the ticket it revokes.
        tickets = [ticket for ticket in by_id.values() if "ticket_type" in ticket]
        missing = {ticket["registration_id"] for ticket in tickets} - set(registrations)
        if missing:
            for row in await self.registrations.find({"_id": {"$in": list(missing)}}).to_list(None):
                registrations[row["_id"]] = row
        return [{**ticket, "registration": registrations.get(ticket["registration_id"])} for ticket in tickets]

    async def public_keys(self, event_id: str) -> list[Document]:
        return await self.keys.find({"event_id": event_id}).to_list(None)

    async def admissions_for(self, event_id: str, since: int = 0) -> list[Document]:
        """The event's admissions; with `since`, only those changed after that snapshot version."""
        return await self.admissions.find(_changed_since(event_id, since)).to_list(None)

    async def counted_registrations(self, event_id: str) -> list[Document]:
        return await self.registrations.find({"event_id": event_id, "counted": True}).to_list(None)

    async def tickets_of(self, registration_ids: list[str]) -> list[Document]:
        return await self.tickets.find({"registration_id": {"$in": registration_ids}}).to_list(None)

    async def public_key(self, event_id: str, key_id: str) -> bytes | None:
        key = await self.keys.find_one({"_id": f"{event_id}:{key_id}"})
        return bytes(key["public_key"]) if key else None

    async def save_keys(self, keys: dict[tuple[str, str], bytes], session: Session) -> None:
        """Public keys by (event id, key id), each kept as first seen."""
        await self.keys.bulk_write(
            [
                UpdateOne(
                    {"_id": f"{event_id}:{key_id}"},
                    {"$setOnInsert": {"event_id": event_id, "key_id": key_id, "public_key": public_key}},
                    upsert=True,
                )
                for (event_id, key_id), public_key in keys.items()
            ],
            ordered=True,
            session=session,
        )

    async def save_ticket(self, ticket_id: str, fields: Document, session: Session) -> None:
        await self.save_tickets({ticket_id: fields}, session)

    async def save_tickets(self, tickets: dict[str, Document], session: Session) -> None:
        await set_fields(self.tickets, tickets, session)

    async def tickets_by_id(self, ticket_ids: list[str], session: Session | None = None) -> dict[str, Document]:
        return await by_id(self.tickets, ticket_ids, session)

    async def save_registration(self, registration_id: str, fields: Document, session: Session) -> None:
        """A registration that is not (or no longer) to be admitted; one new to the projection is not counted."""
        await set_fields(self.registrations, {registration_id: fields}, session, on_insert={"counted": False})

    async def update_registration(self, registration_id: str, fields: Document, session: Session) -> None:
        """Change a registration already in the projection; one it does not hold stays absent."""
        await self.registrations.update_one({"_id": registration_id}, {"$set": fields}, session=session)

    async def registrations_by_id(
        self, registration_ids: list[str], session: Session | None = None
    ) -> dict[str, Document]:
        return await by_id(self.registrations, registration_ids, session)

    async def is_erased(self, registration_id: str, session: Session) -> bool:
        return bool(await self.erased_among([registration_id], session))

    async def erased_among(self, registration_ids: list[str], session: Session) -> set[str]:
        cursor = self.registrations.find(
            {"_id": {"$in": registration_ids}, "erased_at": {"$ne": None}}, projection={"_id": 1}, session=session
        )
        return {row["_id"] async for row in cursor}

    async def erase_registration(self, registration_id: str, event_id: str, at: datetime, session: Session) -> None:
        """Anonymise the delegate; whether and how they are counted stays as it was."""
        await self.registrations.update_one(
            {"_id": registration_id},
            {
                "$set": {"event_id": event_id, "name": ERASED_NAME, "erased_at": at, "updated_at": at},
                "$unset": {"organisation": "", "role": ""},
                "$setOnInsert": {"counted": False},
            },
            upsert=True,
            session=session,
        )
        # Each scan keeps the reply it gave, which named the delegate.
        tickets = await self.tickets.find(
            {"registration_id": registration_id}, projection={"_id": 1}, session=session
        ).to_list(None)
        if tickets:
            await self.scans.update_many(
                {"ticket_id": {"$in": [ticket["_id"] for ticket in tickets]}, "reply.attendee": {"$exists": True}},
                {"$set": {"reply.attendee.name": ERASED_NAME}},
                session=session,
            )

    async def save_admissible(
        self, registrations: dict[str, Document], held: dict[str, Document], session: Session
    ) -> set[str]:
        """Delegates who may be admitted, given their projections as just read in this transaction
        (`held`); returns those counted only now.

        Each is counted once: one new to the projection is created counted, one held already is
        counted unless it is already or was cancelled.
        """
        await set_fields(self.registrations, registrations, session, on_insert={"counted": True}, existing=held)
        uncounted = [
            key
            for key in registrations
            if key in held and held[key].get("counted") is False and held[key].get("cancelled_at") is None
        ]
        if uncounted:
            await self.registrations.update_many(
                {"_id": {"$in": uncounted}}, {"$set": {"counted": True}}, session=session
            )
        return {key for key in registrations if key not in held} | set(uncounted)

    async def stop_counting(self, registration_id: str, session: Session) -> bool:
        result = await self.registrations.update_one(
            {"_id": registration_id, "counted": True}, {"$set": {"counted": False}}, session=session
        )
        return result.modified_count == 1

    # Admissions: one document per ticket, changed only by conditional writes.

    async def admissions_by_id(self, ticket_ids: list[str], session: Session | None = None) -> dict[str, Document]:
        return await by_id(self.admissions, ticket_ids, session)

    async def insert_admissions(self, admissions: list[Document], session: Session) -> None:
        """New admissions; the unique ticket id makes a second process's first admission of one ticket fail."""
        await self.admissions.insert_many(admissions, session=session)

    async def move_admissions(
        self, moved: dict[str, Document], read_counts: dict[str, tuple[int, int]], session: Session
    ) -> bool:
        """Write each holder's new whereabouts, unless another process moved them since they were read."""
        result = await self.admissions.bulk_write(
            [
                UpdateOne(
                    {"_id": ticket_id, "entries": read_counts[ticket_id][0], "exits": read_counts[ticket_id][1]},
                    {
                        "$set": {
                            field: admission[field]
                            for field in (
                                "inside", "last_at", "last_gate", "last_device_id", "entries", "exits", "version"
                            )
                        }
                    },
                )
                for ticket_id, admission in moved.items()
            ],
            ordered=False,
            session=session,
        )
        return result.matched_count == len(moved)

    async def room_admissions_by_id(self, ids: list[str], session: Session | None = None) -> dict[str, Document]:
        return await by_id(self.room_admissions, ids, session)

    async def insert_room_admissions(self, entries: list[Document], session: Session) -> None:
        await self.room_admissions.insert_many(entries, session=session)

    # Scans: the audit trail, each carrying the reply given for its nonce.

    async def replies_for_nonces(self, nonce_keys: list[str], session: Session | None = None) -> dict[str, Document]:
        """The reply already given for each of these nonces, by nonce."""
        found = self.scans.find(
            {"nonce_key": {"$in": nonce_keys}}, projection={"nonce_key": 1, "reply": 1}, session=session
        )
        return {row["nonce_key"]: row["reply"] for row in await found.to_list(None)}

    async def insert_scans(self, scans: list[Document], session: Session) -> None:
        await self.scans.insert_many(scans, session=session)

    async def recent_scans(self, event_id: str, limit: int) -> list[Document]:
        cursor = self.scans.find({"event_id": event_id}).sort("received_at", DESCENDING).limit(limit)
        return await cursor.to_list(limit)

    # Double-entry alerts, raised when offline uploads show one ticket let in twice.

    async def insert_alerts(self, alerts: list[Document], session: Session) -> None:
        await self.alerts.insert_many(alerts, session=session)

    async def alerts_for(self, event_id: str, limit: int) -> list[Document]:
        return await self.alerts.find({"event_id": event_id}).sort("raised_at", DESCENDING).to_list(limit)

    # Counters: small documents per figure and shard, incremented in the transaction that changes them.

    async def bump(self, event_id: str, changes: dict[CounterKey, int], session: Session) -> None:
        if not changes:
            return
        shard = random.randrange(COUNTER_SHARDS)
        await self.counters.bulk_write(
            [
                UpdateOne(
                    {"_id": f"{event_id}:{kind}:{key}:{shard}"},
                    {"$inc": {"n": n}, "$setOnInsert": {"event_id": event_id, "kind": kind, "key": key}},
                    upsert=True,
                )
                for (kind, key), n in changes.items()
            ],
            ordered=False,
            session=session,
        )

    async def counters_for(self, event_id: str) -> list[tuple[str, str, int]]:
        rows = await self.counters.find({"event_id": event_id}).to_list(None)
        return [(row["kind"], row["key"], int(row["n"])) for row in rows]

    # Devices.

    async def insert_device(self, device: Document) -> None:
        await self.devices.insert_one(device)

    async def device_by_token_hash(self, token_hash: str) -> Document | None:
        return await self.devices.find_one({"token_hashes": token_hash})

    async def enrol_device(self, code_hash: str, token_hash: str, now: datetime) -> Document | None:
        """Exchange a one-time enrolment code for a new token; None when the code is unknown or spent."""
        return await self.devices.find_one_and_update(
            {"enrolment_code_hash": code_hash, "enrolled_at": None, "revoked_at": None},
            {"$set": {"enrolled_at": now}, "$push": {"token_hashes": token_hash}},
            return_document=ReturnDocument.AFTER,
        )

    async def device_by_enrolment_hash(self, code_hash: str) -> Document | None:
        return await self.devices.find_one({"enrolment_code_hash": code_hash})

    async def devices_for(self, event_id: str) -> list[Document]:
        return await self.devices.find({"event_id": event_id}).sort("created_at", ASCENDING).to_list(None)

    async def revoke_device(self, device_id: str, now: datetime) -> Document | None:
        await self.devices.update_one({"_id": device_id, "revoked_at": None}, {"$set": {"revoked_at": now}})
        return await self.devices.find_one({"_id": device_id})

    async def touch_device(self, device_id: str, now: datetime) -> None:
        condition: dict[str, Any] = {
            "_id": device_id,
            "$or": [{"last_seen_at": None}, {"last_seen_at": {"$lt": now - LAST_SEEN_RESOLUTION}}],
        }
        await self.devices.update_one(condition, {"$set": {"last_seen_at": now}})


def _changed_since(event_id: str, since: int) -> Document:
    """The event's documents changed after snapshot version `since`; all of them for 0."""
    return {"event_id": event_id, "version": {"$gt": since}} if since else {"event_id": event_id}
