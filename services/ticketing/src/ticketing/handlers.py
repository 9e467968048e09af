"""Ticketing event handlers: issue, reissue and revoke tickets, with their events, in the consumer's transaction."""

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
        if await self._store.has_ticket(registration_id, session):
            return
        await self._issue(envelope, data, data.manage_token_hash, session)

    async def reissue(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A changed ticket type replaces the ticket, so the code the door verifies names the right type."""
        if not isinstance(data, events.RegistrationUpdated):
            raise TypeError(f"cannot reissue a ticket for {envelope.type}")
        registration_id = data.registration_id
        current = await self._store.valid_ticket(registration_id, session)
        if current is None or not domain.needs_reissue(current["ticket_type"], data.ticket_type):
            return
        # Revoked first: the one-valid-ticket index would refuse the new ticket beside the old.
        await self._revoke(envelope, registration_id, RevocationReason.REISSUED, session)
        await self._issue(envelope, data, data.manage_token_hash or current.get("manage_token_hash"), session)

    async def revoke(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A cancelled registration's ticket stops admitting, and no ticket is issued for it later."""
        if not isinstance(data, events.RegistrationCancelled):
            raise TypeError(f"cannot revoke a ticket for {envelope.type}")
        reason = domain.revocation_reason(data.reason)
        await self._store.record_cancellation(data.registration_id, data.event.id, reason, domain.now(), session)
        await self._revoke(envelope, data.registration_id, reason, session)

    async def erase(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """An erased delegate's ticket is revoked and their manage token's hash forgotten."""
        if not isinstance(data, events.RegistrationErased):
            raise TypeError(f"cannot erase for {envelope.type}")
        registration_id = data.registration_id
        reason = RevocationReason.ERASED
        await self._store.record_cancellation(registration_id, data.event_id, reason, domain.now(), session)
        await self._revoke(envelope, registration_id, reason, session)
        await self._store.forget_manage_token(registration_id, session)
        log.info("registration_erased", registration_id=registration_id)

    async def _issue(
        self,
        envelope: Envelope,
        data: events.RegistrationConfirmed | events.RegistrationPromoted | events.RegistrationUpdated,
        manage_token_hash: str | None,
        session: Session,
    ) -> None:
        registration_id = data.registration_id
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
            "manage_token_hash": manage_token_hash,
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

    async def _revoke(
        self, envelope: Envelope, registration_id: str, reason: RevocationReason, session: Session
    ) -> None:
        ticket = await self._store.revoke_ticket(registration_id, reason, domain.now(), session)
        if ticket is None:
            return
        revoked = events.TicketRevoked(
            ticket_id=ticket["_id"],
            registration_id=registration_id,
            event_id=ticket["event_id"],
            reason=reason,
        )
        await self._outbox.add(session, envelope.caused(revoked, source=SOURCE, subject=registration_id))
        log.info("ticket_revoked", ticket_id=ticket["_id"], registration_id=registration_id, reason=str(reason))

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
