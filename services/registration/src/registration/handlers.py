"""Registration commands: load, decide with the domain rules, save state and events in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from plenary_kit import events
from plenary_kit.auth import hash_token, new_token
from plenary_kit.envelope import Envelope
from plenary_kit.mongo import Document, Session, in_transaction
from plenary_kit.outbox import Outbox
from plenary_kit.web import correlation_id
from registration import domain
from registration.domain import RegistrationRejected, Status
from registration.store import Store

SOURCE = "registration"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class Registrations:
    def __init__(
        self, client: AsyncMongoClient[Document], store: Store, outbox: Outbox, concurrent_transactions: int = 8
    ) -> None:
        self._client = client
        self._store = store
        self._outbox = outbox
        # Every registration for one event updates the same counter document; letting only a few
        # transactions reach it at once keeps write conflicts, and so latency, low under a surge.
        self._admission = asyncio.Semaphore(concurrent_transactions)

    async def create_event(self, spec: domain.EventCreate) -> Document:
        event: Document = {
            "_id": str(uuid.uuid4()),
            **spec.model_dump(exclude={"ticket_types", "sessions"}),
            "ticket_types": [t.model_dump() for t in spec.ticket_types],
            "sessions": [s.model_dump() for s in spec.sessions],
            "places_left": spec.capacity,
            "ticket_left": {t.code: t.capacity for t in spec.ticket_types if t.capacity is not None},
            "session_left": {s.code: s.capacity for s in spec.sessions},
            "waitlist_seq": 0,
            "closed": False,
            "created_at": datetime.now(UTC),
        }
        try:
            await self._store.insert_event(event)
        except DuplicateKeyError as exc:
            raise RegistrationRejected(409, "slug_taken", f"An event with slug {spec.slug!r} exists.") from exc
        return event

    async def register(
        self, event_id: str, request: domain.RegistrationCreate, idempotency_key: str | None
    ) -> Reply:
        key = f"{event_id}:{idempotency_key}" if idempotency_key else None
        fingerprint = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
        if key:
            earlier = await self._replay(key, fingerprint)
            if earlier:
                return earlier
        event = await self._store.event(event_id)
        if event is None:
            raise RegistrationRejected(404, "event_not_found", "No such event.")
        domain.check_window(event, datetime.now(UTC))
        ticket_type = domain.choose_ticket_type(event, request.ticket_type)
        domain.check_sessions(event, request.sessions)
        email_key = domain.email_key(str(request.email))
        if await self._store.registrations.find_one({"event_id": event_id, "email_key": email_key}, {"_id": 1}):
            raise _already_registered()

        token = new_token()
        registration_id = str(uuid.uuid4())

        async def work(session: Session) -> Reply:
            now = datetime.now(UTC)
            registration: Document = {
                "_id": registration_id,
                "event_id": event_id,
                "name": request.name,
                "email": str(request.email),
                "email_key": email_key,
                "organisation": request.organisation,
                "role": request.role,
                "ticket_type": ticket_type,
                "sessions": request.sessions,
                "answers": request.answers,
                "consent": {"given_at": now, "notice_version": domain.PRIVACY_NOTICE_VERSION},
                "manage_token_hash": hash_token(token),
                "created_at": now,
                "updated_at": now,
            }
            if await self._store.take_place(event, ticket_type, request.sessions, session):
                registration["status"] = Status.CONFIRMED
                data: events.EventData = events.RegistrationConfirmed(**_snapshot(event, registration))
            else:
                await self._refuse_if_only_a_session_is_full(event_id, ticket_type, request.sessions, session)
                position = await self._store.next_waitlist_position(event_id, session)
                registration["status"] = Status.WAITLISTED
                registration["waitlist_position"] = position
                data = events.RegistrationWaitlisted(**_snapshot(event, registration), position=position)
            await self._store.insert_registration(registration, session)
            await self._outbox.add(session, _new_event(data, registration_id))
            reply = Reply(
                201,
                domain.RegistrationAccepted(
                    id=registration_id, status=registration["status"], manage_token=token
                ).model_dump(mode="json"),
            )
            if key:
                await self._store.remember_reply(key, fingerprint, reply.status, reply.body, now, session)
            return reply

        try:
            async with self._admission:
                reply = await in_transaction(self._client, work)
        except DuplicateKeyError as exc:
            if key and "idempotency_keys" in str(exc):
                earlier = await self._replay(key, fingerprint)
                if earlier:
                    return earlier
            raise _already_registered() from exc
        self._outbox.nudge()
        return reply

    async def _replay(self, key: str, fingerprint: str) -> Reply | None:
        stored = await self._store.idempotent_reply(key)
        if stored is None:
            return None
        if stored["fingerprint"] != fingerprint:
            raise RegistrationRejected(
                409, "idempotency_key_reused", "This Idempotency-Key was used for a different registration."
            )
        return Reply(stored["status"], stored["body"])

    async def _refuse_if_only_a_session_is_full(
        self, event_id: str, ticket_type: str, sessions: list[str], session: Session
    ) -> None:
        event = await self._store.event(event_id, session)
        assert event is not None
        ticket_left = event.get("ticket_left", {}).get(ticket_type, 1)
        if event["places_left"] > 0 and ticket_left > 0:
            full = [code for code in sessions if event["session_left"].get(code, 0) <= 0]
            raise RegistrationRejected(409, "session_full", f"The session {full[0]!r} is full; please choose another.")

    async def cancel(self, registration_id: str) -> Document:
        async def work(session: Session) -> Document:
            registration = await self._store.registration(registration_id, session)
            if registration is None:
                raise RegistrationRejected(404, "registration_not_found", "No such registration.")
            previous = registration["status"]
            if previous == Status.CANCELLED:
                return registration
            now = datetime.now(UTC)
            await self._store.set_status(
                registration_id, previous, {"status": Status.CANCELLED, "cancelled_at": now, "updated_at": now}, session
            )
            event = await self._store.event(registration["event_id"], session)
            assert event is not None
            caused = [
                _new_event(
                    events.RegistrationCancelled(
                        registration_id=registration_id,
                        event=domain.summary(event),
                        delegate=domain.delegate(registration),
                        previous_status=previous,
                    ),
                    registration_id,
                )
            ]
            if previous == Status.CONFIRMED:
                await self._store.release_place(event, registration["ticket_type"], registration["sessions"], session)
                caused += await self._promote_waiting(event, session)
            await self._outbox.add(session, *caused)
            return {**registration, "status": Status.CANCELLED, "cancelled_at": now}

        async with self._admission:
            registration = await in_transaction(self._client, work)
        self._outbox.nudge()
        return registration

    async def _promote_waiting(self, event: Document, session: Session) -> list[Envelope]:
        """Give freed places to the waiting list in arrival order, in the cancelling transaction."""
        promoted: list[Envelope] = []
        while (candidate := await self._store.first_waitlisted(event["_id"], session)) is not None:
            if not await self._store.take_place(event, candidate["ticket_type"], candidate["sessions"], session):
                break
            now = datetime.now(UTC)
            await self._store.set_status(
                candidate["_id"],
                Status.WAITLISTED,
                {"status": Status.CONFIRMED, "promoted_at": now, "updated_at": now},
                session,
            )
            data = events.RegistrationPromoted(**_snapshot(event, candidate))
            promoted.append(_new_event(data, candidate["_id"]))
        return promoted


def _snapshot(event: Document, registration: Document) -> dict[str, Any]:
    return {
        "registration_id": registration["_id"],
        "event": domain.summary(event),
        "delegate": domain.delegate(registration),
        "ticket_type": registration["ticket_type"],
        "sessions": registration["sessions"],
        "manage_token_hash": registration["manage_token_hash"],
    }


def _new_event(data: events.EventData, registration_id: str) -> Envelope:
    return Envelope.new(data, source=SOURCE, subject=registration_id, correlation_id=correlation_id())


def _already_registered() -> RegistrationRejected:
    return RegistrationRejected(409, "already_registered", "This email address is already registered for this event.")
