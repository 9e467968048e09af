"""MongoDB access for the registration service: events, registrations, waiting lists, imports, idempotency keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from plenary_kit.mongo import Document, Session, insert_all

# Registrations that hold a place: confirmed, or waiting with an open offer.
HOLDING: Document = {"$or": [{"status": "confirmed"}, {"status": "waitlisted", "offer": {"$ne": None}}]}


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.events = db["events"]
        self.registrations = db["registrations"]
        self.session_waits = db["session_waits"]
        self.idempotency = db["idempotency_keys"]
        self.imports = db["imports"]
        self.import_files = db["import_files"]

    async def prepare(self) -> None:
        await self.events.create_index("slug", unique=True)
        await self.registrations.create_index([("event_id", ASCENDING), ("email_key", ASCENDING)], unique=True)
        await self.registrations.create_index("manage_token_hash", unique=True)
        await self.registrations.create_index(
            [("event_id", ASCENDING), ("status", ASCENDING), ("waitlist_position", ASCENDING)]
        )
        await self.registrations.create_index([("event_id", ASCENDING), ("created_at", ASCENDING)])
        await self.registrations.create_index("offer.expires_at", sparse=True)
        await self.session_waits.create_index(
            [("event_id", ASCENDING), ("session", ASCENDING), ("position", ASCENDING)]
        )
        await self.session_waits.create_index("registration_id")
        await self.idempotency.create_index("created_at", expireAfterSeconds=86400)
        await self.idempotency.create_index("registration_ids")
        await self.imports.create_index([("status", ASCENDING), ("lease_until", ASCENDING)])

    # Events

    async def event(self, event_id: str, session: Session | None = None) -> Document | None:
        return await self.events.find_one({"_id": event_id}, session=session)

    async def event_by_slug(self, slug: str) -> Document | None:
        return await self.events.find_one({"slug": slug})

    async def list_events(self) -> list[Document]:
        return await self.events.find({}).sort("starts_at", ASCENDING).to_list(500)

    async def insert_event(self, event: Document) -> None:
        await self.events.insert_one(event)

    async def update_event(
        self,
        event_id: str,
        floors: dict[str, int],
        changes: Document,
        session: Session,
    ) -> bool:
        """One conditional write: each counter in `floors` must be at least its floor, or nothing changes."""
        condition: Document = {"_id": event_id, **{counter: {"$gte": floor} for counter, floor in floors.items()}}
        result = await self.events.update_one(condition, changes, session=session)
        return result.matched_count == 1

    async def set_closed(self, event_id: str, closed: bool, now: datetime) -> Document | None:
        return await self.events.find_one_and_update(
            {"_id": event_id},
            {"$set": {"closed": closed, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    # Capacity: every change is a conditional $inc on the event document, inside the caller's transaction.

    async def take_place(self, event: Document, ticket_type: str, sessions: list[str], session: Session) -> bool:
        """Atomically take one place for the event, its ticket type and each session, or none at all."""
        counters = _limited_counters(event, ticket_type, sessions)
        condition: Document = {"_id": event["_id"], "places_left": {"$gt": 0}, **_limits_of(event)}
        for counter in counters:
            condition[counter] = {"$gt": 0}
        decrement = dict.fromkeys(["places_left", *counters], -1)
        result = await self.events.update_one(condition, {"$inc": decrement}, session=session)
        return result.modified_count == 1

    async def spend_places(
        self, event: Document, moves: dict[str, int], floors: dict[str, int], session: Session
    ) -> Document | None:
        """Move many counters at once, as a batch of arrivals spent them; nothing moves if any floor fails.

        Returns the event as it stands afterwards, or None when a floor failed.
        """
        if not moves:
            return event
        condition: Document = {"_id": event["_id"], **_limits_of(event)}
        for counter, floor in floors.items():
            condition[counter] = {"$gte": floor}
        return await self.events.find_one_and_update(
            condition, {"$inc": moves}, return_document=ReturnDocument.AFTER, session=session
        )

    async def spend_places_as_copied(self, copy: Document, moves: dict[str, int], session: Session) -> Document | None:
        """The same moves, made only if the event still stands exactly as `copy` shows it.

        Every write to an event either moves one of its counters or sets `updated_at`, so equal counters
        and an equal `updated_at` mean the copy is the event as stored. Returns the event afterwards, or
        None when the copy is out of date.
        """
        condition: Document = {"_id": copy["_id"], **{name: copy.get(name) for name in CHANGING_FIELDS}}
        return await self.events.find_one_and_update(
            condition, {"$inc": moves}, return_document=ReturnDocument.AFTER, session=session
        )

    async def release_place(self, event: Document, ticket_type: str, sessions: list[str], session: Session) -> None:
        """Give back what take_place took; `event` must be read in the same transaction."""
        increment = dict.fromkeys(["places_left", *_limited_counters(event, ticket_type, sessions)], 1)
        await self.events.update_one({"_id": event["_id"]}, {"$inc": increment}, session=session)

    async def take_session(self, event_id: str, code: str, session: Session) -> bool:
        result = await self.events.update_one(
            {"_id": event_id, f"session_left.{code}": {"$gt": 0}},
            {"$inc": {f"session_left.{code}": -1}},
            session=session,
        )
        return result.modified_count == 1

    async def release_sessions(self, event_id: str, codes: list[str], session: Session) -> None:
        if codes:
            await self.events.update_one(
                {"_id": event_id}, {"$inc": dict.fromkeys((f"session_left.{c}" for c in codes), 1)}, session=session
            )

    async def _next(self, event_id: str, counter: str, session: Session) -> int:
        event = await self.events.find_one_and_update(
            {"_id": event_id},
            {"$inc": {counter: 1}},
            projection={counter.split(".")[0]: 1},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if event is None:
            return 0
        value: Any = event
        for part in counter.split("."):
            value = value[part]
        return int(value)

    async def next_waitlist_position(self, event_id: str, session: Session) -> int:
        return await self._next(event_id, "waitlist_seq", session)

    # The waiting list of each workshop: one document per registration waiting for a place in it.

    async def add_session_wait(self, event_id: str, code: str, registration_id: str, session: Session) -> int:
        position = await self._next(event_id, f"session_wait_seq.{code}", session)
        await self.session_waits.insert_one(
            {
                "_id": f"{registration_id}:{code}",
                "event_id": event_id,
                "session": code,
                "position": position,
                "registration_id": registration_id,
            },
            session=session,
        )
        return position

    async def add_session_waits(self, waits: list[Document], session: Session) -> None:
        """Queue places already numbered by the caller: `{event_id, session, position, registration_id}`."""
        if waits:
            await self.session_waits.insert_many(
                [{"_id": f"{w['registration_id']}:{w['session']}", **w} for w in waits], session=session
            )

    async def first_session_waiter(self, event_id: str, code: str, session: Session) -> Document | None:
        return await self.session_waits.find_one(
            {"event_id": event_id, "session": code}, sort=[("position", ASCENDING)], session=session
        )

    async def remove_session_waits(self, registration_id: str, codes: Iterable[str] | None, session: Session) -> None:
        query: Document = {"registration_id": registration_id}
        if codes is not None:
            query["session"] = {"$in": list(codes)}
        await self.session_waits.delete_many(query, session=session)

    async def session_wait_positions(self, registration_id: str) -> dict[str, int]:
        waits = await self.session_waits.find({"registration_id": registration_id}).to_list(None)
        return {w["session"]: int(w["position"]) for w in waits}

    # Registrations

    async def insert_registration(self, registration: Document, session: Session) -> None:
        await self.registrations.insert_one(registration, session=session)

    async def insert_registrations(self, registrations: list[Document], session: Session) -> None:
        if registrations:
            await insert_all(self.registrations, registrations, session)

    async def registration(self, registration_id: str, session: Session | None = None) -> Document | None:
        return await self.registrations.find_one({"_id": registration_id}, session=session)

    async def registration_by_token_hash(self, token_hash: str) -> Document | None:
        return await self.registrations.find_one({"manage_token_hash": token_hash}, projection={"_id": 1})

    async def registration_by_email_key(self, event_id: str, email_key: str) -> Document | None:
        return await self.registrations.find_one(
            {"event_id": event_id, "email_key": email_key}, projection={"_id": 1, "import_id": 1, "status": 1}
        )

    async def registered_email_keys(
        self, event_id: str, email_keys: list[str], except_ids: Iterable[str] = (), session: Session | None = None
    ) -> set[str]:
        # The excluded ids are left out here, not in the filter: the embedded document server answers
        # a filter with "$nin" beside the indexed fields by reading every registration.
        query: Document = {"event_id": event_id, "email_key": {"$in": email_keys}}
        excluded = set(except_ids)
        found = await self.registrations.find(query, projection={"email_key": 1}, session=session).to_list(None)
        return {r["email_key"] for r in found if r["_id"] not in excluded}

    async def registrations_for(self, event_id: str) -> list[Document]:
        return await self.registrations.find({"event_id": event_id}).sort("created_at", ASCENDING).to_list(None)

    async def first_waitlisted(self, event_id: str, skip_ticket_types: list[str], session: Session) -> Document | None:
        """The longest-waiting delegate without an offer whose ticket type still has places."""
        query: Document = {"event_id": event_id, "status": "waitlisted", "offer": None}
        if skip_ticket_types:
            query["ticket_type"] = {"$nin": skip_ticket_types}
        return await self.registrations.find_one(query, sort=[("waitlist_position", ASCENDING)], session=session)

    async def count_holding(self, event_id: str, ticket_type: str, session: Session) -> int:
        return await self.registrations.count_documents(
            {"event_id": event_id, "ticket_type": ticket_type, **HOLDING}, session=session
        )

    async def change_registration(
        self,
        registration_id: str,
        expected: Document,
        changes: Document,
        session: Session,
    ) -> Document | None:
        """Apply `changes` only if the registration still matches `expected`; the changed registration."""
        return await self.registrations.find_one_and_update(
            {"_id": registration_id, **expected}, changes, return_document=ReturnDocument.AFTER, session=session
        )

    async def expired_offers(self, now: datetime, limit: int) -> list[Document]:
        return (
            await self.registrations.find(
                {"status": "waitlisted", "offer.expires_at": {"$lte": now}},
                projection={"_id": 1},
            )
            .sort("offer.expires_at", ASCENDING)
            # Only registrations with an offer are in this index: no read of every registration.
            .hint("offer.expires_at_1")
            .limit(limit)
            .to_list(limit)
        )

    # Idempotency keys: the first reply to a key, replayed for the same request.

    async def idempotent_reply(self, key: str) -> Document | None:
        return await self.idempotency.find_one({"_id": key})

    async def remember_reply(
        self, key: str, fingerprint: str, status: int, body: Document, now: datetime, session: Session
    ) -> None:
        await self.idempotency.insert_one(
            {"_id": key, "fingerprint": fingerprint, "status": status, "body": body, "created_at": now},
            session=session,
        )

    async def remember_replies(self, replies: list[Document], now: datetime, session: Session) -> None:
        """Several first replies at once: `{_id: key, fingerprint, status, body}` each."""
        if replies:
            await insert_all(self.idempotency, [{**r, "created_at": now} for r in replies], session)

    async def begin_reply(self, key: str, fingerprint: str, plan: list[Document], now: datetime) -> None:
        """A reply that takes several transactions: the plan is kept so a retry finishes the same work."""
        await self.idempotency.insert_one(
            {
                "_id": key,
                "fingerprint": fingerprint,
                "plan": plan,
                "registration_ids": [p["registration_id"] for p in plan],
                "created_at": now,
            }
        )

    async def finish_reply(self, key: str, status: int, body: Document) -> None:
        await self.idempotency.update_one(
            {"_id": key}, {"$set": {"status": status, "body": body}, "$unset": {"plan": ""}}
        )

    async def forget_replies_naming(self, registration_id: str, session: Session) -> None:
        """Group replies list delegates' email addresses; an erased delegate's go with them."""
        await self.idempotency.delete_many({"registration_ids": registration_id}, session=session)

    # CSV imports: the job's progress, and its rows until it is done.

    async def insert_import(self, job: Document, columns: list[str], rows: list[list[Any]]) -> None:
        # Rows first: a job is only visible once everything it needs is stored.
        await self.import_files.insert_one({"_id": job["_id"], "columns": columns, "rows": rows})
        await self.imports.insert_one(job)

    async def import_job(self, import_id: str) -> Document | None:
        return await self.imports.find_one({"_id": import_id}, projection={"lease_owner": 0})

    async def import_rows(self, import_id: str) -> tuple[list[str], list[list[Any]]]:
        stored = await self.import_files.find_one({"_id": import_id})
        return (list(stored["columns"]), list(stored["rows"])) if stored else ([], [])

    async def claim_abandoned_import(self, owner: str, now: datetime, lease_until: datetime) -> Document | None:
        return await self.imports.find_one_and_update(
            {"status": "running", "lease_until": {"$lt": now}},
            {"$set": {"lease_owner": owner, "lease_until": lease_until}},
            return_document=ReturnDocument.AFTER,
        )

    async def record_import_progress(
        self, import_id: str, owner: str, outcomes: list[Document], lease_until: datetime, now: datetime
    ) -> bool:
        """Append outcomes while this worker still holds the job; False if another worker took it over."""
        counts = {kind: sum(o["outcome"] == kind for o in outcomes) for kind in ("imported", "rejected", "skipped")}
        result = await self.imports.update_one(
            {"_id": import_id, "lease_owner": owner, "status": "running"},
            {
                "$push": {"rows": {"$each": outcomes}},
                "$inc": {"processed": len(outcomes), **counts},
                "$set": {"lease_until": lease_until, "updated_at": now},
            },
        )
        return result.modified_count == 1

    async def finish_import(self, import_id: str, owner: str, now: datetime) -> None:
        result = await self.imports.update_one(
            {"_id": import_id, "lease_owner": owner, "status": "running"},
            {"$set": {"status": "done", "finished_at": now, "updated_at": now}},
        )
        if result.modified_count == 1:
            await self.import_files.delete_one({"_id": import_id})


# The fields of an event that writes change: its counters, the version of its limits, and the time an
# organiser's change or an opening or closing last set.
CHANGING_FIELDS = (
    "places_left",
    "ticket_left",
    "session_left",
    "waitlist_seq",
    "session_wait_seq",
    "limits_version",
    "closed",
    "updated_at",
)


def _limits_of(event: Document) -> Document:
    """The event's limits as this caller read them: a take fails if an organiser has changed them since."""
    version = event.get("limits_version")
    return {"limits_version": version} if version is not None else {"limits_version": {"$exists": False}}


def _limited_counters(event: Document, ticket_type: str, sessions: list[str]) -> list[str]:
    """Counter fields that limit this choice: the ticket type's (when it has a cap) and each session's."""
    fields = [f"ticket_left.{ticket_type}"] if ticket_type in event.get("ticket_left", {}) else []
    return fields + [f"session_left.{code}" for code in sessions]
