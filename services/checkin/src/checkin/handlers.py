"""Checkin commands and event handlers: load, decide with the domain rules, save state and events together."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import Counter
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from checkin import domain
from checkin.domain import Admission, Attendee, CheckinRefused, Decision, Movement, TicketState, Verdict
from checkin.store import LAST_SEEN_RESOLUTION, Store
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
        version = await self._store.next_version(issued.event_id, session)
        await self._store.stamp_ticket(issued.ticket_id, version, session)

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
        version = await self._store.next_version(revoked.event_id, session)
        await self._store.stamp_ticket(revoked.ticket_id, version, session)

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
        envelope: Envelope,
        data: events.RegistrationConfirmed | events.RegistrationPromoted | events.RegistrationUpdated,
        session: Session,
    ) -> None:
        erased = await self._store.is_erased(data.registration_id, session)
        await self._store.save_event(_event_document(data.event), session)
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
        await self._changed(data.registration_id, data.event.id, session)
        if await self._store.start_counting(data.registration_id, session):
            await self._store.bump(data.event.id, {("registered", ""): 1}, session)

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


class _Contended(Exception):
    """Another scan of the same ticket changed it first; decide again on fresh state."""


class Scans:
    """Decides scans at the door: the first scan wins, every scan is audited, counters move with it."""

    MAX_ATTEMPTS = 8

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        store: Store,
        outbox: Outbox,
        concurrent_transactions: int = 8,
        on_decided: Callable[[str], None] | None = None,
        on_seen: Callable[[str, datetime], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._outbox = outbox
        # Told the event id after every scan, so live views move at once.
        self._on_decided = on_decided
        # Told which device scanned, for its last-seen time.
        self._on_seen = on_seen
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
            alert: Document | None = None
            if genuine is None:
                decision, attendee = Decision(rejection or Verdict.MALFORMED), None
                changes: dict[domain.CounterKey, int] = {}
            else:
                # An offline upload is judged as the ticket stood when it was scanned.
                ticket, registration = await self._holder(genuine, session)
                state = _ticket_state(ticket, registration, at if request.offline else None)
                attendee = _attendee(state, registration)
                if request.session is not None:
                    decision, changes = await self._enter_room(genuine, event_id, state, request, at, session)
                else:
                    decision, changes = await self._pass_gate(
                        genuine, event_id, state, registration, request, at, device_id, session
                    )
                    if domain.is_double_entry(request, decision, device_id):
                        alert = await self._raise_double_entry(
                            event_id, genuine, attendee, decision, request, at, device_id, session
                        )
                        changes[("alerts", "")] = 1
            await self._store.bump(event_id, changes, session)
            body = domain.reply(decision, attendee, scan_id)
            if alert is not None:
                body["alert"] = alert_public(alert)
            await self._store.insert_scan(
                {
                    "_id": scan_id,
                    "nonce_key": nonce_key,
                    "event_id": event_id,
                    "ticket_id": code.ticket_id if code is not None else None,
                    "gate": request.gate,
                    "session": request.session,
                    "direction": request.direction.value,
                    "verdict": decision.verdict.value,
                    "movement": decision.movement.value,
                    "device_id": device_id,
                    "scanned_at": request.scanned_at,
                    "received_at": received_at,
                    "offline": request.offline,
                    "offline_verdict": request.offline_verdict.value if request.offline_verdict else None,
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
            if self._on_decided is not None:
                self._on_decided(event_id)
            if device_id is not None and self._on_seen is not None:
                await self._on_seen(device_id, received_at)
            SCANS.labels(body["verdict"], request.direction.value).inc()
            log.info("scan_decided", scan_id=body["scan_id"], verdict=body["verdict"], gate=request.gate)
            return body
        raise CheckinRefused(503, "scan_contended", "Too many scans of this ticket at once; please scan again.")

    async def _holder(self, ticket_id: str, session: Session) -> tuple[Document | None, Document | None]:
        ticket = await self._store.ticket(ticket_id, session)
        registration = None
        if ticket is not None:
            registration = await self._store.registration(ticket["registration_id"], session)
        return ticket, registration

    async def _pass_gate(
        self,
        ticket_id: str,
        event_id: str,
        state: TicketState | None,
        registration: Document | None,
        request: domain.ScanRequest,
        at: datetime,
        device_id: str | None,
        session: Session,
    ) -> tuple[Decision, dict[domain.CounterKey, int]]:
        """A scan at a venue gate: admitted, already inside, out and back in, or refused."""
        admission = _admission(await self._store.admission(ticket_id, session))
        decision = domain.decide(state, admission, request.direction)
        movement = decision.movement
        if movement is Movement.FIRST_ENTRY:
            # The unique _id makes the first admission win even if two transactions both saw none.
            await self._store.insert_admission(
                {
                    "_id": ticket_id,
                    "event_id": event_id,
                    "ticket_type": state.ticket_type if state else "",
                    "first_at": at,
                    "first_gate": request.gate,
                    "first_device_id": device_id,
                    "inside": True,
                    "last_at": at,
                    "last_gate": request.gate,
                    "last_device_id": device_id,
                    "entries": 1,
                    "exits": 0,
                },
                session,
            )
        elif movement in (Movement.REENTRY, Movement.EXIT):
            inside = movement is Movement.REENTRY
            moved = await self._store.move(
                ticket_id, inside=inside, at=at, gate=request.gate, device_id=device_id, session=session
            )
            if not moved:
                raise _Contended()
        profile = domain.Profile(
            ticket_type=state.ticket_type if state else "",
            phase=registration.get("phase") if registration else None,
            local_authority=registration.get("local_authority") if registration else None,
        )
        return decision, domain.counter_changes(movement, request.gate, profile, at)

    async def _enter_room(
        self,
        ticket_id: str,
        event_id: str,
        state: TicketState | None,
        request: domain.ScanRequest,
        at: datetime,
        session: Session,
    ) -> tuple[Decision, dict[domain.CounterKey, int]]:
        """A scan at a workshop room's door: only the delegate's own workshops, counted once each."""
        room = request.session or ""
        decision = domain.decide_room(
            state, room, _admission(await self._store.room_admission(ticket_id, room, session)), request.direction
        )
        if decision.movement is Movement.FIRST_ENTRY:
            await self._store.insert_room_admission(
                {
                    "_id": f"{ticket_id}:{room}",
                    "event_id": event_id,
                    "ticket_id": ticket_id,
                    "session": room,
                    "first_at": at,
                    "first_gate": request.gate,
                    "inside": True,
                },
                session,
            )
        return decision, domain.room_changes(decision.movement, room)

    async def _raise_double_entry(
        self,
        event_id: str,
        ticket_id: str,
        attendee: Attendee | None,
        decision: Decision,
        request: domain.ScanRequest,
        at: datetime,
        device_id: str | None,
        session: Session,
    ) -> Document:
        earlier = decision.first_admitted
        assert earlier is not None
        alert: Document = {
            "_id": str(uuid.uuid4()),
            "event_id": event_id,
            "kind": "double_entry",
            "ticket_id": ticket_id,
            "name": attendee.name if attendee else "",
            "first": {"at": earlier.last_at or earlier.first_at, "gate": earlier.first_gate,
                      "device_id": earlier.last_device_id},
            "second": {"at": at, "gate": request.gate, "device_id": device_id},
            "raised_at": domain.to_millis(datetime.now(UTC)),
        }
        await self._store.insert_alert(alert, session)
        log.warning("double_entry", event_id=event_id, ticket_id=ticket_id, gate=request.gate)
        return alert

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


def _ticket_state(
    ticket: Document | None, registration: Document | None, at: datetime | None = None
) -> TicketState | None:
    if ticket is None:
        return None
    return domain.state_at(
        ticket.get("ticket_type"),
        ticket.get("revoked_at"),
        registration.get("cancelled_at") if registration else None,
        registration.get("sessions", []) if registration else [],
        at,
    )


def _attendee(state: TicketState | None, registration: Document | None) -> Attendee | None:
    if state is None or registration is None:
        return None
    return Attendee(name=registration["name"], ticket_type=state.ticket_type)


def _admission(admission: Document | None) -> Admission | None:
    if admission is None:
        return None
    return Admission(
        first_at=admission["first_at"],
        first_gate=admission["first_gate"],
        inside=admission["inside"],
        last_device_id=admission.get("last_device_id"),
        last_at=admission.get("last_at"),
    )


def alert_public(alert: Document) -> dict[str, Any]:
    def side(part: Document) -> dict[str, Any]:
        return {"at": domain.to_millis(part["at"]).isoformat(), "gate": part["gate"], "device_id": part["device_id"]}

    return {
        "alert_id": alert["_id"],
        "kind": alert["kind"],
        "ticket_id": alert["ticket_id"],
        "name": alert["name"],
        "first": side(alert["first"]),
        "second": side(alert["second"]),
        "raised_at": domain.to_millis(alert["raised_at"]).isoformat(),
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
        device = await self._store.device_by_token_hash(token_hash)
        if device is None or device.get("revoked_at") is not None:
            self._known.pop(token_hash, None)
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[token_hash] = (now, device)
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
        self._known = {key: kept for key, kept in self._known.items() if kept[1]["_id"] != device_id}
        if device is None:
            raise CheckinRefused(404, "device_not_found", "No such device.")
        log.info("device_revoked", device_id=device_id)
        return device
