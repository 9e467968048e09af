"""Ticketing handlers: issue, reissue and revoke tickets, and rotate keys, with their events, in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pymongo import AsyncMongoClient

from plenary_kit import events
from plenary_kit.consumer import event_context
from plenary_kit.envelope import Envelope
from plenary_kit.events import EventData
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, in_transaction
from plenary_kit.outbox import Outbox
from ticketing import domain
from ticketing.domain import RevocationReason, SigningKey, TicketHolder, TicketStatus
from ticketing.store import Store

SOURCE = "ticketing"

log = get_logger(__name__)

# How an emitted event is wrapped: caused by a consumed event, or started by an organiser's request.
Wrap = Callable[[EventData, str], Envelope]

Snapshot = events.RegistrationConfirmed | events.RegistrationPromoted | events.RegistrationUpdated


def caused_by(envelope: Envelope) -> Wrap:
    return lambda data, subject: envelope.caused(data, source=SOURCE, subject=subject)


def requested(correlation_id: str) -> Wrap:
    return lambda data, subject: Envelope.new(data, source=SOURCE, subject=subject, correlation_id=correlation_id)


def holder_of(data: Snapshot, manage_token_hash: str | None) -> TicketHolder:
    return TicketHolder(
        registration_id=data.registration_id,
        event_id=data.event.id,
        ticket_type=data.ticket_type,
        sessions=tuple(dict.fromkeys(data.sessions)),
        name=data.delegate.name,
        manage_token_hash=manage_token_hash,
    )


class Tickets:
    def __init__(self, store: Store, outbox: Outbox, client: AsyncMongoClient[Document]) -> None:
        self._store = store
        self._outbox = outbox
        self._client = client

    async def issue(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A confirmed or promoted registration gets exactly one ticket, unless it was cancelled."""
        await self.issue_many([(envelope, data)], session)

    async def issue_many(self, items: list[tuple[Envelope, EventData]], session: Session) -> None:
        """Each confirmed or promoted registration gets exactly one ticket, unless it was cancelled.

        A run of registrations is issued together: one read of which are cancelled or have a
        ticket, one insert of the new tickets and one of their events.
        """
        confirmed: list[tuple[Envelope, events.RegistrationConfirmed | events.RegistrationPromoted]] = []
        for envelope, data in items:
            if not isinstance(data, events.RegistrationConfirmed | events.RegistrationPromoted):
                raise TypeError(f"cannot issue a ticket for {envelope.type}")
            confirmed.append((envelope, data))
        latest = {data.event.id: (envelope.time, data.event) for envelope, data in confirmed}
        for seen_at, summary in latest.values():
            await self._store.save_event(domain.printable_event(summary), seen_at, session)
        registration_ids = [data.registration_id for _, data in confirmed]
        cancelled = await self._store.cancelled_among(registration_ids, session)
        ticketed = await self._store.ticketed_among(registration_ids, session)
        due: list[tuple[Wrap, TicketHolder]] = []
        for envelope, data in confirmed:
            registration_id = data.registration_id
            if registration_id in cancelled:
                with event_context(envelope):
                    log.info("ticket_not_issued", registration_id=registration_id, why="registration_cancelled")
            elif registration_id not in ticketed:
                ticketed.add(registration_id)
                due.append((caused_by(envelope), holder_of(data, data.manage_token_hash)))
        await self._issue(due, session)

    async def reissue(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A changed ticket type or workshop choice replaces the ticket, so the code the door checks is right."""
        if not isinstance(data, events.RegistrationUpdated):
            raise TypeError(f"cannot reissue a ticket for {envelope.type}")
        registration_id = data.registration_id
        await self._store.save_event(domain.printable_event(data.event), envelope.time, session)
        current = await self._store.valid_ticket(registration_id, session)
        if current is None:
            return
        if not domain.needs_reissue(current, data.ticket_type, data.sessions):
            await self._store.rename_holder(registration_id, data.delegate.name, session)
            return
        holder = holder_of(data, data.manage_token_hash or current.get("manage_token_hash"))
        await self._replace(caused_by(envelope), holder, session)

    async def revoke(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """A cancelled registration's ticket stops admitting, and no ticket is issued for it later."""
        if not isinstance(data, events.RegistrationCancelled):
            raise TypeError(f"cannot revoke a ticket for {envelope.type}")
        reason = domain.revocation_reason(data.reason)
        await self._store.record_cancellation(data.registration_id, data.event.id, reason, domain.now(), session)
        await self._revoke(caused_by(envelope), data.registration_id, reason, session)

    async def erase(self, envelope: Envelope, data: EventData, session: Session) -> None:
        """An erased delegate's ticket is revoked, and their name and manage token's hash forgotten."""
        if not isinstance(data, events.RegistrationErased):
            raise TypeError(f"cannot erase for {envelope.type}")
        registration_id = data.registration_id
        reason = RevocationReason.ERASED
        await self._store.record_cancellation(registration_id, data.event_id, reason, domain.now(), session)
        await self._revoke(caused_by(envelope), registration_id, reason, session)
        await self._store.forget_holder(registration_id, session)
        log.info("registration_erased", registration_id=registration_id)

    async def reissue_for_organiser(self, registration_id: str, correlation_id: str) -> Document:
        """A new code for the same ticket type and workshops (a lost or shared ticket); the old one is revoked."""

        async def work(session: Session) -> Document:
            current = await self._store.valid_ticket(registration_id, session)
            if current is None:
                raise domain.no_valid_ticket()
            holder = TicketHolder(
                registration_id=registration_id,
                event_id=current["event_id"],
                ticket_type=current["ticket_type"],
                sessions=tuple(current.get("sessions", [])),
                name=current.get("holder_name"),
                manage_token_hash=current.get("manage_token_hash"),
            )
            return await self._replace(requested(correlation_id), holder, session)

        return await in_transaction(self._client, work)

    async def rotate_key(self, event_id: str) -> SigningKey:
        """A fresh active key for the event; the previous one signs nothing more but still verifies."""

        async def work(session: Session) -> SigningKey:
            current = await self._store.active_key(event_id, session)
            if current is None:
                raise domain.no_signing_key()
            now = domain.now()
            # Retired first: the one-active-key index would refuse the new key beside the old.
            await self._store.retire_key(current.key_id, now, session)
            key = SigningKey.generate(event_id, now)
            await self._store.insert_key(key, session)
            return key

        key = await in_transaction(self._client, work)
        log.info("signing_key_rotated", event_id=event_id, key_id=key.key_id)
        return key

    async def _replace(self, wrap: Wrap, holder: TicketHolder, session: Session) -> Document:
        # Revoked first: the one-valid-ticket index would refuse the new ticket beside the old.
        await self._revoke(wrap, holder.registration_id, RevocationReason.REISSUED, session)
        [ticket] = await self._issue([(wrap, holder)], session)
        return ticket

    async def _issue(self, due: list[tuple[Wrap, TicketHolder]], session: Session) -> list[Document]:
        """New tickets, signed with each event's active key, and their `ticket.issued` events."""
        tickets: list[Document] = []
        issued: list[Envelope] = []
        for event_id in dict.fromkeys(holder.event_id for _, holder in due):
            of_event = [(wrap, holder) for wrap, holder in due if holder.event_id == event_id]
            key = await self._signing_key(event_id, session)
            entitlements = await self._entitlements(event_id, [holder for _, holder in of_event], session)
            for (wrap, holder), granted in zip(of_event, entitlements, strict=True):
                ticket = self._new_ticket(key, holder, granted)
                tickets.append(ticket)
                data = events.TicketIssued(
                    ticket_id=ticket["_id"],
                    registration_id=holder.registration_id,
                    event_id=event_id,
                    ticket_type=holder.ticket_type,
                    code=ticket["code"],
                    key_id=key.key_id,
                    public_key=key.public_key_text,
                    issued_at=ticket["issued_at"],
                )
                issued.append(wrap(data, holder.registration_id))
        if not tickets:
            return []
        await self._store.insert_tickets(tickets, session)
        await self._outbox.add(session, *issued)
        for ticket, envelope in zip(tickets, issued, strict=True):
            with event_context(envelope):
                log.info(
                    "ticket_issued",
                    ticket_id=ticket["_id"],
                    registration_id=ticket["registration_id"],
                    event_id=ticket["event_id"],
                )
        return tickets

    @staticmethod
    def _new_ticket(key: SigningKey, holder: TicketHolder, entitlements: list[int]) -> Document:
        ticket_id = str(uuid.uuid4())
        ticket: Document = {
            "_id": ticket_id,
            "registration_id": holder.registration_id,
            "event_id": holder.event_id,
            "ticket_type": holder.ticket_type,
            "sessions": list(holder.sessions),
            "entitlements": entitlements,
            "code": key.sign_ticket(ticket_id, holder.ticket_type, entitlements),
            "key_id": key.key_id,
            "status": TicketStatus.VALID,
            "manage_token_hash": holder.manage_token_hash,
            "issued_at": domain.now(),
        }
        if holder.name is not None:
            ticket["holder_name"] = holder.name
        return ticket

    async def _entitlements(self, event_id: str, holders: list[TicketHolder], session: Session) -> list[list[int]]:
        """The session numbers for each holder's workshops, numbering the event's sessions on first sight."""
        if not any(holder.sessions for holder in holders):
            return [[] for _ in holders]
        numbered = await self._store.numbered_sessions(event_id, session)
        details = await self._store.event(event_id, session)
        in_event_order = [s["code"] for s in details.get("sessions", [])] if details else []
        wanted = [code for holder in holders for code in holder.sessions]
        fresh = domain.sessions_to_number(numbered, [*in_event_order, *wanted])
        if fresh:
            await self._store.number_sessions(event_id, fresh, session)
            numbered += fresh
        return [domain.entitlements(numbered, holder.sessions) for holder in holders]

    async def _revoke(self, wrap: Wrap, registration_id: str, reason: RevocationReason, session: Session) -> None:
        ticket = await self._store.revoke_ticket(registration_id, reason, domain.now(), session)
        if ticket is None:
            return
        revoked = events.TicketRevoked(
            ticket_id=ticket["_id"],
            registration_id=registration_id,
            event_id=ticket["event_id"],
            reason=reason,
        )
        await self._outbox.add(session, wrap(revoked, registration_id))
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
