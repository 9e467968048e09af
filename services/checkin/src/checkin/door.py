"""Scans at the door, decided in batches: one transaction for every scan of an event that is waiting.

Every admission moves the event's counters and every scan is audited, so scans of one event meet
on the same documents. The desk (plenary_kit.desk) queues each event's scans in this process; a
batch reads the tickets, holders and admissions of all its scans at once, before its transaction
(see `Scans._known`), decides the scans in arrival order in memory (two scans of one ticket in one
batch: the first admits, the second is `already_admitted`), and writes everything in a transaction
with one request per collection. A quiet door's scan is a batch of one, decided at once.

Across processes the admissions decide: a new admission is an insert under the ticket's id, and a
move in or out is an update conditional on the entry and exit counts the batch read. If another
process got there first the transaction fails and the batch is decided again on fresh state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import Counter
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError

from checkin import domain
from checkin.domain import Admission, Attendee, CheckinRefused, Decision, Movement, TicketState, Verdict
from checkin.store import Store
from plenary_kit.desk import BatchDesk
from plenary_kit.envelope import Envelope
from plenary_kit.logs import get_logger
from plenary_kit.mongo import DUPLICATE_KEY, Document, Session, in_transaction
from plenary_kit.outbox import Outbox
from plenary_kit.ticketcode import TicketCode
from plenary_kit.web import correlation_id

SOURCE = "checkin"

log = get_logger(__name__)

SCANS = Counter("plenary_checkin_scans_total", "Scans decided, by verdict", ["verdict", "direction"])


class _Contended(Exception):
    """Another process changed an admission or recorded a nonce first; decide the batch again."""


@dataclass(frozen=True)
class _Arrival:
    """A scan as it reaches the desk: the code already read and its signature checked."""

    request: domain.ScanRequest
    device_id: str | None
    nonce_key: str
    code: TicketCode | None
    # The ticket id of a genuine code of this event; None when the code was refused.
    genuine: str | None
    rejection: Verdict | None
    received_at: datetime
    at: datetime
    correlation_id: str


@dataclass(frozen=True)
class _Answer:
    body: dict[str, Any]
    # False when the nonce had been answered before: nothing new was decided or recorded.
    fresh: bool


@dataclass(frozen=True)
class _Known:
    """Read before a batch's transaction: replies already given by nonce; tickets, holders, admissions by id."""

    earlier: dict[str, Document]
    tickets: dict[str, Document]
    registrations: dict[str, Document]
    admissions: dict[str, Document]
    rooms: dict[str, Document]


@dataclass
class _Batch:
    """What one batch read, changed in memory as its scans are decided, and what it will write."""

    tickets: dict[str, Document]
    registrations: dict[str, Document]
    admissions: dict[str, Document]
    # The entry and exit counts each existing admission had when read, for the conditional update.
    read_counts: dict[str, tuple[int, int]]
    rooms: dict[str, Document]
    new_admissions: dict[str, Document]
    new_rooms: list[Document]
    changes: Tally[domain.CounterKey]
    scans: list[Document]
    alerts: list[Document]
    envelopes: list[Envelope]


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
        # Batches of different events run side by side, a few at a time.
        self._transactions = asyncio.Semaphore(concurrent_transactions)
        self._desk: BatchDesk[_Arrival, _Answer] = BatchDesk(self._decide_batch)
        # A key id names one public key for good, so a key once found never needs reading again.
        self._keys: dict[tuple[str, str], bytes] = {}

    async def scan(self, event_id: str, request: domain.ScanRequest, device_id: str | None) -> dict[str, Any]:
        code = domain.parse_code(request.code)
        public_key = await self._public_key(event_id, code.key_id) if code is not None else None
        rejection = domain.check_code(code, event_id, public_key)
        received_at = domain.to_millis(datetime.now(UTC))
        arrival = _Arrival(
            request=request,
            device_id=device_id,
            nonce_key=f"{event_id}:{request.nonce}",
            code=code,
            # Only a genuine code's ticket id is trusted in events; the audit keeps whatever was decoded.
            genuine=code.ticket_id if code is not None and rejection is None else None,
            rejection=rejection,
            received_at=received_at,
            at=domain.scan_time(request, received_at),
            correlation_id=correlation_id(),
        )
        answer = await self._desk.submit(event_id, arrival)
        if answer.fresh:
            self._outbox.nudge()
            if self._on_decided is not None:
                self._on_decided(event_id)
            SCANS.labels(answer.body["verdict"], request.direction.value).inc()
            log.info("scan_decided", scan_id=answer.body["scan_id"], verdict=answer.body["verdict"], gate=request.gate)
        if device_id is not None and self._on_seen is not None:
            await self._on_seen(device_id, received_at)
        return answer.body

    async def _decide_batch(self, event_id: str, arrivals: list[_Arrival]) -> list[_Answer | Exception]:
        # A nonce is new nearly every time, so the first attempt does not look for replies given
        # before. A nonce sent again fails the batch's insert of its scan (the nonce is unique);
        # from then on the batch is decided knowing the replies already given.
        answered_before = False
        for _ in range(self.MAX_ATTEMPTS):
            try:
                known = await self._known(arrivals, answered_before)
                async with self._transactions:
                    return await in_transaction(
                        self._client, partial(self._decide_together, event_id, arrivals, known)
                    )
            except (_Contended, DuplicateKeyError):
                answered_before = True
                continue
            except BulkWriteError as exc:
                if any(error.get("code") == DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                    answered_before = True
                    continue
                raise
        refused = CheckinRefused(503, "scan_contended", "Too many scans of this ticket at once; please scan again.")
        return [refused for _ in arrivals]

    async def _known(self, arrivals: list[_Arrival], answered_before: bool) -> _Known:
        """Everything a batch decides from, read before its transaction begins, side by side.

        Reading inside the transaction would guard nothing: a transaction conflicts with other
        writers of what it writes, not of what it merely read. What guards the decision is how the
        batch writes: a new admission or room entry is an insert under the ticket's id (unique), a
        move in or out is an update conditional on the entry and exit counts read here, and a scan is
        recorded under its nonce (unique). A change made meanwhile by another process fails the
        batch, which is then decided again from a fresh read. Outside, the reads of replies,
        tickets, admissions and rooms go together, and the transaction is only the writes. The
        replies already given are read only when `answered_before` says some nonce may have one.
        """
        store = self._store
        ticket_ids = sorted({a.genuine for a in arrivals if a.genuine is not None})
        room_ids = sorted(
            {f"{a.genuine}:{a.request.session}" for a in arrivals if a.genuine and a.request.session is not None}
        )
        earlier, tickets, admissions, rooms = await asyncio.gather(
            store.replies_for_nonces([a.nonce_key for a in arrivals]) if answered_before else _nothing(),
            store.tickets_by_id(ticket_ids),
            store.admissions_by_id(ticket_ids),
            store.room_admissions_by_id(room_ids),
        )
        registrations = await store.registrations_by_id(
            sorted({ticket["registration_id"] for ticket in tickets.values()})
        )
        return _Known(earlier, tickets, registrations, admissions, rooms)

    async def _decide_together(
        self, event_id: str, arrivals: list[_Arrival], known: _Known, session: Session
    ) -> list[_Answer | Exception]:
        # A copy each: deciding changes them, and a retried batch starts again from what was read.
        admissions = {ticket_id: dict(row) for ticket_id, row in known.admissions.items()}
        batch = _Batch(
            tickets=known.tickets,
            registrations=known.registrations,
            admissions=admissions,
            read_counts={tid: (doc.get("entries", 0), doc.get("exits", 0)) for tid, doc in admissions.items()},
            rooms=dict(known.rooms),
            new_admissions={},
            new_rooms=[],
            changes=Tally(),
            scans=[],
            alerts=[],
            envelopes=[],
        )
        answers: list[_Answer | Exception] = []
        answered: dict[str, dict[str, Any]] = dict(known.earlier)
        for arrival in arrivals:
            if arrival.nonce_key in answered:
                # Sent again (a retry, or the same upload twice): the first answer, recorded once.
                answers.append(_Answer(answered[arrival.nonce_key], fresh=False))
                continue
            body = self._decide_one(event_id, arrival, batch)
            answered[arrival.nonce_key] = body
            answers.append(_Answer(body, fresh=True))
        await self._write(event_id, batch, session)
        return answers

    def _decide_one(self, event_id: str, arrival: _Arrival, batch: _Batch) -> dict[str, Any]:
        request = arrival.request
        scan_id = str(uuid.uuid4())
        alert: Document | None = None
        attendee: Attendee | None = None
        if arrival.genuine is None:
            decision = Decision(arrival.rejection or Verdict.MALFORMED)
        else:
            ticket = batch.tickets.get(arrival.genuine)
            registration = batch.registrations.get(ticket["registration_id"]) if ticket else None
            # An offline upload is judged as the ticket stood when it was scanned.
            state = _ticket_state(ticket, registration, arrival.at if request.offline else None)
            attendee = _attendee(state, registration)
            if request.session is not None:
                decision = self._enter_room(event_id, arrival, state, batch)
            else:
                decision = self._pass_gate(event_id, arrival, state, registration, batch)
                if domain.is_double_entry(request, decision, arrival.device_id):
                    alert = _double_entry(event_id, arrival, attendee, decision)
                    batch.alerts.append(alert)
                    batch.changes[("alerts", "")] += 1
        body = domain.reply(decision, attendee, scan_id)
        if alert is not None:
            body["alert"] = alert_public(alert)
        batch.scans.append(
            {
                "_id": scan_id,
                "nonce_key": arrival.nonce_key,
                "event_id": event_id,
                "ticket_id": arrival.code.ticket_id if arrival.code is not None else None,
                "gate": request.gate,
                "session": request.session,
                "direction": request.direction.value,
                "verdict": decision.verdict.value,
                "movement": decision.movement.value,
                "device_id": arrival.device_id,
                "scanned_at": request.scanned_at,
                "received_at": arrival.received_at,
                "offline": request.offline,
                "offline_verdict": request.offline_verdict.value if request.offline_verdict else None,
                "reply": body,
            }
        )
        data = domain.attendance_event(
            decision.verdict,
            scan_id=scan_id,
            event_id=event_id,
            ticket_id=arrival.genuine,
            gate=request.gate,
            direction=request.direction,
            scanned_at=arrival.at,
            device_id=arrival.device_id,
        )
        batch.envelopes.append(
            Envelope.new(data, source=SOURCE, subject=arrival.genuine or scan_id, correlation_id=arrival.correlation_id)
        )
        return body

    def _pass_gate(
        self,
        event_id: str,
        arrival: _Arrival,
        state: TicketState | None,
        registration: Document | None,
        batch: _Batch,
    ) -> Decision:
        """A scan at a venue gate: admitted, already inside, out and back in, or refused."""
        ticket_id, request = arrival.genuine or "", arrival.request
        current = batch.admissions.get(ticket_id)
        decision = domain.decide(state, _admission(current), request.direction)
        movement = decision.movement
        if movement is Movement.FIRST_ENTRY:
            admission = {
                "_id": ticket_id,
                "event_id": event_id,
                "ticket_type": state.ticket_type if state else "",
                "first_at": arrival.at,
                "first_gate": request.gate,
                "first_device_id": arrival.device_id,
                "inside": True,
                "last_at": arrival.at,
                "last_gate": request.gate,
                "last_device_id": arrival.device_id,
                "entries": 1,
                "exits": 0,
            }
            batch.admissions[ticket_id] = admission
            batch.new_admissions[ticket_id] = admission
        elif movement in (Movement.REENTRY, Movement.EXIT) and current is not None:
            inside = movement is Movement.REENTRY
            current.update(inside=inside, last_at=arrival.at, last_gate=request.gate, last_device_id=arrival.device_id)
            counter = "entries" if inside else "exits"
            current[counter] = current.get(counter, 0) + 1
        profile = domain.Profile(
            ticket_type=state.ticket_type if state else "",
            phase=registration.get("phase") if registration else None,
            local_authority=registration.get("local_authority") if registration else None,
        )
        batch.changes.update(domain.counter_changes(movement, request.gate, profile, arrival.at))
        return decision

    def _enter_room(self, event_id: str, arrival: _Arrival, state: TicketState | None, batch: _Batch) -> Decision:
        """A scan at a workshop room's door: only the delegate's own workshops, counted once each."""
        request, room = arrival.request, arrival.request.session or ""
        room_id = f"{arrival.genuine}:{room}"
        decision = domain.decide_room(state, room, _admission(batch.rooms.get(room_id)), request.direction)
        if decision.movement is Movement.FIRST_ENTRY:
            entry = {
                "_id": room_id,
                "event_id": event_id,
                "ticket_id": arrival.genuine,
                "session": room,
                "first_at": arrival.at,
                "first_gate": request.gate,
                "inside": True,
            }
            batch.rooms[room_id] = entry
            batch.new_rooms.append(entry)
        batch.changes.update(domain.room_changes(decision.movement, room))
        return decision

    async def _write(self, event_id: str, batch: _Batch, session: Session) -> None:
        store = self._store
        moved = {
            ticket_id: admission
            for ticket_id, admission in batch.admissions.items()
            if ticket_id in batch.read_counts
            and (admission.get("entries", 0), admission.get("exits", 0)) != batch.read_counts[ticket_id]
        }
        counted = {key: n for key, n in batch.changes.items() if n}
        if batch.new_admissions or moved or counted:
            # One snapshot version for every admission this batch changes: door phones syncing a
            # delta get these and no others, and a live reader in another process sees the figures moved.
            version = await store.next_version(event_id, session)
            for admission in (*batch.new_admissions.values(), *moved.values()):
                admission["version"] = version
        if batch.new_admissions:
            await store.insert_admissions(list(batch.new_admissions.values()), session)
        if moved and not await store.move_admissions(moved, batch.read_counts, session):
            raise _Contended()
        if batch.new_rooms:
            await store.insert_room_admissions(batch.new_rooms, session)
        await store.bump(event_id, counted, session)
        if batch.alerts:
            await store.insert_alerts(batch.alerts, session)
        if batch.scans:
            await store.insert_scans(batch.scans, session)
        if batch.envelopes:
            await self._outbox.add(session, *batch.envelopes)
        for alert in batch.alerts:
            log.warning("double_entry", event_id=event_id, ticket_id=alert["ticket_id"], gate=alert["second"]["gate"])

    async def _public_key(self, event_id: str, key_id: str) -> bytes | None:
        cached = self._keys.get((event_id, key_id))
        if cached is not None:
            return cached
        public_key = await self._store.public_key(event_id, key_id)
        if public_key is not None:
            self._keys[(event_id, key_id)] = public_key
        return public_key

    async def recent(self, event_id: str, limit: int) -> list[Document]:
        return await self._store.recent_scans(event_id, limit)


async def _nothing() -> dict[str, Document]:
    return {}


def _double_entry(event_id: str, arrival: _Arrival, attendee: Attendee | None, decision: Decision) -> Document:
    earlier = decision.first_admitted
    assert earlier is not None
    return {
        "_id": str(uuid.uuid4()),
        "event_id": event_id,
        "kind": "double_entry",
        "ticket_id": arrival.genuine,
        "name": attendee.name if attendee else "",
        "first": {
            "at": earlier.last_at or earlier.first_at,
            "gate": earlier.first_gate,
            "device_id": earlier.last_device_id,
        },
        "second": {"at": arrival.at, "gate": arrival.request.gate, "device_id": arrival.device_id},
        "raised_at": domain.to_millis(datetime.now(UTC)),
    }


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
