"""Registration and ticket events: record the facts, decide which messages are due, queue them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias, TypeVar

from notifications import domain
from notifications.domain import Kind, MessageContent, RegistrationStatus, Status
from notifications.store import Store
from plenary_kit import events
from plenary_kit.consumer import Handler
from plenary_kit.envelope import Envelope
from plenary_kit.events import EventData
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session

log = get_logger(__name__)

D = TypeVar("D", bound=EventData)


class UnexpectedEvent(TypeError):
    """A handler was given data of another event type: a wiring bug, so the event is dead-lettered."""


def _expect(data: EventData, model: type[D]) -> D:
    if not isinstance(data, model):
        raise UnexpectedEvent(f"expected {model.__name__}, got {type(data).__name__}")
    return data


Snapshot: TypeAlias = events.RegistrationConfirmed | events.RegistrationWaitlisted | events.RegistrationPromoted


def _snapshot(data: Snapshot) -> Document:
    return {
        "delegate": data.delegate.model_dump(),
        "event": data.event.model_dump(),
        "ticket_type": data.ticket_type,
        "sessions": list(data.sessions),
    }


class Notifications:
    """Consumed-event handlers; each runs inside the consumer's transaction, with its session."""

    def __init__(self, store: Store, on_enqueued: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._on_enqueued = on_enqueued

    def subscriptions(self) -> dict[str, Handler]:
        return {
            "registration.confirmed": self.registration_confirmed,
            "registration.waitlisted": self.registration_waitlisted,
            "registration.promoted": self.registration_promoted,
            "registration.cancelled": self.registration_cancelled,
            "ticket.issued": self.ticket_issued,
        }

    async def registration_confirmed(self, envelope: Envelope, data: EventData, session: Session) -> None:
        confirmed = _expect(data, events.RegistrationConfirmed)
        projection = await self._store.record_facts(
            confirmed.registration_id,
            {"snapshot": _snapshot(confirmed), "confirmed_at": envelope.time, "updated_at": datetime.now(UTC)},
            session,
        )
        await self._confirm_if_ready(envelope, projection, session)

    async def registration_waitlisted(self, envelope: Envelope, data: EventData, session: Session) -> None:
        waitlisted = _expect(data, events.RegistrationWaitlisted)
        projection = await self._store.record_facts(
            waitlisted.registration_id,
            {
                "snapshot": _snapshot(waitlisted),
                "waitlisted_at": envelope.time,
                "waitlist_position": waitlisted.position,
                "updated_at": datetime.now(UTC),
            },
            session,
        )
        # A late copy must not tell a confirmed or cancelled delegate that they are waiting.
        if domain.registration_status(projection) == RegistrationStatus.WAITLISTED:
            content = MessageContent(
                registration_id=waitlisted.registration_id,
                waitlist_position=waitlisted.position,
                **_snapshot(waitlisted),
            )
            await self._enqueue(envelope, Kind.WAITLISTED, "1", content, session)

    async def registration_promoted(self, envelope: Envelope, data: EventData, session: Session) -> None:
        promoted = _expect(data, events.RegistrationPromoted)
        projection = await self._store.record_facts(
            promoted.registration_id,
            {
                "snapshot": _snapshot(promoted),
                "confirmed_at": envelope.time,
                "promoted_at": envelope.time,
                "updated_at": datetime.now(UTC),
            },
            session,
        )
        if domain.registration_status(projection) == RegistrationStatus.CONFIRMED:
            content = MessageContent(registration_id=promoted.registration_id, **_snapshot(promoted))
            await self._enqueue(envelope, Kind.PROMOTED, "1", content, session)
        await self._confirm_if_ready(envelope, projection, session)

    async def registration_cancelled(self, envelope: Envelope, data: EventData, session: Session) -> None:
        cancelled = _expect(data, events.RegistrationCancelled)
        projection = await self._store.record_facts(
            cancelled.registration_id,
            {
                # Dotted paths: the cancellation carries no ticket type or sessions, so keep those.
                "snapshot.delegate": cancelled.delegate.model_dump(),
                "snapshot.event": cancelled.event.model_dump(),
                "cancelled_at": envelope.time,
                "previous_status": cancelled.previous_status,
                "updated_at": datetime.now(UTC),
            },
            session,
        )
        content = MessageContent(
            registration_id=cancelled.registration_id,
            delegate=cancelled.delegate,
            event=cancelled.event,
            ticket_type=projection["snapshot"].get("ticket_type"),
            sessions=projection["snapshot"].get("sessions", []),
            previous_status=cancelled.previous_status,
        )
        await self._enqueue(envelope, Kind.CANCELLED, "1", content, session)

    async def ticket_issued(self, envelope: Envelope, data: EventData, session: Session) -> None:
        issued = _expect(data, events.TicketIssued)
        projection = await self._store.record_facts(
            issued.registration_id,
            {
                "ticket": {"ticket_id": issued.ticket_id, "code": issued.code},
                "ticket_issued_at": issued.issued_at,
                "updated_at": datetime.now(UTC),
            },
            session,
        )
        await self._confirm_if_ready(envelope, projection, session)

    async def _confirm_if_ready(self, envelope: Envelope, projection: Document, session: Session) -> None:
        """Queue the ticket email once both halves are known, from whichever event brought the second."""
        content = domain.confirmation_content(projection)
        if content is not None and content.ticket is not None:
            await self._enqueue(envelope, Kind.CONFIRMATION, content.ticket.ticket_id, content, session)

    async def _enqueue(
        self, envelope: Envelope, kind: Kind, version: str, content: MessageContent, session: Session
    ) -> None:
        key = domain.message_key(content.registration_id, kind, version)
        now = datetime.now(UTC)
        message: Document = {
            "_id": key,
            "registration_id": content.registration_id,
            "kind": kind,
            "version": version,
            "status": Status.PENDING,
            "attempts": 0,
            "last_error": None,
            "content": content.model_dump(),
            "correlation_id": envelope.correlationid,
            "causation_id": envelope.id,
            "created_at": now,
            "updated_at": now,
            "next_attempt_at": now,
            "sent_at": None,
        }
        if await self._store.enqueue(message, session):
            log.info("notification_queued", message_id=key, kind=str(kind))
            self._on_enqueued()
        else:
            log.info("notification_already_queued", message_id=key, kind=str(kind))
