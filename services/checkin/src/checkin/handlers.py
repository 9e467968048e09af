"""Checkin's ticket projection and its door devices; the scans themselves are decided in door.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from checkin import domain
from checkin.domain import CheckinRefused
from checkin.store import LAST_SEEN_RESOLUTION, Store
from plenary_kit import events
from plenary_kit.auth import hash_token, new_token
from plenary_kit.consumer import Batched, Handler
from plenary_kit.envelope import Envelope
from plenary_kit.flight import SingleFlight
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session

SOURCE = "checkin"

log = get_logger(__name__)

E = TypeVar("E", bound=events.EventData)


def _expect(data: events.EventData, model: type[E]) -> E:
    if not isinstance(data, model):
        raise TypeError(f"expected {model.__name__}, got {type(data).__name__}")
    return data


class Projection:
    """Keeps this service's own view of tickets and registrations, so a scan needs nobody else.

    Ticket and registration events travel on different topics and may arrive in either order; both
    write into documents keyed by their own id and are joined by registration id at scan time.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def handlers(self) -> dict[str, Handler]:
        # One handler for both, so a run of confirmations and promotions is saved together.
        confirmed = Batched(self.confirmed_many)
        return {
            "ticket.issued": Batched(self.tickets_issued),
            "ticket.revoked": self.ticket_revoked,
            "registration.confirmed": confirmed,
            "registration.promoted": confirmed,
            "registration.updated": self.registration_updated,
            "registration.cancelled": self.registration_cancelled,
            "registration.erased": self.registration_erased,
        }

    async def ticket_issued(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        await self.tickets_issued([(envelope, data)], session)

    async def tickets_issued(self, items: list[tuple[Envelope, events.EventData]], session: Session) -> None:
        """New tickets and their events' public keys, each in the next snapshot version of its event."""
        issued = [_expect(data, events.TicketIssued) for _, data in items]
        keys = {
            (ticket.event_id, ticket.key_id): domain.public_key_bytes(ticket.public_key, ticket.key_id)
            for ticket in issued
        }
        await self._store.save_keys(keys, session)
        versions = await self._versions([ticket.event_id for ticket in issued], session)
        await self._store.save_tickets(
            {
                ticket.ticket_id: {
                    "registration_id": ticket.registration_id,
                    "event_id": ticket.event_id,
                    "ticket_type": ticket.ticket_type,
                    "key_id": ticket.key_id,
                    "issued_at": ticket.issued_at,
                    "version": version,
                }
                for ticket, version in zip(issued, versions, strict=True)
            },
            session,
        )

    async def ticket_revoked(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        revoked = _expect(data, events.TicketRevoked)
        await self._store.save_ticket(
            revoked.ticket_id,
            {
                "registration_id": revoked.registration_id,
                "event_id": revoked.event_id,
                "revoked_at": envelope.time,
                "revoke_reason": revoked.reason,
                "version": await self._store.next_version(revoked.event_id, session),
            },
            session,
        )

    async def registration_confirmed(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        await self.confirmed_many([(envelope, data)], session)

    async def confirmed_many(self, items: list[tuple[Envelope, events.EventData]], session: Session) -> None:
        confirmed: list[tuple[Envelope, events.RegistrationConfirmed | events.RegistrationPromoted]] = []
        for envelope, data in items:
            if not isinstance(data, events.RegistrationConfirmed | events.RegistrationPromoted):
                raise TypeError(f"expected a confirmed or promoted registration, got {type(data).__name__}")
            confirmed.append((envelope, data))
        await self._save_confirmed(confirmed, session)

    async def registration_updated(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        updated = _expect(data, events.RegistrationUpdated)
        if updated.status == "confirmed":
            await self._save_confirmed([(envelope, updated)], session)
            return
        # Waiting delegates cannot be admitted, so the projection holds them only if it already did.
        erased = await self._store.is_erased(updated.registration_id, session)
        await self._store.update_registration(
            updated.registration_id,
            {
                **domain.delegate_fields(updated.delegate, erased),
                "ticket_type": updated.ticket_type,
                "sessions": updated.sessions,
                "updated_at": envelope.time,
            },
            session,
        )
        await self._changed(updated.registration_id, updated.event.id, session)

    async def registration_cancelled(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        cancelled = _expect(data, events.RegistrationCancelled)
        erased = cancelled.reason == "erased" or await self._store.is_erased(cancelled.registration_id, session)
        # The name stays, unless erased: earlier scans of this delegate remain readable in the audit.
        await self._store.save_registration(
            cancelled.registration_id,
            {
                **domain.delegate_fields(cancelled.delegate, erased),
                "event_id": cancelled.event.id,
                "cancelled_at": envelope.time,
                "updated_at": envelope.time,
            },
            session,
        )
        await self._changed(cancelled.registration_id, cancelled.event.id, session)
        if await self._store.stop_counting(cancelled.registration_id, session):
            await self._store.bump(cancelled.event.id, {("registered", ""): -1}, session)

    async def registration_erased(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        """The delegate's name and details go; their registration, ticket and admissions still count."""
        erased = _expect(data, events.RegistrationErased)
        await self._store.erase_registration(erased.registration_id, erased.event_id, envelope.time, session)
        await self._changed(erased.registration_id, erased.event_id, session)
        log.info("registration_erased", registration_id=erased.registration_id)

    async def _save_confirmed(
        self,
        items: Sequence[
            tuple[Envelope, events.RegistrationConfirmed | events.RegistrationPromoted | events.RegistrationUpdated]
        ],
        session: Session,
    ) -> None:
        """Delegates who may be admitted: their details, each in the next snapshot version, counted once."""
        held = await self._store.registrations_by_id([data.registration_id for _, data in items], session)
        erased = {key for key, row in held.items() if row.get("erased_at") is not None}
        for event in {data.event.id: data.event for _, data in items}.values():
            await self._store.save_event(_event_document(event), session)
        versions = await self._versions([data.event.id for _, data in items], session)
        counted = await self._store.save_admissible(
            {
                data.registration_id: {
                    **domain.delegate_fields(data.delegate, data.registration_id in erased),
                    "event_id": data.event.id,
                    "ticket_type": data.ticket_type,
                    "sessions": data.sessions,
                    "updated_at": envelope.time,
                    "version": version,
                }
                for (envelope, data), version in zip(items, versions, strict=True)
            },
            held,
            session,
        )
        for event_id in dict.fromkeys(data.event.id for _, data in items):
            of_event = counted & {data.registration_id for _, data in items if data.event.id == event_id}
            if of_event:
                await self._store.bump(event_id, {("registered", ""): len(of_event)}, session)

    async def _versions(self, event_ids: list[str], session: Session) -> list[int]:
        """The next snapshot version of its event for each change, in the order given."""
        taken = {
            event_id: iter(await self._store.next_versions(event_id, event_ids.count(event_id), session))
            for event_id in dict.fromkeys(event_ids)
        }
        return [next(taken[event_id]) for event_id in event_ids]

    async def _changed(self, registration_id: str, event_id: str, session: Session) -> None:
        """Mark the registration as changed in the event's next snapshot version, for devices' delta sync."""
        version = await self._store.next_version(event_id, session)
        await self._store.stamp_registration(registration_id, version, session)

def _event_document(event: events.EventSummary) -> Document:
    """What the door app shows of the event, and the workshops its rooms can check."""
    return {
        "id": event.id,
        "title": event.title,
        "venue": event.venue,
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
        "timezone": event.timezone,
        "sessions": [
            {"code": s.code, "title": s.title, "starts_at": s.starts_at, "ends_at": s.ends_at} for s in event.sessions
        ],
    }


class Devices:
    """Door devices: enrolled by an organiser, each able to scan its own event and nothing else.

    Every scan is authenticated, so a token's device is remembered for a moment rather than read
    each time; a revocation here takes effect at once, one made through another replica within
    REMEMBER seconds.
    """

    REMEMBER = 2.0

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._known: dict[str, tuple[float, Document]] = {}
        self._touched: dict[str, float] = {}
        # Reads of a token's device under way: a phone's scans arriving meanwhile wait for the same one.
        self._looking: SingleFlight[Document | None] = SingleFlight(self._look_up, "device-read")
        # Counts revocations made here, so a read that began before one does not remember its device.
        self._revocations = 0

    async def create(self, event_id: str, spec: domain.DeviceCreate) -> dict[str, Any]:
        token, enrolment_code = new_token(), new_token()
        device: Document = {
            "_id": str(uuid.uuid4()),
            "event_id": event_id,
            "name": spec.name,
            "gates": spec.gates,
            "token_hashes": [hash_token(token)],
            "enrolment_code_hash": hash_token(enrolment_code),
            "created_at": datetime.now(UTC),
            "enrolled_at": None,
            "revoked_at": None,
            "last_seen_at": None,
        }
        await self._store.insert_device(device)
        log.info("device_created", device_id=device["_id"], event_id=event_id)
        return {"device": device, "token": token, "enrolment_code": enrolment_code}

    async def enrol(self, enrolment_code: str) -> dict[str, Any]:
        code_hash = hash_token(enrolment_code)
        token = new_token()
        device = await self._store.enrol_device(code_hash, hash_token(token), datetime.now(UTC))
        if device is None:
            known = await self._store.device_by_enrolment_hash(code_hash)
            if known is None:
                raise CheckinRefused(404, "enrolment_code_unknown", "This enrolment code is not known.")
            if known.get("revoked_at") is not None:
                raise CheckinRefused(409, "device_revoked", "This device has been revoked.")
            raise CheckinRefused(409, "enrolment_code_used", "This enrolment code has already been used.")
        log.info("device_enrolled", device_id=device["_id"], event_id=device["event_id"])
        return {"device": device, "token": token}

    async def authenticate(self, token: str) -> Document | None:
        """The live device holding this token, or None."""
        token_hash = hash_token(token)
        now = self._clock()
        remembered = self._known.get(token_hash)
        if remembered is not None and now - remembered[0] < self.REMEMBER:
            return remembered[1]
        # Once however many of the phone's scans arrive while it is read (see plenary_kit.flight).
        return await self._looking.get(token_hash)

    async def _look_up(self, token_hash: str) -> Document | None:
        revocations, read_at = self._revocations, self._clock()
        device = await self._store.device_by_token_hash(token_hash)
        if device is None or device.get("revoked_at") is not None:
            self._known.pop(token_hash, None)
            return None
        if revocations != self._revocations:
            # Revoked here while it was read: read again rather than remember what may be stale.
            return await self._look_up(token_hash)
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[token_hash] = (read_at, device)
        return device

    async def seen(self, device_id: str, at: datetime) -> None:
        """Note that the device is in use; written at most once per LAST_SEEN_RESOLUTION."""
        now = self._clock()
        if now - self._touched.get(device_id, float("-inf")) < LAST_SEEN_RESOLUTION.total_seconds():
            return
        self._touched[device_id] = now
        await self._store.touch_device(device_id, at)

    async def for_event(self, event_id: str) -> list[Document]:
        return await self._store.devices_for(event_id)

    async def revoke(self, device_id: str) -> Document:
        device = await self._store.revoke_device(device_id, datetime.now(UTC))
        self._revocations += 1
        self._known = {key: kept for key, kept in self._known.items() if kept[1]["_id"] != device_id}
        if device is None:
            raise CheckinRefused(404, "device_not_found", "No such device.")
        log.info("device_revoked", device_id=device_id)
        return device
