"""The ticketing service against the real broker and document server: issue once, revoke, serve QR and keys."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import zxingcpp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from plenary_kit import events, qr, ticketcode, topics
from plenary_kit.auth import hash_token, new_token
from plenary_kit.envelope import Envelope
from plenary_kit.mongo import Document, Session, connect, in_transaction
from plenary_kit.settings import ServiceSettings
from plenary_stack.stack import EmbeddedStack
from ticketing.handlers import Tickets
from ticketing.main import SERVICE, create_app
from ticketing.store import Store
from ticketing.vault import KeyUnreadable, Vault

ADMIN_TOKEN = "test-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The document server is shared by the whole run: this module's databases are its own.
DB_PREFIX = f"plenary_test_ticketing_{uuid.uuid4().hex[:8]}"
# A consumer group of this module's own, so other test apps on the same broker never take its partitions.
GROUP_SUFFIX = f"-test-{uuid.uuid4().hex[:8]}"
GROUP = SERVICE + GROUP_SUFFIX


@dataclass(frozen=True)
class Ticketing:
    http: httpx.AsyncClient
    producer: AIOKafkaProducer
    admin: AIOKafkaAdminClient
    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    tickets: Tickets
    bootstrap: str


@dataclass(frozen=True)
class Delegate:
    """A registration as ticketing sees it: its id, its event, and the manage token only the delegate holds."""

    registration_id: str
    event: events.EventSummary
    manage_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Manage-Token": self.manage_token}


@pytest.fixture(scope="module")
async def ticketing(
    infrastructure: EmbeddedStack,
    caught_up: Callable[[str, Sequence[str]], Awaitable[None]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Ticketing]:
    """The ticketing app with its consumer and relay running, reached in-process over ASGI."""
    bootstrap = infrastructure.config.bootstrap
    settings = ServiceSettings(
        plenary_consumer_group_suffix=GROUP_SUFFIX,
        kafka_bootstrap_servers=bootstrap,
        mongodb_uri=infrastructure.config.mongo,
        plenary_db_prefix=DB_PREFIX,
        plenary_var=tmp_path_factory.mktemp("ticketing-var"),
        plenary_admin_token=ADMIN_TOKEN,
        plenary_roles="api,consumer,relay",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        consumer_retry_base_seconds=0.05,
    )
    app = create_app(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await producer.start()
        await admin.start()
        transport = httpx.ASGITransport(app=app)
        try:
            # Other modules' registrations are on the shared topic already; they are handled first.
            await caught_up(GROUP, [topics.REGISTRATION])
            async with httpx.AsyncClient(transport=transport, base_url="http://ticketing", timeout=10) as http:
                yield Ticketing(
                    http=http,
                    producer=producer,
                    admin=admin,
                    client=runtime.client,
                    db=runtime.db,
                    tickets=app.state.tickets,
                    bootstrap=bootstrap,
                )
        finally:
            await producer.stop()
            await admin.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


START = datetime(2027, 3, 4, 9, 0, tzinfo=UTC)


def a_conference() -> events.EventSummary:
    return events.EventSummary(
        id=str(uuid.uuid4()),
        slug=f"leadership-{uuid.uuid4().hex[:6]}",
        title="Education Leadership in Challenging Times",
        venue="Liverpool Guild of Students",
        starts_at=datetime(2027, 3, 4, 9, 0, tzinfo=UTC),
        ends_at=datetime(2027, 3, 4, 16, 30, tzinfo=UTC),
        timezone="Europe/London",
    )


def a_delegate(event: events.EventSummary | None = None) -> Delegate:
    return Delegate(str(uuid.uuid4()), event or a_conference(), new_token())


def _person() -> events.Delegate:
    return events.Delegate(
        name="Siobhán Ní Bhriain", email="s.nibhriain@knowsley-primary.example", organisation="Knowsley Primary",
        role="headteacher",
    )


def confirmed(delegate: Delegate, ticket_type: str = "delegate") -> Envelope:
    data = events.RegistrationConfirmed(
        registration_id=delegate.registration_id,
        event=delegate.event,
        delegate=_person(),
        ticket_type=ticket_type,
        manage_token_hash=hash_token(delegate.manage_token),
    )
    return _envelope(data, delegate)


def promoted(delegate: Delegate) -> Envelope:
    data = events.RegistrationPromoted(
        registration_id=delegate.registration_id,
        event=delegate.event,
        delegate=_person(),
        ticket_type="delegate",
        manage_token_hash=hash_token(delegate.manage_token),
    )
    return _envelope(data, delegate)


def cancelled(delegate: Delegate, previous_status: str = "confirmed", reason: str = "cancelled") -> Envelope:
    data = events.RegistrationCancelled(
        registration_id=delegate.registration_id,
        event=delegate.event,
        delegate=_person(),
        previous_status=previous_status,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
    )
    return _envelope(data, delegate)


def updated(delegate: Delegate, ticket_type: str, sessions: Sequence[str] = ()) -> Envelope:
    data = events.RegistrationUpdated(
        registration_id=delegate.registration_id,
        event=delegate.event,
        delegate=_person(),
        ticket_type=ticket_type,
        sessions=list(sessions),
        manage_token_hash=hash_token(delegate.manage_token),
        status="confirmed",
    )
    return _envelope(data, delegate)


def erased(delegate: Delegate) -> Envelope:
    data = events.RegistrationErased(registration_id=delegate.registration_id, event_id=delegate.event.id)
    return _envelope(data, delegate)


def _envelope(data: events.EventData, delegate: Delegate) -> Envelope:
    return Envelope.new(
        data, source="registration", subject=delegate.registration_id, correlation_id=str(uuid.uuid4())
    )


async def publish(service: Ticketing, envelope: Envelope) -> RecordMetadata:
    return await service.producer.send_and_wait(
        topics.REGISTRATION, envelope.to_bytes(), key=envelope.subject.encode()
    )


async def until_consumed(service: Ticketing, sent: RecordMetadata) -> None:
    """Wait until ticketing's consumer group has committed past a published record, i.e. handled it."""
    partition = TopicPartition(sent.topic, sent.partition)

    async def committed() -> bool:
        offsets = await service.admin.list_consumer_group_offsets(GROUP, partitions=[partition])
        position = offsets.get(partition)
        return position is not None and position.offset > sent.offset

    await eventually(committed, what="the ticketing consumer committing the record")


async def ticket_of(service: Ticketing, delegate: Delegate) -> dict[str, object]:
    """Poll the delegate's ticket endpoint until the ticket exists."""
    url = f"/api/v1/registrations/{delegate.registration_id}/ticket"
    reply: httpx.Response | None = None

    async def issued() -> bool:
        nonlocal reply
        reply = await service.http.get(url, headers=delegate.headers)
        assert reply.status_code in (200, 404), reply.text
        return reply.status_code == 200

    await eventually(issued, what="the ticket being issued")
    assert reply is not None
    body: dict[str, object] = reply.json()
    return body


async def read_envelopes(
    bootstrap: str, topic: str, enough: Callable[[list[Envelope]], bool], timeout: float = 30.0
) -> list[Envelope]:
    """Everything on `topic` from the start, read until `enough` holds and one more poll finds nothing new."""
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"reader-{uuid.uuid4()}", auto_offset_reset="earliest",
        enable_auto_commit=False, session_timeout_ms=2000, heartbeat_interval_ms=300,
    )
    await reader.start()
    seen: list[Envelope] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = [r for records in (await reader.getmany(timeout_ms=500)).values() for r in records]
            seen += [Envelope.from_bytes(record.value) for record in batch]
            if not batch and enough(seen):
                return seen
    finally:
        await reader.stop()
    raise AssertionError(f"what was wanted did not appear on {topic} within {timeout} s")


def _about(delegate: Delegate, event_type: str) -> Callable[[Envelope], bool]:
    return lambda e: e.type == event_type and e.subject == delegate.registration_id


async def test_confirmed_registration_gets_one_signed_ticket_however_often_it_is_delivered(
    ticketing: Ticketing,
) -> None:
    delegate = a_delegate()
    event = confirmed(delegate, ticket_type="future-heads")

    await publish(ticketing, event)
    ticket = await ticket_of(ticketing, delegate)

    assert ticket["registration_id"] == delegate.registration_id
    assert ticket["event_id"] == delegate.event.id
    assert ticket["status"] == "valid"
    assert ticket["ticket_type"] == "future-heads"
    assert datetime.fromisoformat(str(ticket["issued_at"])).tzinfo is not None
    code = ticketcode.decode(str(ticket["code"]))
    assert (code.event_id, code.ticket_id, code.ticket_type) == (
        delegate.event.id, ticket["ticket_id"], "future-heads"
    )

    keys = (await ticketing.http.get(f"/api/v1/events/{delegate.event.id}/keys")).json()
    assert keys["event_id"] == delegate.event.id
    [key] = keys["keys"]
    assert (key["key_id"], key["algorithm"], key["active"]) == (code.key_id, "Ed25519", True)
    assert ticketcode.verify(code, base64.urlsafe_b64decode(key["public_key"]))

    for _ in range(2):
        await until_consumed(ticketing, await publish(ticketing, event))

    assert await ticketing.db["tickets"].count_documents({"registration_id": delegate.registration_id}) == 1
    again = await ticketing.http.get(f"/api/v1/registrations/{delegate.registration_id}/ticket", headers=ADMIN)
    assert again.json() == ticket

    on_topic = await read_envelopes(
        ticketing.bootstrap, topics.TICKETING,
        lambda seen: any(map(_about(delegate, "ticket.issued"), seen)),
    )
    [issued] = [e for e in on_topic if _about(delegate, "ticket.issued")(e)]
    data = issued.payload()
    assert isinstance(data, events.TicketIssued)
    assert (data.ticket_id, data.code, data.key_id, data.public_key) == (
        ticket["ticket_id"], ticket["code"], key["key_id"], key["public_key"]
    )
    assert (issued.causationid, issued.correlationid) == (event.id, event.correlationid)


async def test_ticket_qr_images_carry_exactly_the_code_and_are_never_cached(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate))
    ticket = await ticket_of(ticketing, delegate)
    base = f"/api/v1/tickets/{ticket['ticket_id']}"

    png = await ticketing.http.get(f"{base}/qr.png", headers=delegate.headers)
    large = await ticketing.http.get(f"{base}/qr.png", params={"size": 20}, headers=delegate.headers)
    svg = await ticketing.http.get(f"{base}/qr.svg", params={"size": 4}, headers=ADMIN)

    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.headers["cache-control"] == "private, no-store"
    image = Image.open(io.BytesIO(png.content))
    [barcode] = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert barcode.text == ticket["code"]
    assert Image.open(io.BytesIO(large.content)).size[0] > image.size[0]
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.headers["cache-control"] == "private, no-store"
    assert b"<svg" in svg.content

    for size in (1, 21, "big"):
        refused = await ticketing.http.get(f"{base}/qr.png", params={"size": size}, headers=delegate.headers)
        assert refused.status_code == 422
        assert refused.json()["code"] == "validation_error"


async def test_promoted_registration_gets_a_ticket_signed_with_the_events_existing_key(ticketing: Ticketing) -> None:
    first = a_delegate()
    from_waiting_list = a_delegate(first.event)

    await publish(ticketing, confirmed(first))
    await ticket_of(ticketing, first)
    await publish(ticketing, promoted(from_waiting_list))
    ticket = await ticket_of(ticketing, from_waiting_list)

    keys = (await ticketing.http.get(f"/api/v1/events/{first.event.id}/keys")).json()["keys"]
    assert [k["key_id"] for k in keys] == [ticketcode.decode(str(ticket["code"])).key_id]


async def test_cancelled_registration_has_its_ticket_revoked(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate))
    ticket = await ticket_of(ticketing, delegate)

    cancel = cancelled(delegate)
    await until_consumed(ticketing, await publish(ticketing, cancel))
    await until_consumed(ticketing, await publish(ticketing, cancel))

    reply = await ticketing.http.get(f"/api/v1/registrations/{delegate.registration_id}/ticket", headers=ADMIN)
    assert reply.json()["status"] == "revoked"
    assert reply.json()["ticket_id"] == ticket["ticket_id"]
    stored = await ticketing.db["tickets"].find_one({"_id": ticket["ticket_id"]})
    assert stored is not None
    assert (stored["reason"], stored["revoked_at"].tzinfo is not None) == ("cancelled", True)

    on_topic = await read_envelopes(
        ticketing.bootstrap, topics.TICKETING, lambda seen: any(map(_about(delegate, "ticket.revoked"), seen))
    )
    [revoked] = [e for e in on_topic if _about(delegate, "ticket.revoked")(e)]
    data = revoked.payload()
    assert isinstance(data, events.TicketRevoked)
    assert (data.ticket_id, data.event_id, data.reason) == (ticket["ticket_id"], delegate.event.id, "cancelled")
    assert revoked.causationid == cancel.id


async def test_registration_cancelled_before_its_ticket_never_gets_one(ticketing: Ticketing) -> None:
    delegate = a_delegate()

    await until_consumed(ticketing, await publish(ticketing, cancelled(delegate, previous_status="waitlisted")))
    await until_consumed(ticketing, await publish(ticketing, promoted(delegate)))
    await until_consumed(ticketing, await publish(ticketing, confirmed(delegate)))

    reply = await ticketing.http.get(f"/api/v1/registrations/{delegate.registration_id}/ticket", headers=ADMIN)
    assert reply.status_code == 404
    assert reply.json()["code"] == "ticket_not_found"
    assert await ticketing.db["outbox"].count_documents({"key": delegate.registration_id}) == 0


async def test_ticket_is_shown_only_to_its_delegate_and_organisers(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    colleague = a_delegate(delegate.event)
    await publish(ticketing, confirmed(delegate))
    await publish(ticketing, confirmed(colleague))
    ticket = await ticket_of(ticketing, delegate)
    await ticket_of(ticketing, colleague)
    own = f"/api/v1/registrations/{delegate.registration_id}/ticket"
    qr = f"/api/v1/tickets/{ticket['ticket_id']}/qr.png"

    for url in (own, qr):
        assert (await ticketing.http.get(url, headers=delegate.headers)).status_code == 200
        assert (await ticketing.http.get(url, headers=ADMIN)).status_code == 200
        nobody = await ticketing.http.get(url)
        assert (nobody.status_code, nobody.json()["code"]) == (401, "unauthenticated")
        guess = await ticketing.http.get(url, headers={"X-Manage-Token": new_token()})
        assert (guess.status_code, guess.json()["code"]) == (401, "unauthenticated")
        other = await ticketing.http.get(url, headers=colleague.headers)
        assert (other.status_code, other.json()["code"]) == (403, "forbidden")
        stranger = await ticketing.http.get(url, headers={"Authorization": "Bearer not-an-organiser"})
        assert (stranger.status_code, stranger.json()["code"]) == (401, "unauthenticated")

    missing = await ticketing.http.get(f"/api/v1/tickets/{uuid.uuid4()}/qr.svg", headers=ADMIN)
    assert (missing.status_code, missing.json()["code"]) == (404, "ticket_not_found")
    not_yet = await ticketing.http.get(
        f"/api/v1/registrations/{uuid.uuid4()}/ticket", headers={"X-Manage-Token": new_token()}
    )
    assert (not_yet.status_code, not_yet.json()["code"]) == (404, "ticket_not_found")


async def test_keys_of_an_event_without_tickets_are_an_empty_list(ticketing: Ticketing) -> None:
    event_id = str(uuid.uuid4())

    reply = await ticketing.http.get(f"/api/v1/events/{event_id}/keys")

    assert reply.status_code == 200
    assert reply.json() == {"event_id": event_id, "keys": [], "sessions": []}


async def test_first_tickets_issued_at_once_for_one_event_share_one_signing_key(ticketing: Ticketing) -> None:
    event = a_conference()
    delegates = [a_delegate(event) for _ in range(4)]

    async def issue(envelope: Envelope) -> None:
        async def work(session: Session) -> None:
            await ticketing.tickets.issue(envelope, envelope.payload(), session)

        await in_transaction(ticketing.client, work)

    await asyncio.wait_for(asyncio.gather(*(issue(confirmed(d)) for d in delegates)), 60)

    keys = await ticketing.db["signing_keys"].find({"event_id": event.id}).to_list(None)
    assert len(keys) == 1
    tickets = await ticketing.db["tickets"].find({"event_id": event.id}).to_list(None)
    assert sorted(t["registration_id"] for t in tickets) == sorted(d.registration_id for d in delegates)
    assert {t["key_id"] for t in tickets} == {keys[0]["_id"]}
    for stored in tickets:
        assert ticketcode.verify(ticketcode.decode(stored["code"]), bytes(keys[0]["public_key"]))


async def test_service_reports_ready_with_its_database_and_broker(ticketing: Ticketing) -> None:
    async def ready() -> bool:
        return (await ticketing.http.get("/readyz")).status_code == 200

    await eventually(ready, what="/readyz answering 200")
    assert (await ticketing.http.get("/healthz")).json() == {"status": "ok", "service": "ticketing"}



async def test_changed_ticket_type_replaces_the_ticket_with_one_the_door_reads_as_the_new_type(
    ticketing: Ticketing,
) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate))
    first = await ticket_of(ticketing, delegate)
    change = updated(delegate, "speaker")

    await until_consumed(ticketing, await publish(ticketing, change))
    await until_consumed(ticketing, await publish(ticketing, change))

    current = await ticket_of(ticketing, delegate)
    assert current["ticket_id"] != first["ticket_id"]
    assert (current["status"], current["ticket_type"]) == ("valid", "speaker")
    code = ticketcode.decode(str(current["code"]))
    assert (code.ticket_id, code.ticket_type) == (current["ticket_id"], "speaker")
    old = await ticketing.db["tickets"].find_one({"_id": first["ticket_id"]})
    assert old is not None and (old["status"], old["reason"]) == ("revoked", "reissued")
    stored = await ticketing.db["tickets"].find({"registration_id": delegate.registration_id}).to_list(None)
    assert sorted(t["status"] for t in stored) == ["revoked", "valid"]
    qr = await ticketing.http.get(f"/api/v1/tickets/{current['ticket_id']}/qr.png", headers=delegate.headers)
    assert qr.status_code == 200

    on_topic = await read_envelopes(
        ticketing.bootstrap, topics.TICKETING,
        lambda seen: sum(map(_about(delegate, "ticket.issued"), seen)) == 2
        and any(map(_about(delegate, "ticket.revoked"), seen)),
    )
    [revoked] = [e.payload() for e in on_topic if _about(delegate, "ticket.revoked")(e)]
    assert isinstance(revoked, events.TicketRevoked)
    assert (revoked.ticket_id, revoked.reason) == (first["ticket_id"], "reissued")
    [reissued] = [e for e in on_topic if _about(delegate, "ticket.issued")(e) and e.causationid == change.id]
    data = reissued.payload()
    assert isinstance(data, events.TicketIssued)
    assert (data.ticket_id, data.ticket_type, data.code) == (current["ticket_id"], "speaker", current["code"])


async def test_update_that_keeps_ticket_type_and_workshops_keeps_the_ticket(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate, ticket_type="guest"))
    ticket = await ticket_of(ticketing, delegate)

    await until_consumed(ticketing, await publish(ticketing, updated(delegate, "guest")))

    assert await ticket_of(ticketing, delegate) == ticket
    assert await ticketing.db["tickets"].count_documents({"registration_id": delegate.registration_id}) == 1
    assert await ticketing.db["outbox"].count_documents({"key": delegate.registration_id}) == 1


async def test_changed_workshops_replace_the_code_with_one_carrying_the_new_entitlements(ticketing: Ticketing) -> None:
    event = a_conference().model_copy(update={"sessions": [
        events.SessionSummary(code=c, title=t, starts_at=START, ends_at=START)
        for c, t in (("workshop-a", "Leading through change"), ("workshop-b", "Inclusion and SEN"), ("panel", "Panel"))
    ]})
    delegate = a_delegate(event)
    await publish(ticketing, confirmed(delegate))
    first = await ticket_of(ticketing, delegate)

    await until_consumed(ticketing, await publish(ticketing, updated(delegate, "delegate", ["panel", "workshop-a"])))

    current = await ticket_of(ticketing, delegate)
    assert current["ticket_id"] != first["ticket_id"]
    assert current["sessions"] == ["panel", "workshop-a"]
    keys = (await ticketing.http.get(f"/api/v1/events/{event.id}/keys")).json()
    assert keys["sessions"] == ["workshop-a", "workshop-b", "panel"]
    code = ticketcode.decode(str(current["code"]))
    assert [keys["sessions"][n] for n in code.entitlements] == ["workshop-a", "panel"]
    assert qr.version_of(str(current["code"])) <= qr.MAX_VERSION


async def test_erased_registration_has_its_ticket_revoked_and_its_manage_link_forgotten(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate))
    ticket = await ticket_of(ticketing, delegate)
    erase = erased(delegate)

    await until_consumed(ticketing, await publish(ticketing, erase))
    await until_consumed(ticketing, await publish(ticketing, promoted(delegate)))

    url = f"/api/v1/registrations/{delegate.registration_id}/ticket"
    by_organiser = await ticketing.http.get(url, headers=ADMIN)
    assert (by_organiser.json()["ticket_id"], by_organiser.json()["status"]) == (ticket["ticket_id"], "revoked")
    by_old_link = await ticketing.http.get(url, headers=delegate.headers)
    assert (by_old_link.status_code, by_old_link.json()["code"]) == (401, "unauthenticated")
    stored = await ticketing.db["tickets"].find({"registration_id": delegate.registration_id}).to_list(None)
    assert [(t["status"], t["reason"], "manage_token_hash" in t) for t in stored] == [("revoked", "erased", False)]

    on_topic = await read_envelopes(
        ticketing.bootstrap, topics.TICKETING, lambda seen: any(map(_about(delegate, "ticket.revoked"), seen))
    )
    [revoked] = [e for e in on_topic if _about(delegate, "ticket.revoked")(e)]
    assert (revoked.data["reason"], revoked.causationid) == ("erased", erase.id)


@pytest.mark.parametrize(("reason", "revocation"), [("erased", "erased"), ("offer_expired", "cancelled")])
async def test_cancellation_for_any_reason_revokes_the_ticket(
    ticketing: Ticketing, reason: str, revocation: str
) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate))
    ticket = await ticket_of(ticketing, delegate)

    await until_consumed(ticketing, await publish(ticketing, cancelled(delegate, reason=reason)))

    stored = await ticketing.db["tickets"].find_one({"_id": ticket["ticket_id"]})
    assert stored is not None and (stored["status"], stored["reason"]) == ("revoked", revocation)


async def test_database_from_before_reissue_keeps_one_valid_ticket_per_registration(
    infrastructure: EmbeddedStack,
) -> None:
    client = connect(infrastructure.config.mongo)
    try:
        store = Store(client[f"{DB_PREFIX}_migration_{uuid.uuid4().hex[:6]}"], Vault(bytes(32)))
        await store.tickets.create_index("registration_id", unique=True)

        await store.prepare()
        await store.prepare()

        indexes = await store.tickets.index_information()
        assert not indexes["registration_id_1"].get("unique")
        assert indexes["one_valid_ticket_per_registration"]["unique"]
        await store.tickets.insert_one({"registration_id": "r1", "status": "revoked"})
        await store.tickets.insert_one({"registration_id": "r1", "status": "valid"})
        with pytest.raises(DuplicateKeyError):
            await store.tickets.insert_one({"registration_id": "r1", "status": "valid"})
    finally:
        await client.close()


def _keys(reply: httpx.Response) -> dict[str, bytes]:
    return {k["key_id"]: base64.urlsafe_b64decode(k["public_key"]) for k in reply.json()["keys"]}


async def test_rotated_key_signs_new_tickets_while_earlier_ones_still_verify(ticketing: Ticketing) -> None:
    early = a_delegate()
    late = a_delegate(early.event)
    await publish(ticketing, confirmed(early))
    before = await ticket_of(ticketing, early)
    url = f"/api/v1/events/{early.event.id}/keys/rotate"

    refused = await ticketing.http.post(url)
    rotated = await ticketing.http.post(url, headers=ADMIN)
    await publish(ticketing, confirmed(late))
    after = await ticket_of(ticketing, late)

    assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")
    assert rotated.status_code == 201, rotated.text
    new_key = rotated.json()
    assert ticketcode.decode(str(after["code"])).key_id == new_key["key_id"] == after["key_id"]
    assert ticketcode.decode(str(before["code"])).key_id != new_key["key_id"]
    published = await ticketing.http.get(f"/api/v1/events/{early.event.id}/keys")
    assert [k["active"] for k in published.json()["keys"]] == [False, True]
    trusted = _keys(published)
    for ticket in (before, after):
        assert ticketcode.check(str(ticket["code"]), early.event.id, trusted).verdict == "valid"
    unknown = await ticketing.http.post(f"/api/v1/events/{uuid.uuid4()}/keys/rotate", headers=ADMIN)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "no_signing_key")


async def test_signing_keys_are_sealed_at_rest_and_raw_keys_from_before_are_sealed_at_start(
    ticketing: Ticketing, infrastructure: EmbeddedStack
) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate))
    await ticket_of(ticketing, delegate)
    [stored] = await ticketing.db["signing_keys"].find({"event_id": delegate.event.id}).to_list(None)
    assert "private_key" not in stored
    assert len(bytes(stored["private_key_sealed"])) == 12 + 32 + 16

    client = connect(infrastructure.config.mongo)
    try:
        db = client[f"{DB_PREFIX}_sealing_{uuid.uuid4().hex[:6]}"]
        raw = Ed25519PrivateKey.generate()
        public = ticketcode.public_bytes(raw)
        key_id = ticketcode.key_id_of(public)
        await db["signing_keys"].insert_one({
            "_id": key_id, "event_id": "e1", "algorithm": "Ed25519", "public_key": public,
            "private_key": raw.private_bytes_raw(), "created_at": datetime.now(UTC), "active": True,
        })
        vault = Vault(bytes(range(32)))
        store = Store(db, vault)

        await store.prepare()
        await store.prepare()

        row = await db["signing_keys"].find_one({"_id": key_id})
        assert row is not None and "private_key" not in row
        assert vault.unseal(bytes(row["private_key_sealed"]), "e1", key_id, row["sealed_by"]) == raw.private_bytes_raw()
        with pytest.raises(KeyUnreadable):
            await Store(db, Vault(bytes(32))).prepare()
    finally:
        await client.close()


async def test_organiser_reissue_revokes_the_old_code_and_announces_both(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate, ticket_type="speaker"))
    old = await ticket_of(ticketing, delegate)
    url = f"/api/v1/registrations/{delegate.registration_id}/ticket/reissue"

    by_delegate = await ticketing.http.post(url, headers=delegate.headers)
    reply = await ticketing.http.post(url, headers={**ADMIN, "X-Correlation-ID": "reissue-at-the-desk"})

    assert (by_delegate.status_code, by_delegate.json()["code"]) == (401, "unauthenticated")
    assert reply.status_code == 201, reply.text
    new = reply.json()
    assert new["ticket_id"] != old["ticket_id"] and new["code"] != old["code"]
    assert (new["status"], new["ticket_type"]) == ("valid", "speaker")
    assert await ticket_of(ticketing, delegate) == new
    stored = await ticketing.db["tickets"].find_one({"_id": old["ticket_id"]})
    assert stored is not None and (stored["status"], stored["reason"]) == ("revoked", "reissued")

    on_topic = await read_envelopes(
        ticketing.bootstrap, topics.TICKETING,
        lambda seen: any(e.correlationid == "reissue-at-the-desk" and e.type == "ticket.issued" for e in seen),
    )
    ours = [e for e in on_topic if e.correlationid == "reissue-at-the-desk"]
    assert [(e.type, e.data["ticket_id"]) for e in ours] == [
        ("ticket.revoked", old["ticket_id"]), ("ticket.issued", new["ticket_id"])
    ]

    await publish(ticketing, cancelled(delegate))
    await eventually(
        lambda: _status(ticketing, delegate, "revoked"), what="the reissued ticket being revoked on cancellation"
    )
    again = await ticketing.http.post(url, headers=ADMIN)
    assert (again.status_code, again.json()["code"]) == (409, "no_valid_ticket")


async def _status(service: Ticketing, delegate: Delegate, status: str) -> bool:
    reply = await service.http.get(f"/api/v1/registrations/{delegate.registration_id}/ticket", headers=ADMIN)
    return bool(reply.json()["status"] == status)


async def test_revocation_list_gives_devices_only_what_is_new_since_their_version(ticketing: Ticketing) -> None:
    event = a_conference()
    delegates = [a_delegate(event) for _ in range(3)]
    for delegate in delegates:
        await publish(ticketing, confirmed(delegate))
    tickets = [await ticket_of(ticketing, d) for d in delegates]
    url = f"/api/v1/events/{event.id}/revocations"

    empty = await ticketing.http.get(url, headers=ADMIN)
    await until_consumed(ticketing, await publish(ticketing, cancelled(delegates[0])))
    await until_consumed(ticketing, await publish(ticketing, erased(delegates[1])))
    first = await ticketing.http.get(url, headers=ADMIN)
    await until_consumed(ticketing, await publish(ticketing, cancelled(delegates[2])))
    await until_consumed(ticketing, await publish(ticketing, cancelled(delegates[2])))
    delta = await ticketing.http.get(url, params={"since": first.json()["version"]}, headers=ADMIN)
    paged = await ticketing.http.get(url, params={"since": 0, "limit": 2}, headers=ADMIN)

    assert empty.json() == {"event_id": event.id, "since": 0, "version": 0, "complete": True, "revoked": []}
    assert [(r["ticket_id"], r["reason"], r["version"]) for r in first.json()["revoked"]] == [
        (tickets[0]["ticket_id"], "cancelled", 1), (tickets[1]["ticket_id"], "erased", 2)
    ]
    assert first.json()["version"] == 2
    assert [r["ticket_id"] for r in delta.json()["revoked"]] == [tickets[2]["ticket_id"]]
    assert (delta.json()["since"], delta.json()["version"], delta.json()["complete"]) == (2, 3, True)
    assert (paged.json()["version"], paged.json()["complete"], len(paged.json()["revoked"])) == (2, False, 2)
    nobody = await ticketing.http.get(url)
    assert (nobody.status_code, nobody.json()["code"]) == (401, "unauthenticated")
    bad = await ticketing.http.get(url, params={"since": -1}, headers=ADMIN)
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")


async def test_printable_ticket_is_a_pdf_for_its_delegate_and_refused_once_revoked(ticketing: Ticketing) -> None:
    delegate = a_delegate()
    await publish(ticketing, confirmed(delegate, ticket_type="future-heads"))
    ticket = await ticket_of(ticketing, delegate)
    url = f"/api/v1/tickets/{ticket['ticket_id']}/ticket.pdf"

    reply = await ticketing.http.get(url, headers=delegate.headers)
    nobody = await ticketing.http.get(url)

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/pdf"
    assert reply.headers["cache-control"] == "private, no-store"
    assert reply.content.startswith(b"%PDF-")
    assert (nobody.status_code, nobody.json()["code"]) == (401, "unauthenticated")

    await until_consumed(ticketing, await publish(ticketing, cancelled(delegate)))
    revoked = await ticketing.http.get(url, headers=ADMIN)
    assert (revoked.status_code, revoked.json()["code"]) == (409, "ticket_revoked")
