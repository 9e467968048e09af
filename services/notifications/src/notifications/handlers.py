"""Registration and ticket events: record the facts, decide which messages are due, queue them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeAlias, TypeVar

from notifications import domain
from notifications.domain import Kind, MessageContent, RegistrationStatus, Status
from notifications.store import Store
from plenary_kit import events, sealing
from plenary_kit.consumer import Batched, Handler, event_context
from plenary_kit.envelope import Envelope
from plenary_kit.events import EventData
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session
from plenary_kit.outbox import Outbox

log = get_logger(__name__)

SOURCE = "notifications"

D = TypeVar("D", bound=EventData)


class ResendRefused(Exception):
    """An organiser asked for a resend that cannot be done; carries the reply's status and stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UnexpectedEvent(TypeError):
    """A handler was given data of another event type: a wiring bug, so the event is dead-lettered."""


def _expect(data: EventData, model: type[D]) -> D:
    if not isinstance(data, model):
        raise UnexpectedEvent(f"expected {model.__name__}, got {type(data).__name__}")
    return data


Snapshot: TypeAlias = (
    events.RegistrationConfirmed
    | events.RegistrationWaitlisted
    | events.RegistrationPromoted
    | events.RegistrationOffered
    | events.RegistrationUpdated
)


def _snapshot(data: Snapshot) -> Document:
    return {
        "delegate": data.delegate.model_dump(),
        "event": data.event.model_dump(),
        "ticket_type": data.ticket_type,
        "sessions": list(data.sessions),
    }


class Notifications:
    """Consumed-event handlers; each runs inside the consumer's transaction, with its session."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        *,
        link_key: bytes,
        public_url: str | None,
        reminder_lead: timedelta = timedelta(hours=24),
        thank_you_delay: timedelta = timedelta(hours=2),
        on_enqueued: Callable[[Iterable[str]], None] = lambda keys: None,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._link_key = link_key
        self._public_url = public_url
        self._reminder_lead = reminder_lead
        self._thank_you_delay = thank_you_delay
        self._on_enqueued = on_enqueued

    def subscriptions(self) -> dict[str, Handler]:
        return {
            "registration.confirmed": Batched(self.confirmed_many),
            "registration.waitlisted": Batched(self.waitlisted_many),
            "registration.promoted": self.registration_promoted,
            "registration.offered": self.registration_offered,
            "registration.updated": self.registration_updated,
            "registration.cancelled": self.registration_cancelled,
            "registration.resend_requested": self.resend_requested,
            "registration.erased": self.registration_erased,
            "ticket.issued": Batched(self.issued_many),
        }

    async def registration_confirmed(self, envelope: Envelope, data: EventData, session: Session) -> None:
        await self.confirmed_many([(envelope, data)], session)

    async def confirmed_many(self, items: list[tuple[Envelope, EventData]], session: Session) -> None:
        """Confirmed registrations: their facts in one write, the ticket email for any whose ticket is known."""
        facts: dict[str, Document] = {}
        causes: dict[str, Envelope] = {}
        for envelope, data in items:
            confirmed = _expect(data, events.RegistrationConfirmed)
            registration_id = confirmed.registration_id
            extra = {"confirmed_at": envelope.time, **self._due_times(confirmed)}
            facts[registration_id] = {**facts.get(registration_id, {}), **self._snapshot_facts(confirmed, extra)}
            causes[registration_id] = envelope
        known = await self._store.projections(list(facts), session)
        for registration_id in [key for key in facts if domain.is_erased(known.get(key))]:
            del facts[registration_id]
        if facts:
            recorded = await self._store.record_many(facts, session, known)
            await self._confirm_all_ready([(causes[key], recorded[key]) for key in facts], session)

    async def waitlisted_many(self, items: list[tuple[Envelope, EventData]], session: Session) -> None:
        """Waitlisted registrations (half of a surge that fills the event): facts in one write, emails queued."""
        facts: dict[str, Document] = {}
        causes: dict[str, tuple[Envelope, int]] = {}
        for envelope, data in items:
            waitlisted = _expect(data, events.RegistrationWaitlisted)
            registration_id = waitlisted.registration_id
            extra = {"waitlisted_at": envelope.time, "waitlist_position": waitlisted.position}
            facts[registration_id] = {**facts.get(registration_id, {}), **self._snapshot_facts(waitlisted, extra)}
            causes[registration_id] = (envelope, waitlisted.position)
        known = await self._store.projections(list(facts), session)
        for registration_id in [key for key in facts if domain.is_erased(known.get(key))]:
            del facts[registration_id]
        if not facts:
            return
        recorded = await self._store.record_many(facts, session, known)
        due = []
        for registration_id in facts:
            projection = recorded[registration_id]
            # A late copy must not tell a confirmed or cancelled delegate that they are waiting.
            if domain.registration_status(projection) != RegistrationStatus.WAITLISTED:
                continue
            envelope, position = causes[registration_id]
            content = domain.content(projection, self._public_url, waitlist_position=position)
            due.append((envelope, Kind.WAITLISTED, "1", content))
        await self._enqueue_all(due, session)

    async def registration_promoted(self, envelope: Envelope, data: EventData, session: Session) -> None:
        promoted = _expect(data, events.RegistrationPromoted)
        projection = await self._record_snapshot(
            promoted,
            {"confirmed_at": envelope.time, "promoted_at": envelope.time, **self._due_times(promoted)},
            session,
        )
        if projection is None:
            return
        if domain.registration_status(projection) == RegistrationStatus.CONFIRMED:
            content = domain.content(projection, self._public_url)
            await self._enqueue(envelope, Kind.PROMOTED, "1", content, session)
        await self._confirm_if_ready(envelope, projection, session)

    async def registration_offered(self, envelope: Envelope, data: EventData, session: Session) -> None:
        offered = _expect(data, events.RegistrationOffered)
        expires_at = offered.offer_expires_at
        projection = await self._record_snapshot(
            offered, {"offered_at": envelope.time, "offer_expires_at": expires_at}, session
        )
        # An offer arriving after the delegate accepted it, or lost it, asks them for nothing.
        if projection is not None and domain.registration_status(projection) == RegistrationStatus.WAITLISTED:
            content = domain.content(projection, self._public_url, offer_expires_at=expires_at)
            await self._enqueue(envelope, Kind.OFFERED, domain.offer_version(expires_at), content, session)

    async def registration_updated(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """Later emails use the changed details; the change itself is confirmed on the manage page, not by email."""
        updated = _expect(data, events.RegistrationUpdated)
        # The status is a fact only where none is known: a late update must not undo a cancellation.
        status_at = "confirmed_at" if updated.status == "confirmed" else "waitlisted_at"
        # A moved event moves the reminder; the scheduler checks the status again when it falls due.
        due = self._due_times(updated) if updated.status == "confirmed" else {}
        await self._record_snapshot(updated, due, session, unless_known={status_at: envelope.time})

    async def registration_cancelled(self, envelope: Envelope, data: EventData, session: Session) -> None:
        cancelled = _expect(data, events.RegistrationCancelled)
        registration_id = cancelled.registration_id
        erased = cancelled.reason == "erased" or domain.is_erased(
            await self._store.projection(registration_id, session)
        )
        facts: Document = {
            "cancelled_at": envelope.time,
            "previous_status": cancelled.previous_status,
            "cancel_reason": cancelled.reason,
            "updated_at": datetime.now(UTC),
        }
        if not erased:
            # Dotted paths: the cancellation carries no ticket type or sessions, so keep those.
            facts["snapshot.delegate"] = cancelled.delegate.model_dump()
            facts["snapshot.event"] = cancelled.event.model_dump()
        # No reminder or thank-you for a cancelled registration.
        forget = list(domain.DUE_FIELDS.values())
        projection = await self._store.record_facts(registration_id, facts, session, forget=forget)
        if erased:
            return
        expired = cancelled.reason == "offer_expired"
        content = domain.content(
            projection,
            self._public_url,
            previous_status=cancelled.previous_status,
            offer_expires_at=projection.get("offer_expires_at") if expired else None,
        )
        await self._enqueue(envelope, Kind.OFFER_EXPIRED if expired else Kind.CANCELLED, "1", content, session)

    async def resend_requested(self, envelope: Envelope, data: EventData, session: Session) -> None:
        request = _expect(data, events.RegistrationResendRequested)
        projection = await self._store.projection(request.registration_id, session)
        content = domain.confirmation_content(projection, self._public_url) if projection else None
        if content is None or content.ticket is None:
            log.info("resend_not_sent", registration_id=request.registration_id, why="no_confirmed_ticket")
            return
        version = domain.resend_version(content.ticket.ticket_id, envelope.id)
        await self._enqueue(envelope, Kind.CONFIRMATION, version, content, session)

    async def registration_erased(self, envelope: Envelope, data: EventData, session: Session) -> None:
        erased = _expect(data, events.RegistrationErased)
        registration_id = erased.registration_id
        now = datetime.now(UTC)
        await self._store.erase(registration_id, now, session)
        for message in await self._store.erase_messages(registration_id, now, session):
            failed = events.NotificationFailed(
                message_id=message["_id"], registration_id=registration_id, kind=message["kind"], error="erased"
            )
            await self._outbox.add(session, envelope.caused(failed, source=SOURCE, subject=registration_id))
        log.info("registration_erased", registration_id=registration_id)

    async def ticket_issued(self, envelope: Envelope, data: EventData, session: Session) -> None:
        await self.issued_many([(envelope, data)], session)

    async def issued_many(self, items: list[tuple[Envelope, EventData]], session: Session) -> None:
        """Issued tickets: kept with their registrations in one write, the ticket email for any already confirmed."""
        facts: dict[str, Document] = {}
        causes: dict[str, Envelope] = {}
        for envelope, data in items:
            issued = _expect(data, events.TicketIssued)
            facts[issued.registration_id] = {
                "ticket": {"ticket_id": issued.ticket_id, "code": issued.code, "ticket_type": issued.ticket_type},
                "ticket_issued_at": issued.issued_at,
                "updated_at": datetime.now(UTC),
            }
            causes[issued.registration_id] = envelope
        recorded = await self._store.record_many(facts, session)
        await self._confirm_all_ready([(causes[key], recorded[key]) for key in facts], session)

    async def resend(
        self, message_id: str, request_id: str | None, correlation_id: str, session: Session
    ) -> Document:
        """An organiser's resend: the message once more, to the delegate's current address.

        A confirmation is composed afresh, so it carries the ticket as it is now; other
        kinds keep what they said, addressed to the delegate as they are now. The same
        request id twice queues one message.
        """
        original = await self._store.message(message_id, session)
        if original is None:
            raise ResendRefused(404, "not_found", "No message has that id.")
        if original["status"] not in (Status.SENT, Status.FAILED):
            raise ResendRefused(
                409, "not_settled", "This message has not been sent or failed yet; it goes out on its own."
            )
        registration_id = original["registration_id"]
        projection = await self._store.projection(registration_id, session)
        if projection is None or domain.is_erased(projection):
            raise ResendRefused(409, "erased", "The delegate's details have been erased; there is no one to write to.")
        kind = Kind(original["kind"])
        if kind == Kind.CONFIRMATION:
            content = domain.confirmation_content(projection, self._public_url)
            if content is None:
                raise ResendRefused(409, "not_confirmed", "The registration has no confirmed ticket to send.")
        else:
            earlier = MessageContent.model_validate(original["content"])
            content = domain.content(
                projection,
                self._public_url,
                ticket_type=earlier.ticket_type,
                sessions=earlier.sessions,
                ticket=earlier.ticket,
                waitlist_position=earlier.waitlist_position,
                previous_status=earlier.previous_status,
                offer_expires_at=earlier.offer_expires_at,
            )
        version = f"{original['version']}:resend:{request_id or uuid.uuid4()}"
        message = new_message(correlation_id, None, kind, version, content, datetime.now(UTC))
        if await self._store.enqueue(message, session):
            log.info("notification_resend_queued", message_id=message["_id"], resent=message_id)
            self._on_enqueued([message["_id"]])
        key = message["_id"]
        queued = await self._store.message(key, session)
        assert queued is not None
        return queued

    def _due_times(self, data: Snapshot) -> Document:
        """When this confirmed delegate's reminder and thank-you fall due, kept in the projection.

        The scheduler (scheduler.py) turns each into a message when its time comes: written with
        the registration's other facts, a schedule costs the consumer no extra round trip.
        """
        return domain.due_times(data.event, self._reminder_lead, self._thank_you_delay, datetime.now(UTC))

    async def _record_snapshot(
        self, data: Snapshot, facts: Document, session: Session, unless_known: Document | None = None
    ) -> Document | None:
        """Record the registration as this event shows it; None once the delegate is erased, writing nothing."""
        registration_id = data.registration_id
        if domain.is_erased(await self._store.projection(registration_id, session)):
            return None
        return await self._store.record_facts(registration_id, self._snapshot_facts(data, facts), session, unless_known)

    def _snapshot_facts(self, data: Snapshot, facts: Document) -> Document:
        """The registration as the event shows it, with the manage token sealed into its first event."""
        recorded = {"snapshot": _snapshot(data), **facts, "updated_at": datetime.now(UTC)}
        token = self._manage_token(data)
        if token is not None:
            recorded["manage_token"] = token
        return recorded

    def _manage_token(self, data: Snapshot) -> str | None:
        """The token sealed into a registration's first event, kept for the link in every later email."""
        if data.manage_token_sealed is None:
            return None
        try:
            return sealing.unseal(data.manage_token_sealed, self._link_key, context=data.registration_id)
        except sealing.SealBroken:
            # Emails still go out, without the link; a key that differs from registration's is the likely cause.
            log.error("manage_token_unreadable", registration_id=data.registration_id)
            return None

    async def _confirm_if_ready(self, envelope: Envelope, projection: Document, session: Session) -> None:
        await self._confirm_all_ready([(envelope, projection)], session)

    async def _confirm_all_ready(self, caused: list[tuple[Envelope, Document]], session: Session) -> None:
        """Queue the ticket email once both halves are known, from whichever event brought the second."""
        due = []
        for envelope, projection in caused:
            content = domain.confirmation_content(projection, self._public_url)
            if content is not None and content.ticket is not None:
                due.append((envelope, Kind.CONFIRMATION, content.ticket.ticket_id, content))
        await self._enqueue_all(due, session)

    async def _enqueue(
        self, envelope: Envelope, kind: Kind, version: str, content: MessageContent, session: Session
    ) -> None:
        await self._enqueue_all([(envelope, kind, version, content)], session)

    async def _enqueue_all(
        self, due: list[tuple[Envelope, Kind, str, MessageContent]], session: Session
    ) -> None:
        now = datetime.now(UTC)
        messages = [
            new_message(envelope.correlationid, envelope.id, kind, version, content, now)
            for envelope, kind, version, content in due
        ]
        queued = await self._store.enqueue_many(messages, session)
        for (envelope, kind, _, _), message in zip(due, messages, strict=True):
            with event_context(envelope):
                key = message["_id"]
                log.info("notification_queued" if key in queued else "notification_already_queued",
                         message_id=key, kind=str(kind))
        if queued:
            self._on_enqueued(queued)


def new_message(
    correlation_id: str | None,
    causation_id: str | None,
    kind: Kind,
    version: str,
    content: MessageContent,
    now: datetime,
    due_at: datetime | None = None,
) -> Document:
    """A message document, pending, keyed by its idempotency key; `due_at` marks a scheduled one."""
    return {
        "_id": domain.message_key(content.registration_id, kind, version),
        "registration_id": content.registration_id,
        "kind": kind,
        "version": version,
        "status": Status.PENDING,
        "attempts": 0,
        "last_error": None,
        "content": content.model_dump(),
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": due_at or now,
        "due_at": due_at,
        "sent_at": None,
    }
