"""The checkin service against the real broker and document server: projection, scans, devices, attendance."""

from __future__ import annotations

import asyncio
import base64
import operator
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from prometheus_client import REGISTRY

from checkin.domain import ScanRequest
from checkin.door import Scans
from checkin.main import SERVICE, create_app
from checkin.rebuild import rebuild
from checkin.store import Store
from plenary_kit import events, ticketcode, topics
from plenary_kit.envelope import Envelope
from plenary_kit.kafka import Publisher
from plenary_kit.settings import ServiceSettings
from plenary_stack.stack import EmbeddedStack

ADMIN_TOKEN = "test-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The document server is shared by the whole run: this module's databases are its own.
DB_PREFIX = f"plenary_test_checkin_{uuid.uuid4().hex[:8]}"
# A consumer group of this module's own, so other test apps on the same broker never take its partitions.
GROUP_SUFFIX = f"-test-{uuid.uuid4().hex[:8]}"
GROUP = SERVICE + GROUP_SUFFIX
# What the projection consumes; the broker is shared, so other modules' events are here too.
CONSUMED = (topics.REGISTRATION, topics.TICKETING)

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    registration_id: str
    event_id: str
    code: str
    envelopes: tuple[Envelope, ...]


class Box:
    """What the ticketing and registration services would publish for one event."""

    def __init__(self, event_id: str | None = None) -> None:
        self.event_id = event_id or str(uuid.uuid4())
        self.key = Ed25519PrivateKey.generate()
        public = ticketcode.public_bytes(self.key)
        self.key_id = ticketcode.key_id_of(public)
        self.public_key = base64.urlsafe_b64encode(public).decode().rstrip("=")
        self.summary = events.EventSummary(
            id=self.event_id,
            slug="leadership-in-challenging-times",
            title="Education Leadership in Challenging Times",
            venue="Foresight Centre, Liverpool",
            starts_at=datetime(2026, 10, 8, 9, tzinfo=UTC),
            ends_at=datetime(2026, 10, 8, 16, tzinfo=UTC),
            timezone="Europe/London",
            sessions=[
                events.SessionSummary(
                    code=code,
                    title=title,
                    starts_at=datetime(2026, 10, 8, 11, tzinfo=UTC),
                    ends_at=datetime(2026, 10, 8, 12, tzinfo=UTC),
                )
                for code, title in (("W1", "Leading through change"), ("W2", "Inclusion and SEND"))
            ],
        )

    def confirmed(
        self,
        registration_id: str,
        name: str,
        ticket_type: str = "delegate",
        sessions: Sequence[str] = (),
        phase: str | None = None,
        local_authority: str | None = None,
    ) -> Envelope:
        data = events.RegistrationConfirmed(
            registration_id=registration_id,
            event=self.summary,
            delegate=events.Delegate(
                name=name,
                email="head@school.example",
                organisation="Knowsley Primary",
                role="headteacher",
                phase=phase,
                local_authority=local_authority,
            ),
            ticket_type=ticket_type,
            sessions=list(sessions),
        )
        return Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))

    def cancelled(self, registration_id: str, name: str) -> Envelope:
        data = events.RegistrationCancelled(
            registration_id=registration_id,
            event=self.summary,
            delegate=events.Delegate(
                name=name, email="head@school.example", organisation="Knowsley Primary", role="headteacher"
            ),
            previous_status="confirmed",
        )
        return Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))

    def updated(
        self,
        registration_id: str,
        delegate: events.Delegate,
        ticket_type: str = "delegate",
        sessions: Sequence[str] = (),
        status: str = "confirmed",
    ) -> Envelope:
        data = events.RegistrationUpdated(
            registration_id=registration_id,
            event=self.summary,
            delegate=delegate,
            ticket_type=ticket_type,
            sessions=list(sessions),
            status=status,  # type: ignore[arg-type]
        )
        return Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))

    def erased(self, registration_id: str) -> Envelope:
        data = events.RegistrationErased(registration_id=registration_id, event_id=self.event_id)
        return Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))

    def code(self, ticket_id: str, ticket_type: str = "delegate") -> str:
        return ticketcode.encode(self.event_id, ticket_id, ticket_type, self.key)

    def issued(self, ticket_id: str, registration_id: str, ticket_type: str = "delegate") -> Envelope:
        data = events.TicketIssued(
            ticket_id=ticket_id,
            registration_id=registration_id,
            event_id=self.event_id,
            ticket_type=ticket_type,
            code=self.code(ticket_id, ticket_type),
            key_id=self.key_id,
            public_key=self.public_key,
            issued_at=datetime.now(UTC),
        )
        return Envelope.new(data, source="ticketing", subject=registration_id, correlation_id=str(uuid.uuid4()))

    def revoked(self, ticket_id: str, registration_id: str, reason: str = "cancelled") -> Envelope:
        data = events.TicketRevoked(
            ticket_id=ticket_id, registration_id=registration_id, event_id=self.event_id, reason=reason
        )
        return Envelope.new(data, source="ticketing", subject=registration_id, correlation_id=str(uuid.uuid4()))


@dataclass
class Checkin:
    http: httpx.AsyncClient
    store: Store
    publisher: Publisher
    caught_up: Callable[[str, Sequence[str]], Awaitable[None]]
    app: FastAPI

    async def publish(self, *envelopes: Envelope) -> None:
        await self.publisher.publish(
            [
                (topics.topic_for_event_type(e.type), e.subject, e.to_bytes(), [("ce_type", e.type.encode())])
                for e in envelopes
            ]
        )

    async def delegate(self, box: Box, name: str, ticket_type: str = "delegate", **details: Any) -> Ticket:
        """Publish a confirmed registration and its ticket, and wait until both are in the projection."""
        registration_id, ticket_id = str(uuid.uuid4()), str(uuid.uuid4())
        envelopes = (
            box.confirmed(registration_id, name, ticket_type, **details),
            box.issued(ticket_id, registration_id, ticket_type),
        )
        await self.publish(*envelopes)
        await self.projected(ticket_id, registration_id)
        return Ticket(ticket_id, registration_id, box.event_id, box.code(ticket_id, ticket_type), envelopes)

    async def projected(self, ticket_id: str, registration_id: str) -> None:
        await wait_for(lambda: self.store.tickets.find_one({"_id": ticket_id, "ticket_type": {"$exists": True}}))
        await wait_for(lambda: self.store.registrations.find_one({"_id": registration_id, "counted": True}))

    async def scan(
        self,
        event_id: str,
        code: str,
        gate: str = "North",
        direction: str = "in",
        nonce: str | None = None,
        headers: dict[str, str] = ADMIN,
        **extra: Any,
    ) -> httpx.Response:
        body = {"code": code, "gate": gate, "direction": direction, "nonce": nonce or uuid.uuid4().hex, **extra}
        return await self.http.post(f"/api/v1/events/{event_id}/scans", json=body, headers=headers)

    async def verdict(self, event_id: str, code: str, **options: Any) -> dict[str, Any]:
        response = await self.scan(event_id, code, **options)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def attendance(self, event_id: str) -> dict[str, Any]:
        """The figures, without the moment they were read."""
        response = await self.http.get(f"/api/v1/events/{event_id}/attendance", headers=ADMIN)
        assert response.status_code == 200, response.text
        figures: dict[str, Any] = response.json()
        assert figures.pop("updated_at")
        return figures


async def wait_for(probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def module_settings(infrastructure: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> ServiceSettings:
    return ServiceSettings(
        plenary_consumer_group_suffix=GROUP_SUFFIX,
        kafka_bootstrap_servers=infrastructure.config.bootstrap,
        mongodb_uri=infrastructure.config.mongo,
        plenary_db_prefix=DB_PREFIX,
        plenary_var=tmp_path_factory.mktemp("checkin-var"),
        plenary_admin_token=ADMIN_TOKEN,
        # Every request here comes from one client; tests/integration/test_rate_limits.py turns them on.
        plenary_rate_limits="off",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
    )


@pytest.fixture(scope="module")
async def checkin(
    infrastructure: EmbeddedStack,
    caught_up: Callable[[str, Sequence[str]], Awaitable[None]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Checkin]:
    app = create_app(module_settings(infrastructure, tmp_path_factory))
    publisher = Publisher(infrastructure.config.bootstrap)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkin", timeout=30) as http:

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await wait_for(ready)
            # Other modules' events on the shared topics are projected first, out of the tests' way.
            await caught_up(GROUP, CONSUMED)
            try:
                yield Checkin(http=http, store=app.state.store, publisher=publisher, caught_up=caught_up, app=app)
            finally:
                await publisher.stop()


@pytest.fixture(scope="module")
def box() -> Box:
    return Box()


def _flip_byte(code: str, index: int) -> str:
    raw = bytearray(base64.b32decode(code + "=" * (-len(code) % 8)))
    raw[index] ^= 0x40
    return base64.b32encode(bytes(raw)).decode().rstrip("=")


def _handled(event_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "plenary_events_handled_total", {"consumer": GROUP, "type": event_type, "outcome": outcome}
    )
    return value or 0.0


async def test_first_scan_admits_and_names_the_delegate(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Siobhán Ní Bhriain")

    reply = await checkin.verdict(box.event_id, ticket.code, gate="North")

    assert reply["verdict"] == "admitted"
    assert reply["attendee"] == {"name": "Siobhán Ní Bhriain", "ticket_type": "delegate"}
    assert "first_admitted" not in reply


async def test_second_scan_reports_first_admission(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Adebayo Olubayo", "speaker")
    before = datetime.now(UTC)
    first = await checkin.verdict(box.event_id, ticket.code, gate="North")

    again = await checkin.verdict(box.event_id, ticket.code, gate="South")

    assert first["verdict"] == "admitted"
    assert again["verdict"] == "already_admitted"
    assert again["attendee"] == {"name": "Adebayo Olubayo", "ticket_type": "speaker"}
    assert again["first_admitted"]["gate"] == "North"
    first_at = datetime.fromisoformat(again["first_admitted"]["at"])
    assert before - timedelta(seconds=1) <= first_at <= datetime.now(UTC)
    audit = await checkin.store.scans.find_one({"_id": first["scan_id"]})
    assert audit is not None
    assert audit["received_at"] == first_at


async def test_concurrent_scans_at_five_gates_admit_exactly_once(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Zoë O'Neill")

    replies = await asyncio.gather(
        *(checkin.verdict(box.event_id, ticket.code, gate=f"Gate {n}") for n in range(1, 6))
    )

    verdicts = sorted(reply["verdict"] for reply in replies)
    assert verdicts == ["admitted"] + ["already_admitted"] * 4
    winner = next(reply for reply in replies if reply["verdict"] == "admitted")
    winning_gate = (await checkin.store.scans.find_one({"_id": winner["scan_id"]}) or {})["gate"]
    assert {reply["first_admitted"]["gate"] for reply in replies if "first_admitted" in reply} == {winning_gate}
    assert await checkin.store.admissions.count_documents({"_id": ticket.ticket_id}) == 1


async def test_two_processes_scanning_one_ticket_admit_it_once_and_count_each_move_once(checkin: Checkin) -> None:
    """A second decider with a desk of its own, as a second checkin process has, races this one."""
    box = Box()
    ticket = await checkin.delegate(box, "Gráinne Ó Súilleabháin")
    runtime = checkin.app.state.runtime
    deciders = (checkin.app.state.scans, Scans(runtime.client, checkin.store, runtime.outbox))

    async def both(direction: str, per_decider: int = 1) -> list[str]:
        replies = await asyncio.gather(
            *(
                decider.scan(
                    box.event_id,
                    ScanRequest.model_validate(
                        {"code": ticket.code, "gate": f"Gate {n}", "direction": direction, "nonce": uuid.uuid4().hex}
                    ),
                    None,
                )
                for n in range(per_decider)
                for decider in deciders
            )
        )
        return sorted(reply["verdict"] for reply in replies)

    assert await both("in", per_decider=5) == ["admitted"] + ["already_admitted"] * 9
    assert await both("out") == ["exited", "exited"]
    assert await both("in") == ["admitted", "already_admitted"]
    assert await both("out") == ["exited", "exited"]

    admission = await checkin.store.admissions.find_one({"_id": ticket.ticket_id})
    assert admission is not None
    assert (admission["entries"], admission["exits"], admission["inside"]) == (2, 2, False)
    figures = await checkin.attendance(box.event_id)
    assert (figures["admitted"], figures["inside"]) == (1, 0)
    assert await checkin.store.scans.count_documents({"ticket_id": ticket.ticket_id}) == 16


async def test_code_with_a_flipped_byte_is_refused(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Nguyễn Thị Mai")
    raw_length = len(base64.b32decode(ticket.code + "=" * (-len(ticket.code) % 8)))

    # Byte 0 is the format, 1-16 the event, 17-32 the ticket, 33-36 the key id, 37 the type's length.
    expected = {
        0: "malformed",
        # An altered event id is a forgery, not another event's ticket.
        5: "invalid_signature",
        20: "invalid_signature",
        35: "invalid_signature",
        37: "malformed",
        40: "invalid_signature",
        raw_length - 1: "invalid_signature",
    }

    for index, verdict in expected.items():
        reply = await checkin.verdict(box.event_id, _flip_byte(ticket.code, index))
        assert (index, reply["verdict"]) == (index, verdict)
        assert "attendee" not in reply
    assert (await checkin.verdict(box.event_id, ticket.code))["verdict"] == "admitted"


async def test_code_for_another_event_is_wrong_event(checkin: Checkin, box: Box) -> None:
    other = Box()
    ticket = await checkin.delegate(other, "Pádraig Ó Súilleabháin")

    reply = await checkin.verdict(box.event_id, ticket.code)

    assert reply["verdict"] == "wrong_event"
    assert (await checkin.verdict(other.event_id, ticket.code))["verdict"] == "admitted"


async def test_genuine_code_for_a_ticket_never_issued_is_unknown(checkin: Checkin, box: Box) -> None:
    await checkin.delegate(box, "Keeps the key known")

    reply = await checkin.verdict(box.event_id, box.code(str(uuid.uuid4())))

    assert reply == {"verdict": "unknown_ticket", "scan_id": reply["scan_id"]}


async def test_garbage_is_malformed_not_an_error(checkin: Checkin, box: Box) -> None:
    for text in ("", "https://example.org/not-a-ticket", "Ünïcode ✓"):
        assert (await checkin.verdict(box.event_id, text))["verdict"] == "malformed"


async def test_same_nonce_twice_gets_the_first_answer_recorded_once(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Grace Okafor")
    nonce = "retry-" + uuid.uuid4().hex

    first = await checkin.verdict(box.event_id, ticket.code, nonce=nonce)
    again = await asyncio.gather(*(checkin.verdict(box.event_id, ticket.code, nonce=nonce) for _ in range(3)))

    assert first["verdict"] == "admitted"
    assert all(reply == first for reply in again)
    assert await checkin.store.scans.count_documents({"nonce_key": f"{box.event_id}:{nonce}"}) == 1
    outbox = checkin.store.scans.database["outbox"]
    assert await outbox.count_documents({"type": {"$regex": "^attendance"}, "key": ticket.ticket_id}) == 1
    # A fresh nonce is a fresh scan: the delegate is inside already.
    assert (await checkin.verdict(box.event_id, ticket.code))["verdict"] == "already_admitted"


async def test_an_exit_or_a_refusal_sent_again_is_answered_as_before_and_counted_once(
    checkin: Checkin, box: Box
) -> None:
    ticket = await checkin.delegate(box, "Siobhan Kelly")
    assert (await checkin.verdict(box.event_id, ticket.code, gate="North"))["verdict"] == "admitted"
    way_out, refused = "exit-" + uuid.uuid4().hex, "forged-" + uuid.uuid4().hex
    forged = ticket.code[:-3] + ("A" if ticket.code[-3] != "A" else "B") + ticket.code[-2:]

    exited = await checkin.verdict(box.event_id, ticket.code, gate="North", direction="out", nonce=way_out)
    turned_away = await checkin.verdict(box.event_id, forged, gate="North", nonce=refused)
    before = await checkin.attendance(box.event_id)
    # Sent again, together and apart, as a phone's upload queue does after a lost reply. Decided
    # afresh they would be different: the delegate is outside now, so a second exit moves nothing.
    again = await asyncio.gather(
        *(checkin.verdict(box.event_id, ticket.code, gate="North", direction="out", nonce=way_out) for _ in range(3)),
        *(checkin.verdict(box.event_id, forged, gate="North", nonce=refused) for _ in range(2)),
    )
    again.append(await checkin.verdict(box.event_id, ticket.code, gate="North", direction="out", nonce=way_out))

    assert exited["verdict"] == "exited" and turned_away["verdict"] != "admitted"
    assert again[:3] + again[5:] == [exited] * 4
    assert again[3:5] == [turned_away] * 2
    assert await checkin.attendance(box.event_id) == before
    for nonce in (way_out, refused):
        assert await checkin.store.scans.count_documents({"nonce_key": f"{box.event_id}:{nonce}"}) == 1


async def test_attendance_counts_people_gates_ticket_types_and_who_is_inside(checkin: Checkin) -> None:
    box = Box()
    head = await checkin.delegate(box, "Amira Haddad")
    deputy = await checkin.delegate(box, "Tom Fletcher")
    speaker = await checkin.delegate(box, "Dr Ngozi Eze", "speaker")
    leaver = await checkin.delegate(box, "Cancelled Delegate")
    await checkin.publish(box.cancelled(leaver.registration_id, "Cancelled Delegate"))
    await wait_for(
        lambda: checkin.store.registrations.find_one({"_id": leaver.registration_id, "counted": False})
    )

    assert (await checkin.verdict(box.event_id, head.code, gate="North"))["verdict"] == "admitted"
    assert (await checkin.verdict(box.event_id, deputy.code, gate="South"))["verdict"] == "admitted"
    assert (await checkin.verdict(box.event_id, speaker.code, gate="North"))["verdict"] == "admitted"
    assert (await checkin.verdict(box.event_id, head.code, gate="North"))["verdict"] == "already_admitted"
    assert (await checkin.verdict(box.event_id, deputy.code, gate="South", direction="out"))["verdict"] == "exited"
    assert (await checkin.verdict(box.event_id, speaker.code, direction="out"))["verdict"] == "exited"
    assert (await checkin.verdict(box.event_id, speaker.code, gate="South"))["verdict"] == "admitted"
    cancelled = await checkin.verdict(box.event_id, leaver.code)
    assert cancelled["verdict"] == "revoked"
    assert cancelled["attendee"]["name"] == "Cancelled Delegate"

    figures = await checkin.attendance(box.event_id)
    arrivals = figures.pop("arrivals_per_minute")
    assert figures == {
        "registered": 3,
        "admitted": 3,
        "inside": 2,
        "no_shows": 0,
        "by_gate": {"North": 2, "South": 1},
        "by_ticket_type": {"delegate": 2, "speaker": 1},
        "by_session": {},
        "by_phase": {"Not given": 3},
        "by_local_authority": {"Not given": 3},
        "alerts": 0,
    }
    assert sum(minute["admitted"] for minute in arrivals) == 3


async def test_revoked_ticket_is_refused_by_name(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Revoked Ticket-Holder")
    await checkin.publish(box.revoked(ticket.ticket_id, ticket.registration_id))
    await wait_for(lambda: checkin.store.tickets.find_one({"_id": ticket.ticket_id, "revoked_at": {"$ne": None}}))

    reply = await checkin.verdict(box.event_id, ticket.code)

    assert reply["verdict"] == "revoked"
    assert reply["attendee"]["name"] == "Revoked Ticket-Holder"


async def test_ticket_before_registration_is_merged_when_it_arrives(checkin: Checkin, box: Box) -> None:
    registration_id, ticket_id = str(uuid.uuid4()), str(uuid.uuid4())
    await checkin.publish(box.issued(ticket_id, registration_id))
    await wait_for(lambda: checkin.store.tickets.find_one({"_id": ticket_id}))

    early = await checkin.verdict(box.event_id, box.code(ticket_id))
    await checkin.publish(box.confirmed(registration_id, "Late Arriving Name"))
    await checkin.projected(ticket_id, registration_id)
    later = await checkin.verdict(box.event_id, box.code(ticket_id))

    assert early["verdict"] == "admitted"
    assert "attendee" not in early
    assert later["verdict"] == "already_admitted"
    assert later["attendee"] == {"name": "Late Arriving Name", "ticket_type": "delegate"}


async def test_redelivered_events_change_nothing(checkin: Checkin) -> None:
    box = Box()
    ticket = await checkin.delegate(box, "Delivered Thrice")
    assert (await checkin.verdict(box.event_id, ticket.code))["verdict"] == "admitted"
    duplicates = _handled("registration.confirmed", "duplicate")
    applied = _handled("registration.confirmed", "applied")
    issued_duplicates = _handled("ticket.issued", "duplicate")

    await checkin.publish(*ticket.envelopes)
    await checkin.publish(*ticket.envelopes)
    # The same facts under new event ids, as a replay by the producer would send them.
    await checkin.publish(box.confirmed(ticket.registration_id, "Delivered Thrice"))

    # Once the group has committed past them, every copy has been handled and counted.
    await checkin.caught_up(GROUP, CONSUMED)
    assert _handled("registration.confirmed", "duplicate") >= duplicates + 2
    assert _handled("ticket.issued", "duplicate") >= issued_duplicates + 2
    assert _handled("registration.confirmed", "applied") >= applied + 1
    figures = await checkin.attendance(box.event_id)
    assert (figures["registered"], figures["admitted"], figures["inside"]) == (1, 1, 1)
    assert (await checkin.verdict(box.event_id, ticket.code))["verdict"] == "already_admitted"


async def test_devices_scan_only_their_own_event(checkin: Checkin, box: Box) -> None:
    other = Box()
    ticket = await checkin.delegate(box, "Device Scope")
    created = await checkin.http.post(
        f"/api/v1/events/{box.event_id}/devices", json={"name": "Foyer phone", "gates": ["North"]}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    device = created.json()
    device_auth = {"Authorization": f"Bearer {device['token']}"}

    own = await checkin.scan(box.event_id, ticket.code, gate="North", headers=device_auth)
    elsewhere = await checkin.scan(other.event_id, ticket.code, gate="North", headers=device_auth)
    wrong_gate = await checkin.scan(box.event_id, ticket.code, gate="Stage door", headers=device_auth)
    organiser_only = await checkin.http.get(f"/api/v1/events/{box.event_id}/attendance", headers=device_auth)
    no_token = await checkin.scan(box.event_id, ticket.code, headers={})
    bad_token = await checkin.scan(box.event_id, ticket.code, headers={"Authorization": "Bearer nope"})

    assert own.status_code == 200 and own.json()["verdict"] == "admitted"
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "forbidden")
    assert (wrong_gate.status_code, wrong_gate.json()["code"]) == (403, "gate_not_assigned")
    assert (organiser_only.status_code, organiser_only.json()["code"]) == (403, "forbidden")
    assert (no_token.status_code, no_token.json()["code"]) == (401, "unauthenticated")
    assert (bad_token.status_code, bad_token.json()["code"]) == (401, "unauthenticated")
    stored = await checkin.store.devices.find_one({"_id": device["device_id"]})
    assert stored is not None and device["token"] not in str(stored) and device["enrolment_code"] not in str(stored)


async def test_a_phones_scans_arriving_together_read_its_device_once(
    checkin: Checkin, box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty scans from a phone the service does not remember yet: one read finds its device."""
    tickets = [await checkin.delegate(box, f"Delegate {n}") for n in range(20)]
    phone = await device_of(checkin, box.event_id, "North")
    reads: list[str] = []
    read = Store.device_by_token_hash

    async def counted(store: Store, token_hash: str) -> dict[str, Any] | None:
        reads.append(token_hash)
        return await read(store, token_hash)

    monkeypatch.setattr(Store, "device_by_token_hash", counted)
    replies = await asyncio.gather(*(checkin.scan(box.event_id, t.code, headers=phone) for t in tickets))

    assert [r.json()["verdict"] for r in replies] == ["admitted"] * 20
    assert len(reads) == 1


async def test_enrolment_code_gives_a_phone_its_own_token_once(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Phone Enrolment")
    created = (
        await checkin.http.post(
            f"/api/v1/events/{box.event_id}/devices", json={"name": "Gate phone", "gates": ["South"]}, headers=ADMIN
        )
    ).json()

    enrolled = await checkin.http.post("/api/v1/devices/enrol", json={"enrolment_code": created["enrolment_code"]})
    reused = await checkin.http.post("/api/v1/devices/enrol", json={"enrolment_code": created["enrolment_code"]})
    unknown = await checkin.http.post("/api/v1/devices/enrol", json={"enrolment_code": "not-a-code"})

    assert enrolled.status_code == 200, enrolled.text
    phone = enrolled.json()
    assert (phone["device_id"], phone["event_id"], phone["gates"]) == (created["device_id"], box.event_id, ["South"])
    assert phone["token"] != created["token"]
    assert (reused.status_code, reused.json()["code"]) == (409, "enrolment_code_used")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "enrolment_code_unknown")
    phone_auth = {"Authorization": f"Bearer {phone['token']}"}
    script_auth = {"Authorization": f"Bearer {created['token']}"}
    assert (await checkin.verdict(box.event_id, ticket.code, gate="South", headers=phone_auth))["verdict"] == "admitted"
    assert (await checkin.verdict(box.event_id, ticket.code, gate="South", headers=script_auth))[
        "verdict"
    ] == "already_admitted"

    listed = (await checkin.http.get(f"/api/v1/events/{box.event_id}/devices", headers=ADMIN)).json()
    mine = next(d for d in listed if d["device_id"] == created["device_id"])
    assert mine["enrolled"] is True and mine["last_seen"] is not None
    assert "token" not in mine

    revoked = await checkin.http.post(f"/api/v1/devices/{created['device_id']}/revoke", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    after = await checkin.scan(box.event_id, ticket.code, gate="South", headers=phone_auth)
    assert (after.status_code, after.json()["code"]) == (401, "unauthenticated")


async def test_bad_scan_requests_are_validation_errors(checkin: Checkin, box: Box) -> None:
    for body in (
        {"code": "X", "gate": "G" * 41, "direction": "in", "nonce": "nonce-123"},
        {"code": "X", "gate": "North", "direction": "in", "nonce": "short"},
        {"code": "X" * 1001, "gate": "North", "direction": "in", "nonce": "nonce-123"},
        {"code": "X", "gate": "North", "direction": "up", "nonce": "nonce-123"},
    ):
        response = await checkin.http.post(f"/api/v1/events/{box.event_id}/scans", json=body, headers=ADMIN)
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")


async def test_every_scan_is_published_as_an_attendance_event(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Published Scan")
    reply = await checkin.verdict(box.event_id, ticket.code)
    outbox = checkin.store.scans.database["outbox"]

    row = await wait_for(
        lambda: outbox.find_one({"key": ticket.ticket_id, "type": "attendance.admitted", "sent_at": {"$ne": None}})
    )

    envelope = Envelope.from_bytes(bytes(row["value"]))
    assert envelope.data["scan_id"] == reply["scan_id"]
    assert envelope.data["ticket_id"] == ticket.ticket_id
    assert envelope.source == "checkin"


async def test_updated_registration_is_admitted_with_its_new_details_and_reissued_ticket(checkin: Checkin) -> None:
    box = Box()
    ticket = await checkin.delegate(box, "Grace Okafor")
    renamed = events.Delegate(
        name="Grace Okafor-Hughes", email="g.okafor@wirral-high.example", organisation="Wirral High School",
        role="deputy headteacher", phase="secondary", local_authority="Wirral",
    )
    new_ticket_id = str(uuid.uuid4())

    await checkin.publish(
        box.updated(ticket.registration_id, renamed, "speaker", ["ws-inclusion"]),
        box.revoked(ticket.ticket_id, ticket.registration_id, reason="reissued"),
        box.issued(new_ticket_id, ticket.registration_id, "speaker"),
    )
    stored = await wait_for(
        lambda: checkin.store.registrations.find_one({"_id": ticket.registration_id, "name": renamed.name})
    )
    await wait_for(lambda: checkin.store.tickets.find_one({"_id": ticket.ticket_id, "revoked_at": {"$ne": None}}))
    await checkin.projected(new_ticket_id, ticket.registration_id)

    assert (stored["phase"], stored["local_authority"]) == ("secondary", "Wirral")
    assert (stored["ticket_type"], stored["sessions"]) == ("speaker", ["ws-inclusion"])
    assert (stored["organisation"], stored["role"]) == ("Wirral High School", "deputy headteacher")
    old = await checkin.verdict(box.event_id, ticket.code)
    assert (old["verdict"], old["attendee"]["name"]) == ("revoked", "Grace Okafor-Hughes")
    new = await checkin.verdict(box.event_id, box.code(new_ticket_id, "speaker"))
    assert new["verdict"] == "admitted"
    assert new["attendee"] == {"name": "Grace Okafor-Hughes", "ticket_type": "speaker"}
    figures = await checkin.attendance(box.event_id)
    assert (figures["registered"], figures["admitted"], figures["by_ticket_type"]) == (1, 1, {"speaker": 1})


async def test_update_of_a_waiting_delegate_adds_nobody_to_the_door_list(checkin: Checkin) -> None:
    box = Box()
    registration_id = str(uuid.uuid4())
    waiting = events.Delegate(name="Waiting Delegate", email="w@school.example", organisation="Halton", role="teacher")
    update = box.updated(registration_id, waiting, status="waitlisted")
    marker = box.confirmed(str(uuid.uuid4()), "Published After")

    await checkin.publish(update)
    await checkin.publish(marker)
    # Both are on the registration topic; once the group is past them, both have been handled.
    await checkin.caught_up(GROUP, [topics.REGISTRATION])

    assert await checkin.store.registrations.find_one({"_id": registration_id}) is None
    assert (await checkin.attendance(box.event_id))["registered"] == 1


async def test_erased_delegate_is_anonymised_at_the_door_and_still_counted(checkin: Checkin) -> None:
    box = Box()
    ticket = await checkin.delegate(box, "Ada Ní Bhriain")
    nonce = "erasure-" + uuid.uuid4().hex
    first = await checkin.verdict(box.event_id, ticket.code, gate="North", nonce=nonce)
    assert first["attendee"]["name"] == "Ada Ní Bhriain"
    before = await checkin.attendance(box.event_id)

    await checkin.publish(box.erased(ticket.registration_id))
    await wait_for(
        lambda: checkin.store.registrations.find_one({"_id": ticket.registration_id, "erased_at": {"$ne": None}})
    )
    # A late copy of an earlier event brings nothing back.
    await checkin.publish(box.confirmed(ticket.registration_id, "Ada Ní Bhriain"))
    await checkin.caught_up(GROUP, [topics.REGISTRATION])

    stored = await checkin.store.registrations.find_one({"_id": ticket.registration_id})
    assert stored is not None
    assert stored["name"] == "Erased delegate"
    assert "organisation" not in stored and "role" not in stored
    assert (stored["counted"], stored["ticket_type"]) == (True, "delegate")
    assert "Ada Ní Bhriain" not in str(await checkin.store.scans.find({"ticket_id": ticket.ticket_id}).to_list(None))
    assert await checkin.attendance(box.event_id) == before
    again = await checkin.verdict(box.event_id, ticket.code, gate="North", nonce=nonce)
    assert again["attendee"]["name"] == "Erased delegate"
    later = await checkin.verdict(box.event_id, ticket.code, gate="South")
    assert later["verdict"] == "already_admitted"
    assert later["attendee"] == {"name": "Erased delegate", "ticket_type": "delegate"}


async def device_of(checkin: Checkin, event_id: str, *gates: str) -> dict[str, str]:
    spec = {"name": f"Door phone {gates[0]}", "gates": list(gates)}
    created = await checkin.http.post(f"/api/v1/events/{event_id}/devices", json=spec, headers=ADMIN)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


async def test_a_delegate_erased_before_their_confirmation_arrives_is_counted_once_when_it_does(
    checkin: Checkin,
) -> None:
    box = Box()
    registration_id = str(uuid.uuid4())
    await checkin.publish(box.erased(registration_id))
    await wait_for(lambda: checkin.store.registrations.find_one({"_id": registration_id, "counted": False}))
    # The confirmation, then a second copy of it, with a newcomer's among them.
    await checkin.publish(box.confirmed(registration_id, "Olamide Bello"))
    await checkin.publish(box.confirmed(str(uuid.uuid4()), "Gwen Parry"))
    await checkin.publish(box.confirmed(registration_id, "Olamide Bello"))
    await checkin.caught_up(GROUP, [topics.REGISTRATION])

    stored = await checkin.store.registrations.find_one({"_id": registration_id})
    assert stored is not None
    assert (stored["counted"], stored["name"]) == (True, "Erased delegate")
    assert (await checkin.attendance(box.event_id))["registered"] == 2


async def test_workshop_rooms_admit_only_their_own_delegates_and_count_each_once(checkin: Checkin) -> None:
    box = Box()
    chosen = await checkin.delegate(box, "Aoife Murphy", sessions=["W1"], phase="primary", local_authority="Sefton")
    room = await device_of(checkin, box.event_id, "Room 1", "Room 2")

    first = await checkin.verdict(box.event_id, chosen.code, gate="Room 1", session="W1", headers=room)
    again = await checkin.verdict(box.event_id, chosen.code, gate="Room 1", session="W1", headers=room)
    elsewhere = await checkin.verdict(box.event_id, chosen.code, gate="Room 2", session="W2", headers=room)

    assert (first["verdict"], first["attendee"]["name"]) == ("admitted", "Aoife Murphy")
    assert again["verdict"] == "already_admitted" and again["first_admitted"]["gate"] == "Room 1"
    assert elsewhere["verdict"] == "not_entitled"
    figures = await checkin.attendance(box.event_id)
    # A workshop room is not the venue door: the delegate has still not been admitted to the event.
    assert (figures["by_session"], figures["admitted"], figures["inside"]) == ({"W1": 1}, 0, 0)
    gate = await checkin.verdict(box.event_id, chosen.code, gate="North")
    assert gate["verdict"] == "admitted"
    figures = await checkin.attendance(box.event_id)
    assert (figures["by_phase"], figures["by_local_authority"]) == ({"primary": 1}, {"Sefton": 1})


async def test_offline_scan_before_a_revocation_is_recorded_as_an_admission(checkin: Checkin, box: Box) -> None:
    ticket = await checkin.delegate(box, "Kwame Mensah")
    scanned_at = datetime.now(UTC) - timedelta(minutes=5)
    await checkin.publish(box.revoked(ticket.ticket_id, ticket.registration_id))
    await wait_for(lambda: checkin.store.tickets.find_one({"_id": ticket.ticket_id, "revoked_at": {"$ne": None}}))

    online = await checkin.verdict(box.event_id, ticket.code)
    upload = await checkin.verdict(box.event_id, ticket.code, offline=True, scanned_at=scanned_at.isoformat())
    later = await checkin.verdict(
        box.event_id, ticket.code, offline=True, scanned_at=datetime.now(UTC).isoformat(), direction="out"
    )

    assert online["verdict"] == "revoked"
    # The door let them in before the revocation reached it: that admission happened and counts.
    assert upload["verdict"] == "admitted"
    admission = await checkin.store.admissions.find_one({"_id": ticket.ticket_id})
    assert admission is not None and abs((admission["first_at"] - scanned_at).total_seconds()) < 0.01
    assert later["verdict"] == "exited"


async def test_two_devices_admitting_one_ticket_offline_raise_a_double_entry_alert(checkin: Checkin) -> None:
    box = Box()
    ticket = await checkin.delegate(box, "Oluwaseun Okafor")
    north, south = await device_of(checkin, box.event_id, "North"), await device_of(checkin, box.event_id, "South")
    at = datetime.now(UTC) - timedelta(minutes=3)

    first = await checkin.verdict(
        box.event_id, ticket.code, gate="North", offline=True, scanned_at=at.isoformat(), headers=north
    )
    second = await checkin.verdict(
        box.event_id, ticket.code, gate="South", offline=True,
        scanned_at=(at + timedelta(seconds=40)).isoformat(), headers=south,
    )
    # The same upload sent again (same nonce) is the same answer, not a second alert.
    nonce = uuid.uuid4().hex
    refused_offline = {"offline": True, "offline_verdict": "already_admitted", "scanned_at": at.isoformat()}
    for _ in range(2):
        assert (await checkin.verdict(box.event_id, ticket.code, gate="South", nonce=nonce, headers=south,
                                      **refused_offline))["verdict"] == "already_admitted"

    assert first["verdict"] == "admitted" and "alert" not in first
    assert second["verdict"] == "already_admitted"
    assert second["alert"]["kind"] == "double_entry"
    alerts = (await checkin.http.get(f"/api/v1/events/{box.event_id}/alerts", headers=ADMIN)).json()
    assert len(alerts) == 1
    [alert] = alerts
    assert (alert["name"], alert["first"]["gate"], alert["second"]["gate"]) == ("Oluwaseun Okafor", "North", "South")
    assert alert["first"]["device_id"] != alert["second"]["device_id"]
    figures = await checkin.attendance(box.event_id)
    assert (figures["alerts"], figures["admitted"]) == (1, 1)


async def test_snapshot_gives_devices_every_ticket_then_only_the_changes(checkin: Checkin) -> None:
    box, other = Box(), Box()
    kept = await checkin.delegate(box, "Zoë Ní Bhriain", sessions=["W2"])
    leaving = await checkin.delegate(box, "José Nguyễn")
    door = await device_of(checkin, box.event_id, "North")
    foreign = await device_of(checkin, other.event_id, "North")
    await checkin.verdict(box.event_id, kept.code, headers=door)

    whole = (await checkin.http.get(f"/api/v1/events/{box.event_id}/snapshot", headers=door)).json()
    assert whole["complete"] is True and whole["event"]["title"] == box.summary.title
    assert [s["code"] for s in whole["event"]["sessions"]] == ["W1", "W2"]
    assert whole["keys"] == [{"key_id": box.key_id, "public_key": box.public_key}]
    tickets = {t["ticket_id"]: t for t in whole["tickets"]}
    assert set(tickets) == {kept.ticket_id, leaving.ticket_id}
    assert tickets[kept.ticket_id] | {"organisation": ""} == {
        "ticket_id": kept.ticket_id, "registration_id": kept.registration_id, "name": "Zoë Ní Bhriain",
        "organisation": "", "ticket_type": "delegate", "sessions": ["W2"], "status": "valid",
    }
    assert [a["ticket_id"] for a in whole["admissions"]] == [kept.ticket_id]
    assert whole["revocations"] == []

    unchanged = (await checkin.http.get(
        f"/api/v1/events/{box.event_id}/snapshot", params={"since": whole["version"]}, headers=door
    )).json()
    assert (unchanged["complete"], unchanged["tickets"], unchanged["version"]) == (False, [], whole["version"])
    assert unchanged["admissions"] == []

    await checkin.publish(box.cancelled(leaving.registration_id, "José Nguyễn"))
    await checkin.publish(box.revoked(leaving.ticket_id, leaving.registration_id))
    await wait_for(lambda: checkin.store.tickets.find_one({"_id": leaving.ticket_id, "revoked_at": {"$ne": None}}))
    delta = (await checkin.http.get(
        f"/api/v1/events/{box.event_id}/snapshot", params={"since": whole["version"]}, headers=door
    )).json()
    assert delta["version"] > whole["version"]
    assert [(t["ticket_id"], t["status"]) for t in delta["tickets"]] == [(leaving.ticket_id, "revoked")]
    assert delta["revocations"] == [leaving.ticket_id]

    assert delta["admissions"] == []

    elsewhere = await checkin.http.get(f"/api/v1/events/{box.event_id}/snapshot", headers=foreign)
    anonymous = await checkin.http.get(f"/api/v1/events/{box.event_id}/snapshot")
    assert (elsewhere.status_code, anonymous.status_code) == (403, 401)


async def test_snapshot_delta_carries_only_the_admissions_that_moved_since(checkin: Checkin) -> None:
    box = Box()
    early = await checkin.delegate(box, "Aoife Brennan")
    late = await checkin.delegate(box, "Tomasz Kowalski")
    never = await checkin.delegate(box, "Priya Raman")
    door = await device_of(checkin, box.event_id, "North")
    await checkin.verdict(box.event_id, early.code, headers=door)
    synced = (await checkin.http.get(f"/api/v1/events/{box.event_id}/snapshot", headers=door)).json()
    assert [a["ticket_id"] for a in synced["admissions"]] == [early.ticket_id]

    async def delta(since: int) -> dict[str, Any]:
        reply = await checkin.http.get(
            f"/api/v1/events/{box.event_id}/snapshot", params={"since": since}, headers=door
        )
        return reply.json()  # type: ignore[no-any-return]

    # A newcomer comes through; the one already inside is not sent again.
    await checkin.verdict(box.event_id, late.code, headers=door)
    arrived = await delta(synced["version"])
    assert arrived["version"] > synced["version"]
    assert [(a["ticket_id"], a["inside"]) for a in arrived["admissions"]] == [(late.ticket_id, True)]
    assert arrived["tickets"] == []

    # Someone stepping out is a change too; a repeated scan of someone inside changes nothing.
    await checkin.verdict(box.event_id, early.code, direction="out", headers=door)
    assert (await checkin.verdict(box.event_id, late.code, headers=door))["verdict"] == "already_admitted"
    left = await delta(arrived["version"])
    assert [(a["ticket_id"], a["inside"]) for a in left["admissions"]] == [(early.ticket_id, False)]
    assert (await delta(left["version"]))["admissions"] == []

    # A complete snapshot still lists everyone admitted, and never the one who did not come.
    whole = (await checkin.http.get(f"/api/v1/events/{box.event_id}/snapshot", headers=door)).json()
    assert {a["ticket_id"]: a["inside"] for a in whole["admissions"]} == {
        early.ticket_id: False, late.ticket_id: True
    }
    assert never.ticket_id not in {a["ticket_id"] for a in whole["admissions"]}


async def test_no_shows_are_listed_and_exported_safely(checkin: Checkin) -> None:
    box = Box()
    came = await checkin.delegate(box, "Came Along")
    await checkin.delegate(box, "=HYPERLINK(\"http://example.com\")")
    await checkin.delegate(box, "Mei Chen")
    await checkin.verdict(box.event_id, came.code)

    listed = (await checkin.http.get(f"/api/v1/events/{box.event_id}/no-shows", headers=ADMIN)).json()
    csv_reply = await checkin.http.get(
        f"/api/v1/events/{box.event_id}/no-shows", headers={**ADMIN, "Accept": "text/csv"}
    )

    assert [row["name"] for row in listed] == ["=HYPERLINK(\"http://example.com\")", "Mei Chen"]
    assert all(row["ticket_id"] for row in listed)
    assert csv_reply.headers["content-type"].startswith("text/csv")
    lines = csv_reply.text.splitlines()
    assert lines[0] == "name,organisation,ticket_type,registration_id,ticket_id"
    assert lines[1].startswith("\"'=HYPERLINK(") and lines[2].startswith("Mei Chen,")
    forbidden = await checkin.http.get(
        f"/api/v1/events/{box.event_id}/no-shows", headers=await device_of(checkin, box.event_id, "North")
    )
    assert forbidden.status_code == 403


async def test_enrolment_reply_carries_a_scannable_link_and_the_phone_learns_its_gates(checkin: Checkin) -> None:
    box = Box()
    created = (await checkin.http.post(
        f"/api/v1/events/{box.event_id}/devices", json={"name": "Foyer", "gates": ["North", "South"]}, headers=ADMIN
    )).json()
    assert created["enrolment_url"] == f"http://checkin/scan#enrol={created['enrolment_code']}"
    assert created["enrolment_qr_svg"].startswith("<?xml") or "<svg" in created["enrolment_qr_svg"][:200]

    me = await checkin.http.get("/api/v1/devices/me", headers={"Authorization": f"Bearer {created['token']}"})
    assert me.status_code == 200
    assert (me.json()["event_id"], me.json()["gates"], me.json()["name"]) == (box.event_id, ["North", "South"], "Foyer")
    assert (await checkin.http.get("/api/v1/devices/me", headers=ADMIN)).status_code == 401


async def test_projection_rebuilt_from_the_topics_is_what_was_built_live(
    checkin: Checkin, infrastructure: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    box = Box()
    kept = await checkin.delegate(box, "Rhys Roberts", sessions=["W1"], phase="secondary", local_authority="Halton")
    gone = await checkin.delegate(box, "Seren Jones")
    await checkin.publish(
        box.cancelled(gone.registration_id, "Seren Jones"), box.revoked(gone.ticket_id, gone.registration_id)
    )
    await wait_for(lambda: checkin.store.tickets.find_one({"_id": gone.ticket_id, "revoked_at": {"$ne": None}}))
    await checkin.verdict(box.event_id, kept.code)

    async def projection() -> dict[str, list[dict[str, Any]]]:
        # Versions move on by design, so devices hear of every rebuilt ticket; everything else must match.
        def without_version(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(({k: v for k, v in row.items() if k != "version"} for row in rows), key=lambda r: r["_id"])

        store = checkin.store
        return {
            "tickets": without_version(await store.tickets.find({"event_id": box.event_id}).to_list(None)),
            "registrations": without_version(
                await store.registrations.find({"event_id": box.event_id}).to_list(None)
            ),
            "keys": without_version(await store.keys.find({"event_id": box.event_id}).to_list(None)),
            "events": without_version(await store.events.find({"_id": box.event_id}).to_list(None)),
        }

    before, figures = await projection(), await checkin.attendance(box.event_id)
    old = (await checkin.http.get(f"/api/v1/events/{box.event_id}/snapshot", headers=ADMIN)).json()

    outcome = await rebuild(module_settings(infrastructure, tmp_path_factory))

    assert outcome["events_read"] >= 6
    assert await projection() == before
    assert await checkin.attendance(box.event_id) == figures
    assert (figures["registered"], figures["admitted"]) == (1, 1)
    # A device that synced before the rebuild hears of every ticket again, with the same content.
    delta = (await checkin.http.get(
        f"/api/v1/events/{box.event_id}/snapshot", params={"since": old["version"]}, headers=ADMIN
    )).json()
    by_id = operator.itemgetter("ticket_id")
    assert sorted(delta["tickets"], key=by_id) == sorted(old["tickets"], key=by_id)


@pytest.mark.parametrize("page", ["/scan", "/dashboard"])
async def test_pages_forbid_inline_script_framing_and_sniffing(checkin: Checkin, page: str) -> None:
    reply = await checkin.http.get(page)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    policy = dict(
        part.strip().split(" ", 1) for part in reply.headers["content-security-policy"].split(";") if part.strip()
    )
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe" not in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["x-frame-options"] == "DENY"
    # Nothing the policy would block: every script is a file, no inline handlers or styles.
    html = reply.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "<style" not in html and not re.search(r"\sstyle\s*=", html)


async def test_static_files_are_served_by_name_only(checkin: Checkin) -> None:
    assert (await checkin.http.get("/static/js/ticketcode.js")).status_code == 200
    for path in ("/scan/..%2F..%2Fpages.py", "/static/js/..%2Fscan%2Findex.html", "/dashboard/app.py"):
        assert (await checkin.http.get(path)).status_code == 404, path
