"""Ticketing event handlers: issue and revoke tickets, with their events, in the consumer's transaction."""

from __future__ import annotations

import uuid

from plenary_kit import events
from plenary_kit.envelope import Envelope
from plenary_kit.events import EventData
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session
from plenary_kit.outbox import Outbox
from ticketing import domain
from ticketing.domain import RevocationReason, SigningKey, TicketStatus
from ticketing.store import Store

SOURCE = "ticketing"

log = get_logger(__name__)


class Tickets:
    def __init__(self, store: Store, outbox: Outbox) -> None:
        self._store = store
        self._outbox = outbox

    async def issue(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A confirmed or promoted registration gets exactly one ticket, unless it was cancelled."""
        if not isinstance(data, events.RegistrationConfirmed | events.RegistrationPromoted):
            raise TypeError(f"cannot issue a ticket for {envelope.type}")
        registration_id = data.registration_id
        if await self._store.is_cancelled(registration_id, session):
            log.info("ticket_not_issued", registration_id=registration_id, why="registration_cancelled")
            return
        if await self._store.ticket_for_registration(registration_id, session) is not None:
            return
        event_id = data.event.id
        key = await self._signing_key(event_id, session)
        issued_at = domain.now()
        ticket_id = str(uuid.uuid4())
        ticket: Document = {
            "_id": ticket_id,
            "registration_id": registration_id,
            "event_id": event_id,
            "ticket_type": data.ticket_type,
            "code": key.sign_ticket(ticket_id, data.ticket_type),
            "key_id": key.key_id,
            "status": TicketStatus.VALID,
            "manage_token_hash": data.manage_token_hash,
            "issued_at": issued_at,
        }
        await self._store.insert_ticket(ticket, session)
        issued = events.TicketIssued(
            ticket_id=ticket_id,
            registration_id=registration_id,
            event_id=event_id,
            ticket_type=data.ticket_type,
            code=ticket["code"],
            key_id=key.key_id,
            public_key=key.public_key_text,
            issued_at=issued_at,
        )
        await self._outbox.add(session, envelope.caused(issued, source=SOURCE, subject=registration_id))
        log.info("ticket_issued", ticket_id=ticket_id, registration_id=registration_id, event_id=event_id)

    async def revoke(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A cancelled registration's ticket stops admitting, and no ticket is issued for it later."""
        if not isinstance(data, events.RegistrationCancelled):
            raise TypeError(f"cannot revoke a ticket for {envelope.type}")
        registration_id = data.registration_id
        at = domain.now()
        await self._store.record_cancellation(registration_id, data.event.id, at, session)
        ticket = await self._store.revoke_ticket(registration_id, RevocationReason.CANCELLED, at, session)
        if ticket is None:
            return
        revoked = events.TicketRevoked(
            ticket_id=ticket["_id"],
            registration_id=registration_id,
            event_id=ticket["event_id"],
            reason=RevocationReason.CANCELLED,
        )
        await self._outbox.add(session, envelope.caused(revoked, source=SOURCE, subject=registration_id))
        log.info("ticket_revoked", ticket_id=ticket["_id"], registration_id=registration_id)

    async def _signing_key(self, event_id: str, session: Session) -> SigningKey:
        """The event's active key, made on its first ticket inside this same transaction.

        Two first tickets for one event may race here; the loser's insert fails on the
        one-active-key index and its transaction is retried, reading the winner's key.
        """
        key = await self._store.active_key(event_id, session)
        if key is None:
            key = SigningKey.generate(event_id, domain.now())
            await self._store.insert_key(key, session)
        return key
