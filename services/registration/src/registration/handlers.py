"""Registration commands: load, decide with the domain rules, save state and events in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from plenary_kit import events, sealing
from plenary_kit.auth import hash_token, new_token
from plenary_kit.desk import BatchDesk
from plenary_kit.envelope import Envelope
from plenary_kit.flight import SingleFlight
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, in_transaction
from plenary_kit.outbox import Outbox
from plenary_kit.web import correlation_id
from registration import domain
from registration.domain import RegistrationRejected, Status
from registration.store import Store

SOURCE = "registration"
# How long a read of an event serves to check registrations against; the admission re-reads it anyway.
EVENT_MEMORY_SECONDS = 1.0
# How long the admission desk trusts its copy of an event's counters from the batch it last committed.
# The copy is only ever used on condition that the event is still exactly so (see Store.spend_places_as_copied).
COPY_SECONDS = 5.0
# After a batch meets an out-of-date copy (or an address already registered), how long the event's next
# batches read the event (or look the addresses up) first, rather than find out by failing and running again.
WARY_SECONDS = 30.0
# Above this many events remembered, those without a batch for WARY_SECONDS are forgotten.
VIGILANCE_KEPT = 200
# How often the offer-expiry loop looks for offers past their time, and how many it ends per round.
OFFER_POLL_SECONDS = 2.0
OFFER_BATCH = 100

log = get_logger(__name__)

T = TypeVar("T")
CancelReason = Literal["cancelled", "offer_expired", "erased"]


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Arrival:
    """A delegate's registration, checked and waiting at the admission desk."""

    request: domain.RegistrationCreate
    fields: Document
    # The event's `updated_at` when the fields were checked; a later change means checking again.
    checked_against: datetime | None
    registration_id: str
    token: str
    key: str | None
    fingerprint: str
    correlation: str


class PlacesMoved(Exception):
    """The event's counters changed under a batch; its arrivals are admitted one at a time instead."""


class CopyOutdated(Exception):
    """The event changed since the desk's copy of it was taken; the batch runs again from a fresh read."""


@dataclass(frozen=True)
class Admitted:
    """A batch's outcomes and the event as the batch left it."""

    outcomes: list[Reply | Exception]
    event: Document | None


@dataclass
class Vigilance:
    """What an event's admission batches may take for granted, from how its recent batches went."""

    # The event as the last committed batch left it, and when (monotonic seconds).
    copy: Document | None = None
    copied_at: float = 0.0
    # Until when batches read the event first: something else has been changing it.
    read_until: float = 0.0
    # Until when batches look up who is registered first: addresses already registered have come back.
    look_up_until: float = 0.0


@dataclass(frozen=True)
class ImportOutcome:
    outcome: Literal["imported", "skipped"]
    registration_id: str
    status: str


class Registrations:
    """Every command on events and registrations; pages and routes both call these."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        store: Store,
        outbox: Outbox,
        concurrent_transactions: int = 8,
        *,
        link_key: bytes,
    ) -> None:
        self._client = client
        self._store = store
        self._outbox = outbox
        self._link_key = link_key
        # Every registration for one event updates the same counter document; letting only a few
        # transactions reach it at once keeps write conflicts, and so latency, low under a surge.
        self._admission = asyncio.Semaphore(concurrent_transactions)
        self._desk: BatchDesk[Arrival, Reply] = BatchDesk(self._admit_arrivals)
        # Per event: the desk's copy of its counters and whether its batches must read first.
        self._vigilance: dict[str, Vigilance] = {}
        # Events as recently read, to check a registration before it joins the desk's queue.
        self._recent_events: dict[str, tuple[float, Document]] = {}
        # The read of an event under way: everyone arriving meanwhile waits for it rather than reading too.
        self._event_reads: SingleFlight[Document] = SingleFlight(self._read_event, "event-read")

    async def _transaction(self, work: Callable[[Session], Awaitable[T]]) -> T:
        async with self._admission:
            result = await in_transaction(self._client, work)
        self._outbox.nudge()
        return result

    # Events (the conferences)

    async def create_event(self, spec: domain.EventCreate) -> Document:
        now = datetime.now(UTC)
        event: Document = {
            "_id": str(uuid.uuid4()),
            **spec.model_dump(exclude={"ticket_types", "sessions", "questions"}),
            "ticket_types": [t.model_dump() for t in spec.ticket_types],
            "sessions": [s.model_dump() for s in spec.sessions],
            "questions": [q.model_dump(mode="json", exclude_none=True) for q in spec.questions],
            "places_left": spec.capacity,
            "ticket_left": {t.code: t.capacity for t in spec.ticket_types if t.capacity is not None},
            "session_left": {s.code: s.capacity for s in spec.sessions},
            "waitlist_seq": 0,
            "session_wait_seq": {},
            "limits_version": 0,
            "closed": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._store.insert_event(event)
        except DuplicateKeyError as exc:
            raise RegistrationRejected(409, "slug_taken", f"An event with slug {spec.slug!r} exists.") from exc
        return event

    async def update_event(self, event_id: str, update: domain.EventUpdate) -> Document:
        """Apply an organiser's change; capacity moves by its delta, and places it frees go to those waiting."""

        async def work(session: Session) -> Document:
            event = await self._store.event(event_id, session)
            if event is None:
                raise domain.event_not_found()
            taken = {
                code: await self._store.count_holding(event_id, code, session)
                for code in domain.newly_limited_ticket_types(event, update)
            }
            plan = domain.plan_event_update(event, update, taken)
            changes: Document = {"$set": {**plan.set, "updated_at": datetime.now(UTC)}}
            if plan.inc:
                changes["$inc"] = plan.inc
            if plan.unset:
                changes["$unset"] = dict.fromkeys(plan.unset, "")
            if not await self._store.update_event(event_id, plan.floors, changes, session):
                raise RegistrationRejected(
                    409, "capacity_below_taken", "More places are taken than the new capacity allows."
                )
            caused = await self._fill_sessions(event_id, plan.sessions_freed, session)
            if plan.places_freed:
                caused += await self._promote(event_id, session)
            if caused:
                await self._outbox.add(session, *caused)
            updated = await self._store.event(event_id, session)
            assert updated is not None
            return updated

        try:
            return await self._transaction(work)
        finally:
            self._forget_event(event_id)

    async def set_registration_open(self, event_id: str, open_: bool) -> Document:
        """Close an event to new registrations, or open it again (its window still applies)."""
        event = await self._store.set_closed(event_id, not open_, datetime.now(UTC))
        self._forget_event(event_id)
        if event is None:
            raise domain.event_not_found()
        return event

    # Registering

    async def register(self, event_id: str, request: domain.RegistrationCreate, idempotency_key: str | None) -> Reply:
        """A delegate registers: 201 {id, status, manage_token}; the same Idempotency-Key replays the reply.

        The request is checked here against the event as recently read, then waits at the admission
        desk, which admits it together with everyone else registering for the event at that moment.
        """
        key = f"{event_id}:{idempotency_key}" if idempotency_key else None
        fingerprint = _fingerprint(request)
        if key:
            earlier = await self._replay(key, fingerprint)
            if earlier:
                return earlier
        event, fields = await self._checked(event_id, request)
        arrival = Arrival(
            request=request,
            fields=fields,
            checked_against=event.get("updated_at"),
            registration_id=str(uuid.uuid4()),
            token=new_token(),
            key=key,
            fingerprint=fingerprint,
            correlation=correlation_id(),
        )
        return await self._desk.submit(event_id, arrival)

    async def _checked(self, event_id: str, request: domain.RegistrationCreate) -> tuple[Document, Document]:
        """The event and the request's fields checked against it. A refusal based on a remembered copy
        of the event is only given after reading the event again."""
        cached = self._recent_events.get(event_id)
        if cached is not None and time.monotonic() - cached[0] < EVENT_MEMORY_SECONDS:
            try:
                domain.check_window(cached[1], datetime.now(UTC))
                return cached[1], _registration_fields(cached[1], request)
            except RegistrationRejected:
                pass
        event = await self._fresh_event(event_id)
        domain.check_window(event, datetime.now(UTC))
        return event, _registration_fields(event, request)

    async def _fresh_event(self, event_id: str) -> Document:
        """The event read now, once however many registrations arrive while it is read (see plenary_kit.flight)."""
        return await self._event_reads.get(event_id)

    async def _read_event(self, event_id: str) -> Document:
        event = await self._event(event_id)
        self._recent_events[event_id] = (time.monotonic(), event)
        return event

    async def _admit_arrivals(self, event_id: str, arrivals: list[Arrival]) -> list[Reply | Exception]:
        """Admit a batch in one transaction; what cannot go together is admitted one at a time after it.

        Two arrivals with the same address or Idempotency-Key wait for the batch to commit, so the
        second meets the first as already registered (or replays its reply). Should the batch meet a
        registration made elsewhere in the meantime (a duplicate key), each arrival is admitted on its
        own, which sorts out precisely who gets which answer.
        """
        outcomes: list[Reply | Exception | None] = [None] * len(arrivals)
        together: list[int] = []
        alone: list[int] = []
        seen: set[str] = set()
        for index, arrival in enumerate(arrivals):
            marks = {f"email:{arrival.fields['email_key']}", *([f"key:{arrival.key}"] if arrival.key else [])}
            (alone if marks & seen else together).append(index)
            seen |= marks
        if together:
            try:
                admitted = await self._admit_batch(event_id, [arrivals[i] for i in together])
            except (DuplicateKeyError, PlacesMoved) as exc:
                log.info("admission_batch_split", size=len(together), error=type(exc).__name__)
                alone = sorted(together + alone)
            else:
                for index, outcome in zip(together, admitted, strict=True):
                    outcomes[index] = outcome
        for index in alone:
            try:
                outcomes[index] = await self._admit_alone(event_id, arrivals[index])
            except Exception as exc:  # this delegate's answer; the others' stand
                outcomes[index] = exc
        return _settled(outcomes)

    async def _admit_batch(self, event_id: str, arrivals: list[Arrival]) -> list[Reply | Exception]:
        """One transaction for the batch, with as few round trips to the database as the event's recent past allows.

        While the desk is the event's only writer (a surge at one registration service), a batch starts
        from the event as the previous batch left it, and lets the unique index on addresses refuse one
        already registered: it writes without reading first. Should the event have changed meanwhile or
        an address be taken, nothing of the batch is kept and it runs again, reading what it missed
        first; so do the event's batches for WARY_SECONDS after.
        """
        now = time.monotonic()
        vigilance = self._vigilance.get(event_id)
        if vigilance is None:
            self._forget_quiet_events(now)
            vigilance = self._vigilance[event_id] = Vigilance()
        fresh = now - vigilance.copied_at < COPY_SECONDS and now >= vigilance.read_until
        copy = vigilance.copy if fresh else None
        look_up = now < vigilance.look_up_until
        # Whatever happens to this batch, the next copy is the one it leaves.
        vigilance.copy = None

        def attempt(copy: Document | None, look_up: bool) -> Callable[[Session], Awaitable[Admitted]]:
            return lambda session: self._admit_together(
                event_id, arrivals, session, copy=copy, look_up_addresses=look_up
            )

        try:
            admitted = await self._transaction(attempt(copy, look_up))
        except CopyOutdated:
            log.info("admission_batch_again", size=len(arrivals), reason="event_changed")
            vigilance.read_until = time.monotonic() + WARY_SECONDS
            admitted = await self._transaction(attempt(None, look_up))
        except DuplicateKeyError:
            if look_up:
                raise
            log.info("admission_batch_again", size=len(arrivals), reason="address_taken")
            vigilance.look_up_until = time.monotonic() + WARY_SECONDS
            admitted = await self._transaction(attempt(None, True))
        if admitted.event is not None:
            vigilance.copy, vigilance.copied_at = admitted.event, time.monotonic()
        return admitted.outcomes

    def _forget_quiet_events(self, now: float) -> None:
        """Keep little for a service that runs for months: drop events with no batch for a while."""
        if len(self._vigilance) < VIGILANCE_KEPT:
            return
        for event_id, vigilance in list(self._vigilance.items()):
            if max(vigilance.copied_at, vigilance.read_until, vigilance.look_up_until) < now - WARY_SECONDS:
                del self._vigilance[event_id]

    def _forget_event(self, event_id: str) -> None:
        """This process changed the event: what it remembers of it is out of date."""
        self._recent_events.pop(event_id, None)
        if vigilance := self._vigilance.get(event_id):
            vigilance.copy = None

    async def _admit_together(
        self,
        event_id: str,
        arrivals: list[Arrival],
        session: Session,
        *,
        copy: Document | None,
        look_up_addresses: bool,
    ) -> Admitted:
        """Place every arrival in order from one read of the event's counters, then write it all at once.

        With `copy`, the counters come from it instead of a read, and are spent only if the event still
        stands exactly so (else CopyOutdated). Without `look_up_addresses`, an address already registered
        is left to the unique index to refuse (DuplicateKeyError).
        """
        now = datetime.now(UTC)
        event = copy if copy is not None else await self._store.event(event_id, session)
        if event is None:
            return Admitted([domain.event_not_found() for _ in arrivals], None)
        outcomes: list[Reply | Exception | None] = [None] * len(arrivals)
        candidates: list[tuple[int, Arrival, Document]] = []
        for index, arrival in enumerate(arrivals):
            try:
                domain.check_window(event, now)
                unchanged = event.get("updated_at") == arrival.checked_against
                fields = arrival.fields if unchanged else _registration_fields(event, arrival.request)
            except RegistrationRejected as exc:
                if copy is not None:
                    # A refusal is given on the event as read now, never on a copy.
                    raise CopyOutdated() from exc
                outcomes[index] = exc
                continue
            candidates.append((index, arrival, fields))
        emails = [fields["email_key"] for _, _, fields in candidates]
        taken = (
            await self._store.registered_email_keys(event_id, emails, session=session)
            if emails and look_up_addresses
            else set()
        )
        places = domain.Places.of(event)
        before = places.copy()
        registrations: list[Document] = []
        waits: list[Document] = []
        caused: list[Envelope] = []
        replies: list[Document] = []
        for index, arrival, fields in candidates:
            if fields["email_key"] in taken:
                outcomes[index] = domain.already_registered([fields["email"]])
                continue
            consent = _consent("delegate", now)
            registration = _new(arrival.registration_id, event_id, fields, arrival.token, consent, now)
            allocation = places.allocate(registration["ticket_type"], registration["sessions"])
            caused.append(self._placed(event, registration, allocation, arrival.token, arrival.correlation))
            waits += [
                {"event_id": event_id, "session": code, "position": position, "registration_id": registration["_id"]}
                for code, position in allocation.waiting_sessions.items()
            ]
            registrations.append(registration)
            reply = Reply(
                201,
                domain.RegistrationAccepted(
                    id=registration["_id"], status=registration["status"], manage_token=arrival.token
                ).model_dump(mode="json"),
            )
            if arrival.key:
                replies.append({"_id": arrival.key, "fingerprint": arrival.fingerprint, **asdict(reply)})
            outcomes[index] = reply
        moves, floors = places.spent_since(before)
        if copy is not None:
            # Every arrival is placed (none refused), so something moves.
            after = await self._store.spend_places_as_copied(copy, moves, session) if moves else None
            if after is None:
                raise CopyOutdated()
        else:
            after = await self._store.spend_places(event, moves, floors, session)
            if after is None:
                raise PlacesMoved()
        await self._store.insert_registrations(registrations, session)
        await self._store.add_session_waits(waits, session)
        await self._store.remember_replies(replies, now, session)
        if caused:
            await self._outbox.add(session, *caused)
        return Admitted(_settled(outcomes), after)

    def _placed(
        self, event: Document, registration: Document, allocation: domain.Allocation, token: str, correlation: str
    ) -> Envelope:
        """Record where the allocation put a new registration; the event that tells the other services."""
        registration["sessions"] = allocation.sessions
        registration["waiting_sessions"] = list(allocation.waiting_sessions)
        if allocation.waitlist_position is None:
            registration["status"] = Status.CONFIRMED
        else:
            registration["status"] = Status.WAITLISTED
            registration["waitlist_position"] = allocation.waitlist_position
        return self._first_event(event, registration, token, correlation)

    def _first_event(self, event: Document, registration: Document, token: str, correlation: str | None) -> Envelope:
        """registration.confirmed or registration.waitlisted for a new registration, its manage token sealed."""
        sealed = sealing.seal(token, self._link_key, context=registration["_id"])
        data: events.EventData
        if registration["status"] == Status.CONFIRMED:
            data = events.RegistrationConfirmed(**_snapshot(event, registration), manage_token_sealed=sealed)
        else:
            data = events.RegistrationWaitlisted(
                **_snapshot(event, registration),
                position=registration["waitlist_position"],
                manage_token_sealed=sealed,
            )
        return _new_event(data, registration["_id"], correlation)

    async def _admit_alone(self, event_id: str, arrival: Arrival) -> Reply:
        """One arrival in a transaction of its own, with every conflict answered as the delegate expects."""
        key, fingerprint, fields = arrival.key, arrival.fingerprint, arrival.fields
        if key:
            earlier = await self._replay(key, fingerprint)
            if earlier:
                return earlier
        event = await self._event(event_id)
        domain.check_window(event, datetime.now(UTC))
        if event.get("updated_at") != arrival.checked_against:
            fields = _registration_fields(event, arrival.request)
        if await self._store.registration_by_email_key(event_id, fields["email_key"]):
            raise domain.already_registered([fields["email"]])

        async def work(session: Session) -> Reply:
            now = datetime.now(UTC)
            consent = _consent("delegate", now)
            registration = _new(arrival.registration_id, event_id, fields, arrival.token, consent, now)
            registration = await self._admit(event, registration, arrival.token, session, arrival.correlation)
            reply = Reply(
                201,
                domain.RegistrationAccepted(
                    id=registration["_id"], status=registration["status"], manage_token=arrival.token
                ).model_dump(mode="json"),
            )
            if key:
                await self._store.remember_reply(key, fingerprint, reply.status, reply.body, now, session)
            return reply

        try:
            return await self._transaction(work)
        except DuplicateKeyError as exc:
            if key and "idempotency_keys" in str(exc):
                earlier = await self._replay(key, fingerprint)
                if earlier:
                    return earlier
            raise domain.already_registered([fields["email"]]) from exc

    async def register_group(
        self, event_id: str, request: domain.GroupRegistrationCreate, idempotency_key: str | None
    ) -> Reply:
        """One booker registers colleagues: each gets a registration, events and a manage token of their own.

        Everything is checked before anything is created; then each delegate is admitted in order, one
        transaction each. With an Idempotency-Key the planned ids and tokens are kept first, so a retry
        after a failure half way finishes the same group instead of refusing it as already registered.
        Should one colleague register on their own between the check and their turn, the reply is 409
        already_registered naming them, and those admitted before them stay registered.
        """
        key = f"{event_id}:group:{idempotency_key}" if idempotency_key else None
        fingerprint = _fingerprint(request)
        plan: list[Document] | None = None
        if key:
            earlier, plan = await self._group_replay(key, fingerprint)
            if earlier:
                return earlier
        event = await self._event(event_id)
        domain.check_window(event, datetime.now(UTC))
        prepared = [
            _registration_fields(event, delegate, prefix=f"delegates.{i}.", delegate_index=i)
            for i, delegate in enumerate(request.registrations())
        ]
        _refuse_repeated_emails(prepared)
        planned_ids = [p["registration_id"] for p in plan or []]
        taken = await self._store.registered_email_keys(
            event_id, [p["email_key"] for p in prepared], except_ids=planned_ids
        )
        if taken:
            raise domain.already_registered([p["email"] for p in prepared if p["email_key"] in taken])
        if plan is None:
            plan = [
                {"registration_id": str(uuid.uuid4()), "manage_token": new_token(), "email": p["email"]}
                for p in prepared
            ]
            if key:
                try:
                    await self._store.begin_reply(key, fingerprint, plan, datetime.now(UTC))
                except DuplicateKeyError:
                    earlier, plan = await self._group_replay(key, fingerprint)
                    if earlier:
                        return earlier
                    assert plan is not None
        booker = {"name": request.booker.name, "email": str(request.booker.email)}
        results = []
        for planned, fields in zip(plan, prepared, strict=True):
            status = await self._admit_planned(event, planned, fields, booker)
            results.append(
                {
                    "id": planned["registration_id"],
                    "status": status,
                    "manage_token": planned["manage_token"],
                    "email": fields["email"],
                }
            )
        reply = Reply(201, {"registrations": results})
        if key:
            await self._store.finish_reply(key, reply.status, reply.body)
        return reply

    async def _admit_planned(self, event: Document, planned: Document, fields: Document, booker: Document) -> str:
        registration_id, token = planned["registration_id"], planned["manage_token"]
        existing = await self._store.registration(registration_id)
        if existing is not None:
            return str(existing["status"])

        async def work(session: Session) -> Document:
            now = datetime.now(UTC)
            consent = {**_consent("group_booking", now), "booker": booker}
            registration = _new(registration_id, event["_id"], fields, token, consent, now)
            return await self._admit(event, registration, token, session)

        try:
            return str((await self._transaction(work))["status"])
        except DuplicateKeyError as exc:
            existing = await self._store.registration(registration_id)
            if existing is None:
                raise domain.already_registered([fields["email"]]) from exc
            return str(existing["status"])

    async def import_registration(
        self, event: Document, request: domain.RegistrationCreate, import_id: str
    ) -> ImportOutcome:
        """One row of an organiser's CSV import; an email already registered for the event is skipped.

        The registration window does not apply: the organiser is adding people themselves.
        """
        fields = _registration_fields(event, request)
        existing = await self._store.registration_by_email_key(event["_id"], fields["email_key"])
        if existing is not None:
            return _existing_outcome(existing, import_id)
        token = new_token()
        registration_id = str(uuid.uuid4())

        async def work(session: Session) -> Document:
            now = datetime.now(UTC)
            consent = {**_consent("organiser_import", now), "import_id": import_id}
            registration = _new(registration_id, event["_id"], fields, token, consent, now, import_id=import_id)
            return await self._admit(event, registration, token, session)

        try:
            registration = await self._transaction(work)
        except DuplicateKeyError as exc:
            existing = await self._store.registration_by_email_key(event["_id"], fields["email_key"])
            if existing is None:
                raise
            log.info("import_row_raced", import_id=import_id, error=type(exc).__name__)
            return _existing_outcome(existing, import_id)
        return ImportOutcome("imported", registration_id, str(registration["status"]))

    async def _event(self, event_id: str) -> Document:
        event = await self._store.event(event_id)
        if event is None:
            raise domain.event_not_found()
        return event

    async def _admit(
        self, event: Document, registration: Document, token: str, session: Session, correlation: str | None = None
    ) -> Document:
        """Give a new registration a place (or a place on the waiting list), save it and its first event."""
        if await self._hold(event, registration, session):
            registration["status"] = Status.CONFIRMED
        else:
            registration["status"] = Status.WAITLISTED
            registration["waitlist_position"] = await self._store.next_waitlist_position(event["_id"], session)
        await self._store.insert_registration(registration, session)
        await self._outbox.add(session, self._first_event(event, registration, token, correlation))
        return registration

    async def _hold(self, event: Document, registration: Document, session: Session) -> bool:
        """Take an event and ticket-type place for the registration, then each workshop it wants or a
        place in that workshop's queue; False (and nothing taken) when there is no event place for it."""
        wanted = list(registration["sessions"])
        ticket_type = registration["ticket_type"]
        registration["waiting_sessions"] = []
        if await self._store.take_place(event, ticket_type, wanted, session):
            return True
        fresh = await self._store.event(event["_id"], session)
        assert fresh is not None
        if fresh.get("limits_version") != event.get("limits_version"):
            if await self._store.take_place(fresh, ticket_type, wanted, session):
                return True
        if not wanted or not await self._store.take_place(fresh, ticket_type, [], session):
            return False
        held: list[str] = []
        for code in wanted:
            if await self._store.take_session(event["_id"], code, session):
                held.append(code)
            else:
                await self._store.add_session_wait(event["_id"], code, registration["_id"], session)
                registration["waiting_sessions"].append(code)
        registration["sessions"] = held
        return True

    async def _replay(self, key: str, fingerprint: str) -> Reply | None:
        stored = await self._store.idempotent_reply(key)
        if stored is None:
            return None
        if stored["fingerprint"] != fingerprint:
            raise _key_reused()
        return Reply(stored["status"], stored["body"])

    async def _group_replay(self, key: str, fingerprint: str) -> tuple[Reply | None, list[Document] | None]:
        """The finished reply to this key, or the plan of a group booking interrupted half way."""
        stored = await self._store.idempotent_reply(key)
        if stored is None:
            return None, None
        if stored["fingerprint"] != fingerprint:
            raise _key_reused()
        if "body" in stored and stored.get("status"):
            return Reply(stored["status"], stored["body"]), None
        return None, list(stored["plan"])

    # A delegate's own registration

    async def cancel(self, registration_id: str) -> Document:
        """Cancel a registration (again is harmless); a place it held goes to whoever waits next."""

        async def work(session: Session) -> Document:
            registration = await self._registration(registration_id, session)
            if registration["status"] == Status.CANCELLED:
                return registration
            domain.check_changeable(registration)
            cancelled, caused = await self._cancel(registration, "cancelled", session)
            if caused:
                await self._outbox.add(session, *caused)
            return cancelled

        return await self._transaction(work)

    async def update(self, registration_id: str, changes: domain.RegistrationUpdate) -> Document:
        """Edit details, answers or workshops; emits registration.updated when anything changed.

        A registration holding a place gives up the workshops it no longer wants (the first person
        waiting for each gets it) and takes the new ones; a new workshop that is full is not refused:
        the delegate joins its waiting list, reported in `waiting_sessions`.
        """

        async def work(session: Session) -> Document:
            registration = await self._registration(registration_id, session)
            domain.check_changeable(registration)
            event = await self._store.event(registration["event_id"], session)
            assert event is not None
            fields = _changed_details(registration, changes)
            if changes.answers is not None:
                fields["answers"] = domain.merge_answers(
                    event.get("questions", []), registration.get("answers", {}), changes.answers
                )
            released: list[str] = []
            if changes.sessions is not None:
                domain.check_sessions(event, changes.sessions)
                if domain.holds_place(registration):
                    released, fields["sessions"], fields["waiting_sessions"] = await self._move_sessions(
                        registration, changes.sessions, session
                    )
                else:
                    fields["sessions"] = changes.sessions
            fields = {name: value for name, value in fields.items() if registration.get(name) != value}
            if not fields:
                return registration
            updated = await self._store.change_registration(
                registration_id,
                {"status": registration["status"]},
                {"$set": {**fields, "updated_at": datetime.now(UTC)}},
                session,
            )
            assert updated is not None
            caused = [_updated_event(event, updated)]
            caused += await self._fill_sessions(event["_id"], released, session)
            await self._outbox.add(session, *caused)
            return updated

        return await self._transaction(work)

    async def _move_sessions(
        self, registration: Document, wanted: list[str], session: Session
    ) -> tuple[list[str], list[str], list[str]]:
        """(released, held, waiting) after moving a place-holding registration to the workshops it wants."""
        event_id, registration_id = registration["event_id"], registration["_id"]
        moves = domain.session_moves(registration["sessions"], registration.get("waiting_sessions", []), wanted)
        await self._store.release_sessions(event_id, moves.release, session)
        await self._store.remove_session_waits(registration_id, moves.stop_waiting, session)
        held, waiting = list(moves.keep_held), list(moves.keep_waiting)
        for code in moves.add:
            if await self._store.take_session(event_id, code, session):
                held.append(code)
            else:
                await self._store.add_session_wait(event_id, code, registration_id, session)
                waiting.append(code)
        return moves.release, held, waiting

    async def resend(self, registration_id: str) -> None:
        """Ask for the ticket email again: registration.resend_requested, at most once a minute."""

        async def work(session: Session) -> None:
            registration = await self._registration(registration_id, session)
            domain.check_changeable(registration)
            now = datetime.now(UTC)
            last = registration.get("resend_requested_at")
            wait = domain.resend_wait(last, now)
            if wait == 0:
                changed = await self._store.change_registration(
                    registration_id, {"resend_requested_at": last}, {"$set": {"resend_requested_at": now}}, session
                )
                wait = 0 if changed else int(domain.RESEND_INTERVAL.total_seconds())
            if wait:
                raise RegistrationRejected(
                    429,
                    "resend_too_soon",
                    f"The email was sent again a moment ago; please try again in {wait} seconds.",
                    retry_after_seconds=wait,
                )
            data = events.RegistrationResendRequested(
                registration_id=registration_id, event_id=registration["event_id"]
            )
            await self._outbox.add(session, _new_event(data, registration_id))

        await self._transaction(work)

    async def accept_offer(self, registration_id: str) -> Document:
        """A waiting delegate takes the place held for them: confirmed, registration.promoted."""

        async def work(session: Session) -> Document:
            registration = await self._registration(registration_id, session)
            if registration["status"] == Status.CONFIRMED and registration.get("offer_accepted_at"):
                return registration
            now = datetime.now(UTC)
            expires_at = domain.check_offer(registration, now)
            accepted = await self._store.change_registration(
                registration_id,
                {"status": Status.WAITLISTED, "offer.expires_at": expires_at},
                {
                    "$set": {
                        "status": Status.CONFIRMED,
                        "promoted_at": now,
                        "offer_accepted_at": now,
                        "updated_at": now,
                    },
                    "$unset": {"offer": ""},
                },
                session,
            )
            if accepted is None:
                raise RegistrationRejected(409, "offer_expired", "The offer of a place has expired.")
            event = await self._store.event(registration["event_id"], session)
            assert event is not None
            data = events.RegistrationPromoted(**_snapshot(event, accepted))
            await self._outbox.add(session, _new_event(data, registration_id))
            return accepted

        return await self._transaction(work)

    async def erase(self, registration_id: str) -> Document:
        """GDPR erasure: anonymise the delegate, keep what the counts need, tell every service.

        A confirmed registration stays confirmed (its place and workshop places stay counted). A waiting
        one leaves the waiting list first (registration.cancelled, reason "erased"), so nobody is later
        promoted into a place under an erased name.
        """

        async def work(session: Session) -> Document:
            registration = await self._registration(registration_id, session)
            if registration.get("erased_at"):
                return registration
            now = datetime.now(UTC)
            caused: list[Envelope] = []
            if registration["status"] == Status.WAITLISTED:
                registration, caused = await self._cancel(registration, "erased", session)
            erased = await self._store.change_registration(
                registration_id,
                {},
                {"$set": {**domain.erased_details(registration_id), "erased_at": now, "updated_at": now}},
                session,
            )
            assert erased is not None
            await self._store.remove_session_waits(registration_id, None, session)
            await self._store.forget_replies_naming(registration_id, session)
            data = events.RegistrationErased(registration_id=registration_id, event_id=registration["event_id"])
            await self._outbox.add(session, *caused, _new_event(data, registration_id))
            return erased

        erased = await self._transaction(work)
        log.info("registration_erased", registration_id=registration_id)
        return erased

    async def _registration(self, registration_id: str, session: Session) -> Document:
        registration = await self._store.registration(registration_id, session)
        if registration is None:
            raise domain.not_found()
        return registration

    # Places freeing up: cancellations, expired offers, edits, larger capacities

    async def _cancel(
        self, registration: Document, reason: CancelReason, session: Session
    ) -> tuple[Document, list[Envelope]]:
        """Cancel inside the caller's transaction; returns the registration and the events to record."""
        registration_id = registration["_id"]
        now = datetime.now(UTC)
        expected: Document = {"status": registration["status"]}
        if registration.get("offer"):
            expected["offer.expires_at"] = registration["offer"]["expires_at"]
        cancelled = await self._store.change_registration(
            registration_id,
            expected,
            {
                "$set": {"status": Status.CANCELLED, "cancelled_at": now, "cancel_reason": reason, "updated_at": now},
                "$unset": {"offer": ""},
            },
            session,
        )
        if cancelled is None:
            return registration, []
        event = await self._store.event(registration["event_id"], session)
        assert event is not None
        delegate = domain.delegate(
            {**registration, **domain.erased_details(registration_id)} if reason == "erased" else registration
        )
        caused = [
            _new_event(
                events.RegistrationCancelled(
                    registration_id=registration_id,
                    event=domain.summary(event),
                    delegate=delegate,
                    previous_status=registration["status"],
                    reason=reason,
                ),
                registration_id,
            )
        ]
        if domain.holds_place(registration):
            caused += await self._release(event, registration, session)
        return cancelled, caused

    async def _release(self, event: Document, registration: Document, session: Session) -> list[Envelope]:
        """Give back a registration's places; those waiting for its workshops, then for the event, get them."""
        await self._store.release_place(event, registration["ticket_type"], registration["sessions"], session)
        await self._store.remove_session_waits(registration["_id"], None, session)
        caused = await self._fill_sessions(event["_id"], registration["sessions"], session)
        return caused + await self._promote(event["_id"], session)

    async def _fill_sessions(self, event_id: str, codes: list[str], session: Session) -> list[Envelope]:
        """Free workshop places go to the delegates waiting for them, in the order they joined."""
        caused: list[Envelope] = []
        event: Document | None = None
        for code in codes:
            while (waiter := await self._store.first_session_waiter(event_id, code, session)) is not None:
                if not await self._store.take_session(event_id, code, session):
                    break
                await self._store.remove_session_waits(waiter["registration_id"], [code], session)
                moved = await self._store.change_registration(
                    waiter["registration_id"],
                    {},
                    {
                        "$pull": {"waiting_sessions": code},
                        "$push": {"sessions": code},
                        "$set": {"updated_at": datetime.now(UTC)},
                    },
                    session,
                )
                if moved is None:
                    await self._store.release_sessions(event_id, [code], session)
                    continue
                event = event or await self._store.event(event_id, session)
                assert event is not None
                caused.append(_updated_event(event, moved))
        return caused

    async def _promote(self, event_id: str, session: Session) -> list[Envelope]:
        """Give free places to the waiting list in arrival order, skipping whoever's ticket type is full.

        With an offer window the place is held as an offer (registration.offered); otherwise the
        delegate is confirmed at once (registration.promoted).
        """
        caused: list[Envelope] = []
        while True:
            event = await self._store.event(event_id, session)
            if event is None or event["places_left"] <= 0:
                break
            full = [code for code, left in event.get("ticket_left", {}).items() if left <= 0]
            candidate = await self._store.first_waitlisted(event_id, full, session)
            if candidate is None or not await self._hold(event, candidate, session):
                break
            now = datetime.now(UTC)
            places = {"sessions": candidate["sessions"], "waiting_sessions": candidate["waiting_sessions"]}
            expires_at = domain.offer_expiry(event, now)
            if expires_at:
                changes = {"offer": {"offered_at": now, "expires_at": expires_at}, **places, "updated_at": now}
            else:
                changes = {"status": Status.CONFIRMED, "promoted_at": now, **places, "updated_at": now}
            promoted = await self._store.change_registration(
                candidate["_id"], {"status": Status.WAITLISTED, "offer": None}, {"$set": changes}, session
            )
            assert promoted is not None
            data: events.EventData
            if expires_at:
                data = events.RegistrationOffered(**_snapshot(event, promoted), offer_expires_at=expires_at)
            else:
                data = events.RegistrationPromoted(**_snapshot(event, promoted))
            caused.append(_new_event(data, candidate["_id"]))
        return caused

    async def expire_offers(self, now: datetime, limit: int = OFFER_BATCH) -> int:
        """Cancel offers not accepted in time (reason "offer_expired"); each place passes to the next person.

        Safe with several loops running: each cancellation is conditional on the offer still being open.
        """
        expired = 0
        for candidate in await self._store.expired_offers(now, limit):

            async def work(session: Session, registration_id: str = candidate["_id"]) -> bool:
                registration = await self._store.registration(registration_id, session)
                offer = registration.get("offer") if registration else None
                if registration is None or registration["status"] != Status.WAITLISTED or not offer:
                    return False
                if offer["expires_at"] > now:
                    return False
                _, caused = await self._cancel(registration, "offer_expired", session)
                if caused:
                    await self._outbox.add(session, *caused)
                return bool(caused)

            if await self._transaction(work):
                expired += 1
        if expired:
            log.info("offers_expired", count=expired)
        return expired


async def expire_offers_forever(registrations: Registrations, poll_seconds: float = OFFER_POLL_SECONDS) -> None:
    """The background loop that ends expired offers; a full batch means more may be due, so no pause."""
    while True:
        try:
            expired = await registrations.expire_offers(datetime.now(UTC))
        except PyMongoError as exc:
            log.warning("offer_expiry_retry", error=type(exc).__name__)
            expired = 0
        except Exception as exc:  # the loop must outlive one bad registration, or no offer would ever expire
            log.exception("offer_expiry_failed", error=type(exc).__name__)
            expired = 0
        if expired < OFFER_BATCH:
            await asyncio.sleep(poll_seconds)


def _fingerprint(request: Any) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def _key_reused() -> RegistrationRejected:
    return RegistrationRejected(
        409, "idempotency_key_reused", "This Idempotency-Key was used for a different registration."
    )


def _registration_fields(
    event: Document, request: domain.RegistrationCreate, prefix: str = "", delegate_index: int | None = None
) -> Document:
    """A registration's details checked against the event: ticket type, workshops, answers."""
    try:
        ticket_type = domain.choose_ticket_type(event, request.ticket_type)
        domain.check_sessions(event, request.sessions)
        answers = domain.check_answers(event.get("questions", []), request.answers, prefix=f"{prefix}answers")
    except RegistrationRejected as exc:
        if delegate_index is None or exc.code == "validation_error":
            raise
        raise RegistrationRejected(
            exc.status, exc.code, f"Delegate {delegate_index + 1}: {exc.message}", delegate=delegate_index
        ) from exc
    return {
        "name": request.name,
        "email": str(request.email),
        "email_key": domain.email_key(str(request.email)),
        "organisation": request.organisation,
        "role": request.role,
        "phase": request.phase.value if request.phase else None,
        "local_authority": request.local_authority,
        "dietary_needs": request.dietary_needs,
        "access_needs": request.access_needs,
        "ticket_type": ticket_type,
        "sessions": list(request.sessions),
        "answers": answers,
    }


def _refuse_repeated_emails(prepared: list[Document]) -> None:
    seen: set[str] = set()
    repeated: list[str] = []
    for fields in prepared:
        if fields["email_key"] in seen and fields["email"] not in repeated:
            repeated.append(fields["email"])
        seen.add(fields["email_key"])
    if repeated:
        raise domain.already_registered(repeated)


def _consent(source: str, now: datetime) -> Document:
    """Consent to the privacy notice: who gave it (delegate, booker or organiser), when, to which version."""
    return {"source": source, "given_at": now, "notice_version": domain.PRIVACY_NOTICE_VERSION}


def _new(
    registration_id: str,
    event_id: str,
    fields: Document,
    token: str,
    consent: Document,
    now: datetime,
    **extra: Any,
) -> Document:
    return {
        "_id": registration_id,
        "event_id": event_id,
        **fields,
        "sessions": list(fields["sessions"]),
        "waiting_sessions": [],
        "consent": consent,
        "manage_token_hash": hash_token(token),
        "created_at": now,
        "updated_at": now,
        **extra,
    }


def _changed_details(registration: Document, changes: domain.RegistrationUpdate) -> Document:
    fields: Document = {}
    for name in ("name", "organisation", "role"):
        value = getattr(changes, name)
        if value is not None:
            fields[name] = value
    for name in ("phase", "local_authority", "dietary_needs", "access_needs"):
        if name in changes.model_fields_set:
            value = getattr(changes, name)
            fields[name] = value.value if isinstance(value, domain.Phase) else value
    return fields


def _existing_outcome(existing: Document, import_id: str) -> ImportOutcome:
    # A row this same import already created (before a restart) still counts as imported.
    outcome: Literal["imported", "skipped"] = "imported" if existing.get("import_id") == import_id else "skipped"
    return ImportOutcome(outcome, existing["_id"], str(existing["status"]))


def _snapshot(event: Document, registration: Document) -> dict[str, Any]:
    return {
        "registration_id": registration["_id"],
        "event": domain.summary(event),
        "delegate": domain.delegate(registration),
        "ticket_type": registration["ticket_type"],
        "sessions": registration["sessions"],
        "manage_token_hash": registration["manage_token_hash"],
    }


def _updated_event(event: Document, registration: Document) -> Envelope:
    status: Literal["confirmed", "waitlisted"] = (
        "confirmed" if registration["status"] == Status.CONFIRMED else "waitlisted"
    )
    return _new_event(events.RegistrationUpdated(**_snapshot(event, registration), status=status), registration["_id"])


def _new_event(data: events.EventData, registration_id: str, correlation: str | None = None) -> Envelope:
    return Envelope.new(data, source=SOURCE, subject=registration_id, correlation_id=correlation or correlation_id())


def _settled(outcomes: list[Reply | Exception | None]) -> list[Reply | Exception]:
    """Every arrival's outcome, once each has one."""
    settled = [outcome for outcome in outcomes if outcome is not None]
    if len(settled) != len(outcomes):
        raise RuntimeError("an arrival was left without an answer")
    return settled
