"""Checkin commands and event handlers: load, decide with the domain rules, save state and events together."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import Counter
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from checkin import domain
from checkin.domain import Admission, Attendee, CheckinRefused, Decision, Movement, TicketState, Verdict
from checkin.store import Store
from plenary_kit import events
from plenary_kit.auth import hash_token, new_token
from plenary_kit.consumer import Handler
from plenary_kit.envelope import Envelope
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, in_transaction
from plenary_kit.outbox import Outbox
from plenary_kit.web import correlation_id

SOURCE = "checkin"

log = get_logger(__name__)

SCANS = Counter("plenary_checkin_scans_total", "Scans decided, by verdict", ["verdict", "direction"])

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
        return {
            "ticket.issued": self.ticket_issued,
            "ticket.revoked": self.ticket_revoked,
            "registration.confirmed": self.registration_confirmed,
            "registration.promoted": self.registration_confirmed,
            "registration.updated": self.registration_updated,
            "registration.cancelled": self.registration_cancelled,
            "registration.erased": self.registration_erased,
        }

    async def ticket_issued(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        issued = _expect(data, events.TicketIssued)
        public_key = domain.public_key_bytes(issued.public_key, issued.key_id)
        await self._store.save_key(issued.event_id, issued.key_id, public_key, session)
        await self._store.save_ticket(
            issued.ticket_id,
            {
                "registration_id": issued.registration_id,
                "event_id": issued.event_id,
                "ticket_type": issued.ticket_type,
                "key_id": issued.key_id,
                "issued_at": issued.issued_at,
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
            },
            session,
        )

    async def registration_confirmed(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        if not isinstance(data, events.RegistrationConfirmed | events.RegistrationPromoted):
            raise TypeError(f"expected a confirmed or promoted registration, got {type(data).__name__}")
        await self._save_confirmed(envelope, data, session)

    async def registration_updated(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        updated = _expect(data, events.RegistrationUpdated)
        if updated.status == "confirmed":
            await self._save_confirmed(envelope, updated, session)
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
        if await self._store.stop_counting(cancelled.registration_id, session):
            await self._store.bump(cancelled.event.id, {("registered", ""): -1}, session)

    async def registration_erased(self, envelope: Envelope, data: events.EventData, session: Session) -> None:
        """The delegate's name and details go; their registration, ticket and admissions still count."""
        erased = _expect(data, events.RegistrationErased)
        await self._store.erase_registration(erased.registration_id, erased.event_id, envelope.time, session)
        log.info("registration_erased", registration_id=erased.registration_id)

    async def _save_confirmed(
        self,
        envelope: Envelope,
        data: events.RegistrationConfirmed | events.RegistrationPromoted | events.RegistrationUpdated,
        session: Session,
    ) -> None:
        erased = await self._store.is_erased(data.registration_id, session)
        await self._store.save_registration(
            data.registration_id,
            {
                **domain.delegate_fields(data.delegate, erased),
                "event_id": data.event.id,
                "ticket_type": data.ticket_type,
                "sessions": data.sessions,
                "updated_at": envelope.time,
            },
            session,
        )
        if await self._store.start_counting(data.registration_id, session):
            await self._store.bump(data.event.id, {("registered", ""): 1}, session)


class _Contended(Exception):
    """Another scan of the same ticket changed it first; decide again on fresh state."""


class Scans:
    """Decides scans at the door: the first scan wins, every scan is audited, counters move with it."""

    MAX_ATTEMPTS = 8

    def __init__(
        self, client: AsyncMongoClient[Document], store: Store, outbox: Outbox, concurrent_transactions: int = 8
    ) -> None:
        self._client = client
        self._store = store
        self._outbox = outbox
        # Every admission updates the event's counter documents; letting only a few transactions
        # reach them at once keeps write conflicts, and so latency at the doors, low.
        self._admission = asyncio.Semaphore(concurrent_transactions)
        # A key id names one public key for good, so a key once found never needs reading again.
        self._keys: dict[tuple[str, str], bytes] = {}

    async def scan(self, event_id: str, request: domain.ScanRequest, device_id: str | None) -> dict[str, Any]:
        nonce_key = f"{event_id}:{request.nonce}"
        earlier = await self._store.scan_by_nonce(nonce_key)
        if earlier is not None:
            return earlier["reply"]  # type: ignore[no-any-return]

        code = domain.parse_code(request.code)
        public_key = await self._public_key(event_id, code.key_id) if code is not None else None
        rejection = domain.check_code(code, event_id, public_key)
        # Only a genuine code's ticket id is trusted in events; the audit keeps whatever was decoded.
        genuine = code.ticket_id if code is not None and rejection is None else None
        received_at = domain.to_millis(datetime.now(UTC))
        at = domain.scan_time(request, received_at)

        async def work(session: Session) -> dict[str, Any]:
            scan_id = str(uuid.uuid4())
            if genuine is None:
                decision, attendee, ticket_type = Decision(rejection or Verdict.MALFORMED), None, ""
            else:
                decision, attendee, ticket_type = await self._decide(genuine, request.direction, session)
                await self._record_movement(decision.movement, event_id, genuine, ticket_type, request, at, session)
            changes = domain.counter_changes(decision.movement, request.gate, ticket_type)
            await self._store.bump(event_id, changes, session)
            body = domain.reply(decision, attendee, scan_id)
            await self._store.insert_scan(
                {
                    "_id": scan_id,
                    "nonce_key": nonce_key,
                    "event_id": event_id,
                    "ticket_id": code.ticket_id if code is not None else None,
                    "gate": request.gate,
                    "direction": request.direction.value,
                    "verdict": decision.verdict.value,
                    "movement": decision.movement.value,
                    "device_id": device_id,
                    "scanned_at": request.scanned_at,
                    "received_at": received_at,
                    "offline": request.offline,
                    "reply": body,
                },
                session,
            )
            data = domain.attendance_event(
                decision.verdict,
                scan_id=scan_id,
                event_id=event_id,
                ticket_id=genuine,
                gate=request.gate,
                direction=request.direction,
                scanned_at=at,
                device_id=device_id,
            )
            envelope = Envelope.new(data, source=SOURCE, subject=genuine or scan_id, correlation_id=correlation_id())
            await self._outbox.add(session, envelope)
            return body

        for _ in range(self.MAX_ATTEMPTS):
            try:
                async with self._admission:
                    body = await in_transaction(self._client, work)
            except (DuplicateKeyError, _Contended):
                # A concurrent scan of this ticket, or a retry of this very nonce, got there first.
                earlier = await self._store.scan_by_nonce(nonce_key)
                if earlier is not None:
                    return earlier["reply"]  # type: ignore[no-any-return]
                continue
            self._outbox.nudge()
            if device_id is not None:
                await self._store.touch_device(device_id, received_at)
            SCANS.labels(body["verdict"], request.direction.value).inc()
            log.info("scan_decided", scan_id=body["scan_id"], verdict=body["verdict"], gate=request.gate)
            return body
        raise CheckinRefused(503, "scan_contended", "Too many scans of this ticket at once; please scan again.")

    async def _decide(
        self, ticket_id: str, direction: domain.Direction, session: Session
    ) -> tuple[Decision, Attendee | None, str]:
        """The verdict for a genuine code, with whom it admits and their ticket type where known."""
        ticket = await self._store.ticket(ticket_id, session)
        registration = None
        if ticket is not None:
            registration = await self._store.registration(ticket["registration_id"], session)
        state = _ticket_state(ticket, registration)
        admission = _admission(await self._store.admission(ticket_id, session))
        decision = domain.decide(state, admission, direction)
        if state is None:
            return decision, None, ""
        attendee = Attendee(name=registration["name"], ticket_type=state.ticket_type) if registration else None
        return decision, attendee, state.ticket_type

    async def _record_movement(
        self,
        movement: Movement,
        event_id: str,
        ticket_id: str,
        ticket_type: str,
        request: domain.ScanRequest,
        at: datetime,
        session: Session,
    ) -> None:
        if movement is Movement.FIRST_ENTRY:
            # The unique _id makes the first admission win even if two transactions both saw none.
            await self._store.insert_admission(
                {
                    "_id": ticket_id,
                    "event_id": event_id,
                    "ticket_type": ticket_type,
                    "first_at": at,
                    "first_gate": request.gate,
                    "inside": True,
                    "last_at": at,
                    "last_gate": request.gate,
                    "entries": 1,
                    "exits": 0,
                },
                session,
            )
        elif movement in (Movement.REENTRY, Movement.EXIT):
            inside = movement is Movement.REENTRY
            if not await self._store.move(ticket_id, inside=inside, at=at, gate=request.gate, session=session):
                raise _Contended()

    async def _public_key(self, event_id: str, key_id: str) -> bytes | None:
        cached = self._keys.get((event_id, key_id))
        if cached is not None:
            return cached
        public_key = await self._store.public_key(event_id, key_id)
        if public_key is not None:
            self._keys[(event_id, key_id)] = public_key
        return public_key

    async def attendance(self, event_id: str) -> dict[str, Any]:
        return domain.attendance(await self._store.counters_for(event_id))

    async def recent(self, event_id: str, limit: int) -> list[Document]:
        return await self._store.recent_scans(event_id, limit)


def _ticket_state(ticket: Document | None, registration: Document | None) -> TicketState | None:
    # A revocation can arrive before its issue; until issued, the ticket is not one we can admit.
    if ticket is None or not ticket.get("ticket_type"):
        return None
    return TicketState(
        ticket_type=ticket["ticket_type"],
        revoked=ticket.get("revoked_at") is not None,
        cancelled=registration is not None and registration.get("cancelled_at") is not None,
    )


def _admission(admission: Document | None) -> Admission | None:
    if admission is None:
        return None
    return Admission(first_at=admission["first_at"], first_gate=admission["first_gate"], inside=admission["inside"])


class Devices:
    """Door devices: enrolled by an organiser, each able to scan its own event and nothing else."""

    def __init__(self, store: Store) -> None:
        self._store = store

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
        device = await self._store.device_by_token_hash(hash_token(token))
        if device is None or device.get("revoked_at") is not None:
            return None
        return device

    async def for_event(self, event_id: str) -> list[Document]:
        return await self._store.devices_for(event_id)

    async def revoke(self, device_id: str) -> Document:
        device = await self._store.revoke_device(device_id, datetime.now(UTC))
        if device is None:
            raise CheckinRefused(404, "device_not_found", "No such device.")
        log.info("device_revoked", device_id=device_id)
        return device
