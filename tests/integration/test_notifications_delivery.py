"""Notifications against the real broker, document server and SMTP sink: one ticket email per registration."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import zxingcpp
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from PIL import Image

from notifications.domain import Status
from notifications.handlers import Notifications
from notifications.main import SERVICE, create_app
from notifications.settings import NotificationSettings
from notifications.store import Store
from plenary_kit import events, mongo, sealing, ticketcode, topics
from plenary_kit.auth import hash_token, new_token
from plenary_kit.consumer import Handler
from plenary_kit.envelope import Envelope
from plenary_kit.kafka import Publisher
from plenary_kit.outbox import Outbox
from plenary_stack.processes import free_port
from plenary_stack.smtp_sink import SmtpSink
from plenary_stack.stack import EmbeddedStack

ADMIN = {"Authorization": "Bearer test-admin"}
SIGNING_KEY = Ed25519PrivateKey.generate()
# Shared with the registration service in a real deployment; here the tests seal as it would.
LINK_KEY_TEXT = sealing.new_key_text()
LINK_KEY = sealing.parse_key(LINK_KEY_TEXT)
PUBLIC_URL = "https://register.plenary.example"
# The document server is shared by the whole run: this module's databases are its own.
DB_PREFIX = f"plenary_test_notifications_{uuid.uuid4().hex[:8]}"
# A consumer group of this module's own, so other test apps on the same broker never take its partitions.
GROUP_SUFFIX = f"-test-{uuid.uuid4().hex[:8]}"
GROUP = SERVICE + GROUP_SUFFIX


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    """Always this module's own sink: the tests read its Maildir and make it refuse mail."""
    with SmtpSink("127.0.0.1", free_port(), tmp_path_factory.mktemp("mail") / "maildir") as running:
        yield running


async def _nothing_left_to_send(store: Store) -> bool:
    unsettled = [Status.PENDING, Status.SENDING, Status.RETRYING]
    return await store.messages.count_documents({"status": {"$in": unsettled}}) == 0


@pytest.fixture(scope="module")
async def service(
    infrastructure: EmbeddedStack,
    caught_up: Callable[[str, Sequence[str]], Awaitable[None]],
    sink: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FastAPI]:
    settings = NotificationSettings(
        plenary_consumer_group_suffix=GROUP_SUFFIX,
        kafka_bootstrap_servers=infrastructure.config.bootstrap,
        mongodb_uri=infrastructure.config.mongo,
        plenary_db_prefix=DB_PREFIX,
        plenary_var=tmp_path_factory.mktemp("var"),
        plenary_admin_token="test-admin",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        smtp_host=sink.host,
        smtp_port=sink.port,
        plenary_link_key=LINK_KEY_TEXT,
        plenary_public_url=PUBLIC_URL,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # The broker is shared: other modules' registrations and tickets are handled, and their
        # emails sent, before the first test, so none of them queues ahead of a test's email.
        await caught_up(GROUP, [topics.REGISTRATION, topics.TICKETING])
        await wait_for(lambda: _nothing_left_to_send(app.state.store), 120, "earlier modules' emails to be sent")
        yield app


@pytest.fixture(scope="module")
async def publisher(infrastructure: EmbeddedStack) -> AsyncIterator[Publisher]:
    running = Publisher(infrastructure.config.bootstrap)
    yield running
    await running.stop()


@pytest.fixture
async def api(service: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://notifications") as client:
        yield client


async def wait_for(condition: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def mails_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    found = []
    # Matched on the raw bytes: an internationalised address arrives as UTF-8 (SMTPUTF8).
    trace = f"\nDelivered-To: {address}\n".encode()
    for key in sink.maildir.keys():
        raw = sink.maildir.get_bytes(key)
        if trace in raw:
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
    return found


class Delegate:
    """One delegate's registration and ticket, as the registration and ticketing services announce them."""

    def __init__(self, name: str) -> None:
        self.registration_id = str(uuid.uuid4())
        self.ticket_id = str(uuid.uuid4())
        self.ticket_type = "delegate"
        self.sessions: list[str] = []
        self.manage_token = new_token()
        self.email = f"{name.lower()}.{self.registration_id[:8]}@school.example"
        self.event = events.EventSummary(
            id=str(uuid.uuid4()),
            slug="leadership-symposium",
            title="Education Leadership in Challenging Times",
            venue="The Spine, Liverpool",
            starts_at=datetime(2026, 6, 18, 8, 30, tzinfo=UTC),
            ends_at=datetime(2026, 6, 18, 15, 0, tzinfo=UTC),
            timezone="Europe/London",
            organiser_contact="leadership-centre@university.example",
            sessions=[
                events.SessionSummary(
                    code="ws-inclusion",
                    title="Leading inclusive schools",
                    starts_at=datetime(2026, 6, 18, 10, 0, tzinfo=UTC),
                    ends_at=datetime(2026, 6, 18, 11, 15, tzinfo=UTC),
                ),
                events.SessionSummary(
                    code="ws-wellbeing",
                    title="Staff wellbeing in hard times",
                    starts_at=datetime(2026, 6, 18, 12, 30, tzinfo=UTC),
                    ends_at=datetime(2026, 6, 18, 13, 45, tzinfo=UTC),
                ),
            ],
        )
        self.delegate = events.Delegate(name=name, email=self.email, organisation="Wirral High", role="Headteacher")
        self.code = ticketcode.encode(self.event.id, self.ticket_id, "delegate", SIGNING_KEY)
        self.correlation_id = str(uuid.uuid4())

    @property
    def manage_link(self) -> str:
        return f"{PUBLIC_URL}/manage/{self.registration_id}?token={self.manage_token}"

    def _snapshot(self, first: bool = False) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "registration_id": self.registration_id,
            "event": self.event,
            "delegate": self.delegate,
            "ticket_type": self.ticket_type,
            "sessions": self.sessions,
            "manage_token_hash": hash_token(self.manage_token),
        }
        if first:
            # Only the registration's first event carries the token, sealed for this service.
            snapshot["manage_token_sealed"] = sealing.seal(self.manage_token, LINK_KEY, context=self.registration_id)
        return snapshot

    def _envelope(self, data: events.EventData, source: str) -> Envelope:
        return Envelope.new(
            data, source=source, subject=self.registration_id, correlation_id=self.correlation_id
        )

    def confirmed(self, first: bool = False) -> Envelope:
        return self._envelope(events.RegistrationConfirmed(**self._snapshot(first)), "registration")

    def waitlisted(self, first: bool = False) -> Envelope:
        return self._envelope(events.RegistrationWaitlisted(**self._snapshot(first), position=1), "registration")

    def promoted(self) -> Envelope:
        return self._envelope(events.RegistrationPromoted(**self._snapshot()), "registration")

    def offered(self, expires_at: datetime) -> Envelope:
        return self._envelope(
            events.RegistrationOffered(**self._snapshot(), offer_expires_at=expires_at), "registration"
        )

    def updated(self, status: str = "confirmed") -> Envelope:
        return self._envelope(events.RegistrationUpdated(**self._snapshot(), status=status), "registration")

    def cancelled(self, previous_status: str = "confirmed", reason: str = "cancelled") -> Envelope:
        data = events.RegistrationCancelled(
            registration_id=self.registration_id,
            event=self.event,
            delegate=self.delegate,
            previous_status=previous_status,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
        )
        return self._envelope(data, "registration")

    def resend_requested(self) -> Envelope:
        data = events.RegistrationResendRequested(registration_id=self.registration_id, event_id=self.event.id)
        return self._envelope(data, "registration")

    def erased(self) -> Envelope:
        data = events.RegistrationErased(registration_id=self.registration_id, event_id=self.event.id)
        return self._envelope(data, "registration")

    def reissue(self, ticket_type: str) -> None:
        """Ticketing replaced the ticket after a change of ticket type."""
        self.ticket_id = str(uuid.uuid4())
        self.ticket_type = ticket_type
        self.code = ticketcode.encode(self.event.id, self.ticket_id, ticket_type, SIGNING_KEY)

    def ticket_issued(self) -> Envelope:
        public_key = ticketcode.public_bytes(SIGNING_KEY)
        data = events.TicketIssued(
            ticket_id=self.ticket_id,
            registration_id=self.registration_id,
            event_id=self.event.id,
            ticket_type=self.ticket_type,
            code=self.code,
            key_id=ticketcode.key_id_of(public_key),
            public_key=base64.urlsafe_b64encode(public_key).decode(),
            issued_at=datetime.now(UTC),
        )
        return self._envelope(data, "ticketing")


async def publish(publisher: Publisher, *envelopes: Envelope) -> None:
    await publisher.publish(
        [(topics.topic_for_event_type(e.type), e.subject, e.to_bytes(), []) for e in envelopes]
    )


def fresh_copy(envelope: Envelope) -> Envelope:
    """The same event published anew under another id, as a replay from another source might."""
    return envelope.model_copy(update={"id": str(uuid.uuid4())})


async def processed(service: FastAPI, *envelopes: Envelope) -> bool:
    markers = [f"{GROUP}:{e.id}" for e in envelopes]
    seen = await service.state.runtime.db["processed_events"].count_documents({"_id": {"$in": markers}})
    return bool(seen == len(markers))


async def log_for(api: httpx.AsyncClient, registration_id: str) -> list[dict[str, Any]]:
    response = await api.get("/api/v1/notifications", params={"registration_id": registration_id}, headers=ADMIN)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def subject(message: EmailMessage) -> str:
    # A long subject may be folded straight after "Subject:", which leaves a leading space when parsed.
    return str(message["Subject"]).strip()


def inline_qr(message: EmailMessage) -> list[str]:
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    images = {
        part["Content-ID"].strip("<>"): part for part in message.walk() if part.get_content_disposition() == "inline"
    }
    (cid,) = [cid for cid in images if f"cid:{cid}" in html.get_content()]
    image = Image.open(io.BytesIO(images[cid].get_content()))
    return [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


async def test_confirmation_email_carries_the_ticket_once_however_often_events_arrive(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Niamh")
    confirmed, issued = delegate.confirmed(), delegate.ticket_issued()
    await publish(publisher, confirmed)
    await publish(publisher, issued)

    async def one_mail() -> list[EmailMessage]:
        return mails_to(sink, delegate.email)

    (mail,) = await wait_for(one_mail, 60, "the confirmation email")
    assert subject(mail) == "Your place at Education Leadership in Challenging Times is confirmed: your ticket"
    assert inline_qr(mail) == [delegate.code]
    attachments = {part.get_filename(): part for part in mail.iter_attachments()}
    assert set(attachments) == {"ticket.png", "leadership-symposium.ics"}
    calendar = attachments["leadership-symposium.ics"].get_content()
    assert "DTSTART;TZID=Europe/London:20260618T093000" in calendar
    assert "LOCATION:The Spine\\, Liverpool" in calendar
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "Thursday 18 June 2026, 09:30–16:00 (BST)" in plain.get_content()

    async def delivered() -> list[dict[str, Any]]:
        rows = await log_for(api, delegate.registration_id)
        return rows if rows and rows[0]["status"] == "sent" else []

    (row,) = await wait_for(delivered, 15, "the delivery log to say sent")
    assert row["id"] == f"{delegate.registration_id}:confirmation:{delegate.ticket_id}"
    assert row["kind"] == "confirmation"
    assert row["attempts"] == 1
    assert row["sent_at"] is not None

    await publish(publisher, confirmed, issued, confirmed, issued)
    # Fresh copies on the same keys land behind the repeats, so once they are handled, so are the repeats.
    copies = (fresh_copy(confirmed), fresh_copy(issued))
    await publish(publisher, *copies)
    await wait_for(lambda: processed(service, *copies), 30, "the repeated events to be handled")
    assert len(mails_to(sink, delegate.email)) == 1
    assert [r["status"] for r in await log_for(api, delegate.registration_id)] == ["sent"]


async def test_confirmation_emits_notification_sent_with_the_registrations_correlation(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, infrastructure: EmbeddedStack
) -> None:
    delegate = Delegate("Olubayo")
    confirmed, issued = delegate.confirmed(), delegate.ticket_issued()
    await publish(publisher, confirmed, issued)
    reader = AIOKafkaConsumer(
        topics.NOTIFICATIONS, bootstrap_servers=infrastructure.config.bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        deadline = time.monotonic() + 60
        sent: list[Envelope] = []
        while not sent and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            sent = [
                envelope
                for records in batches.values()
                for envelope in (Envelope.from_bytes(r.value) for r in records)
                if envelope.subject == delegate.registration_id
            ]
    finally:
        await reader.stop()
    (event,) = sent
    assert event.type == "notification.sent"
    assert event.correlationid == delegate.correlation_id
    # Caused by whichever of the two facts arrived second and completed the pair.
    assert event.causationid in {confirmed.id, issued.id}
    assert event.data["kind"] == "confirmation"


async def test_a_message_is_marked_sent_before_the_mail_server_is_told_goodbye(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The double-send window ends when the sent mark commits; waiting for QUIT first would widen it."""
    delegate = Delegate("Nkechi")
    store: Store = service.state.store
    here = asyncio.get_running_loop()
    assert sink._controller is not None
    handler = sink._controller.handler
    delivered = handler.handle_DATA
    at_goodbye: list[str] = []

    async def handle_DATA(server: Any, session: Any, envelope: Any) -> str:
        session.recipients = list(envelope.rcpt_tos)
        reply: str = await delivered(server, session, envelope)
        return reply

    async def handle_QUIT(server: Any, session: Any, envelope: Any) -> str:
        if delegate.email in getattr(session, "recipients", []):
            # The sink runs its own event loop in a thread: ask this test's loop to read the message.
            read = store.messages.find_one({"registration_id": delegate.registration_id, "kind": "confirmation"})
            message = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(read, here))
            at_goodbye.append(message["status"] if message else "missing")
        return "221 Bye"

    monkeypatch.setattr(handler, "handle_DATA", handle_DATA)
    monkeypatch.setattr(handler, "handle_QUIT", handle_QUIT, raising=False)
    await publish(publisher, delegate.confirmed(first=True), delegate.ticket_issued())

    async def said_goodbye() -> bool:
        return bool(at_goodbye)

    await wait_for(said_goodbye, 60, "the confirmation's session to end")
    assert at_goodbye == [Status.SENT]
    assert len(mails_to(sink, delegate.email)) == 1


async def test_ticket_arriving_before_the_registration_still_sends_one_confirmation(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Siobhán")
    issued = delegate.ticket_issued()
    await publish(publisher, issued)
    await wait_for(lambda: processed(service, issued), 60, "the ticket to be recorded")
    assert mails_to(sink, delegate.email) == []
    await publish(publisher, delegate.confirmed())

    async def one_mail() -> list[EmailMessage]:
        return mails_to(sink, delegate.email)

    (mail,) = await wait_for(one_mail, 30, "the confirmation email")
    assert inline_qr(mail) == [delegate.code]
    assert [r["kind"] for r in await log_for(api, delegate.registration_id)] == ["confirmation"]


async def test_cancelled_registration_gets_no_ticket_email_when_its_ticket_arrives_late(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Nguyễn")
    await publish(publisher, delegate.confirmed(), delegate.cancelled())

    async def cancellation() -> list[EmailMessage]:
        return mails_to(sink, delegate.email)

    (mail,) = await wait_for(cancellation, 30, "the cancellation email")
    assert subject(mail) == "Your registration for Education Leadership in Challenging Times has been cancelled"
    issued = delegate.ticket_issued()
    await publish(publisher, issued)
    await wait_for(lambda: processed(service, issued), 30, "the late ticket to be handled")
    assert [r["kind"] for r in await log_for(api, delegate.registration_id)] == ["cancelled"]
    assert len(mails_to(sink, delegate.email)) == 1


async def test_promoted_delegate_hears_of_the_place_and_then_gets_the_ticket(
    service: FastAPI, sink: SmtpSink, publisher: Publisher
) -> None:
    delegate = Delegate("Zoë")
    await publish(publisher, delegate.waitlisted(), delegate.promoted(), delegate.ticket_issued())

    async def three_mails() -> list[EmailMessage]:
        mails = mails_to(sink, delegate.email)
        return mails if len(mails) >= 3 else []

    mails = await wait_for(three_mails, 30, "waiting-list, promotion and ticket emails")
    subjects = sorted(subject(m) for m in mails)
    assert subjects == [
        "A place has become available for you at Education Leadership in Challenging Times",
        "You are on the waiting list for Education Leadership in Challenging Times",
        "Your place at Education Leadership in Challenging Times is confirmed: your ticket",
    ]


async def test_refusing_smtp_server_is_retried_until_it_accepts(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("O'Neill")
    sink.refusing = True
    try:
        await publish(publisher, delegate.confirmed(), delegate.ticket_issued())

        async def retrying() -> list[dict[str, Any]]:
            rows = await log_for(api, delegate.registration_id)
            return rows if rows and rows[0]["status"] == "retrying" else []

        (row,) = await wait_for(retrying, 30, "the message to be retrying")
        assert row["last_error"].startswith("421")
        assert datetime.fromisoformat(row["next_attempt_at"]) <= datetime.now(UTC) + timedelta(minutes=5)
        assert mails_to(sink, delegate.email) == []
    finally:
        sink.refusing = False

    async def delivered() -> list[dict[str, Any]]:
        rows = await log_for(api, delegate.registration_id)
        return rows if rows and rows[0]["status"] == "sent" else []

    (row,) = await wait_for(delivered, 30, "the retried message to be sent")
    assert row["attempts"] >= 2
    assert len(mails_to(sink, delegate.email)) == 1


async def test_both_halves_handled_at_the_same_moment_queue_exactly_one_confirmation(
    infrastructure: EmbeddedStack,
) -> None:
    client = mongo.connect(infrastructure.config.mongo)
    try:
        db = client[f"{DB_PREFIX}_race_{uuid.uuid4().hex[:6]}"]
        store = Store(db)
        await store.prepare()
        handlers = Notifications(store, Outbox(db, topics.NOTIFICATIONS), link_key=LINK_KEY, public_url=PUBLIC_URL)
        for _ in range(3):
            delegate = Delegate("Ada")

            async def handle(envelope: Envelope, handler: Handler) -> None:
                async def work(session: mongo.Session) -> None:
                    await handler(envelope, envelope.payload(), session)
                    # Keeps this transaction open while the other one writes, as two consumer
                    # instances handling the two topics' partitions would.
                    await asyncio.sleep(0.2)

                await mongo.in_transaction(client, work)

            await asyncio.gather(
                handle(delegate.confirmed(), handlers.registration_confirmed),
                handle(delegate.ticket_issued(), handlers.ticket_issued),
            )
            queued = await store.messages.find({"registration_id": delegate.registration_id}).to_list(None)
            assert [m["_id"] for m in queued] == [f"{delegate.registration_id}:confirmation:{delegate.ticket_id}"]
    finally:
        await client.close()


def texts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def mails(sink: SmtpSink, delegate: Delegate, count: int) -> Callable[[], Awaitable[list[EmailMessage]]]:
    async def enough() -> list[EmailMessage]:
        found = mails_to(sink, delegate.email)
        return found if len(found) >= count else []

    return enough


async def all_sent(service: FastAPI) -> None:
    await wait_for(lambda: _nothing_left_to_send(service.state.store), 30, "every queued email to be sent")


OFFER_EXPIRES = datetime(2026, 6, 11, 16, 0, tzinfo=UTC)
TITLE = "Education Leadership in Challenging Times"


async def test_offered_place_names_its_deadline_and_every_email_carries_the_manage_link(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Adaeze")
    await publish(
        publisher,
        delegate.waitlisted(first=True),
        delegate.offered(OFFER_EXPIRES),
        delegate.promoted(),
        delegate.ticket_issued(),
    )

    found = await wait_for(mails(sink, delegate, 4), 60, "waiting-list, offer, promotion and ticket emails")

    assert sorted(subject(m) for m in found) == [
        f"A place has become available for you at {TITLE}",
        f"A place is available at {TITLE}: please confirm by Thursday 11 June 2026 at 17:00 (BST)",
        f"You are on the waiting list for {TITLE}",
        f"Your place at {TITLE} is confirmed: your ticket",
    ]
    for mail in found:
        plain, html = texts(mail)
        assert delegate.manage_link in plain
        assert f'href="{delegate.manage_link}"' in html
        assert "Questions? Contact leadership-centre@university.example." in plain
    [offer] = [m for m in found if subject(m).startswith("A place is available")]
    plain, html = texts(offer)
    assert "holding it for you until Thursday 11 June 2026 at 17:00 (BST)" in plain
    assert f'<a href="{delegate.manage_link}"' in html and "Confirm my place" in html
    assert sorted(r["kind"] for r in await log_for(api, delegate.registration_id)) == [
        "confirmation", "offered", "promoted", "waitlisted"
    ]


async def test_expired_offer_is_told_in_its_own_words(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Pádraig")
    await publish(
        publisher,
        delegate.waitlisted(first=True),
        delegate.offered(OFFER_EXPIRES),
        delegate.cancelled(previous_status="waitlisted", reason="offer_expired"),
    )

    found = await wait_for(mails(sink, delegate, 3), 60, "waiting-list, offer and expiry emails")

    [expired] = [m for m in found if "expired" in subject(m)]
    assert subject(expired) == f"Your offer of a place at {TITLE} has expired"
    plain, html = texts(expired)
    assert "Your offer has expired" in plain and "Your offer has expired" in html
    assert "until Thursday 11 June 2026 at 17:00 (BST)" in plain
    assert delegate.manage_link in plain
    assert sorted(r["kind"] for r in await log_for(api, delegate.registration_id)) == [
        "offer_expired", "offered", "waitlisted"
    ]


async def test_each_resend_request_sends_the_ticket_once_more_however_often_it_is_delivered(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Okafor")
    delegate.sessions = ["ws-inclusion"]
    waiting = Delegate("Nnamdi")
    await publish(publisher, delegate.confirmed(first=True), delegate.ticket_issued(), waiting.waitlisted(first=True))
    await wait_for(mails(sink, delegate, 1), 60, "the confirmation email")
    first_request, second_request, not_confirmed = (
        delegate.resend_requested(), delegate.resend_requested(), waiting.resend_requested()
    )

    await publish(publisher, first_request, first_request, second_request, first_request, not_confirmed)
    found = await wait_for(mails(sink, delegate, 3), 60, "two resent ticket emails")
    await wait_for(lambda: processed(service, first_request, second_request, not_confirmed), 30, "the requests")
    await all_sent(service)

    assert len(mails_to(sink, delegate.email)) == 3
    for mail in found:
        assert subject(mail) == f"Your place at {TITLE} is confirmed: your ticket"
        assert inline_qr(mail) == [delegate.code]
        plain, _ = texts(mail)
        assert delegate.manage_link in plain
        assert "- Leading inclusive schools (11:00–12:15)" in plain
    confirmation = f"{delegate.registration_id}:confirmation:{delegate.ticket_id}"
    assert sorted(r["id"] for r in await log_for(api, delegate.registration_id)) == sorted(
        [confirmation, f"{confirmation}:resend:{first_request.id}", f"{confirmation}:resend:{second_request.id}"]
    )
    assert [r["kind"] for r in await log_for(api, waiting.registration_id)] == ["waitlisted"]


async def test_update_sends_nothing_itself_but_later_emails_use_the_new_details(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    delegate = Delegate("Niamh")
    delegate.sessions = ["ws-inclusion"]
    await publish(publisher, delegate.confirmed(first=True), delegate.ticket_issued())
    await wait_for(mails(sink, delegate, 1), 60, "the confirmation email")

    delegate.delegate = delegate.delegate.model_copy(update={"name": "Niamh Ó Súilleabháin"})
    delegate.sessions = ["ws-wellbeing"]
    update = delegate.updated()
    await publish(publisher, update)
    await wait_for(lambda: processed(service, update), 30, "the update to be handled")
    await all_sent(service)
    assert len(mails_to(sink, delegate.email)) == 1

    # A change of ticket type makes ticketing replace the ticket; its new code is emailed.
    delegate.reissue("speaker")
    await publish(publisher, delegate.ticket_issued())
    found = await wait_for(mails(sink, delegate, 2), 60, "the replacement ticket email")

    [replacement] = [m for m in found if inline_qr(m) == [delegate.code]]
    plain, html = texts(replacement)
    assert "Dear Niamh Ó Súilleabháin" in plain and "Dear Niamh Ó Súilleabháin" in html
    assert "Ticket: speaker" in plain
    assert "- Staff wellbeing in hard times (13:30–14:45)" in plain
    assert "Leading inclusive schools" not in plain
    assert delegate.manage_link in plain
    assert len(await log_for(api, delegate.registration_id)) == 2


async def _hold_back(service: FastAPI, message_id: str) -> None:
    """Put a retrying message's next attempt an hour away, so it is found waiting, not mid-send."""

    async def held() -> bool:
        result = await service.state.store.messages.update_one(
            {"_id": message_id, "status": Status.RETRYING},
            {"$set": {"next_attempt_at": datetime.now(UTC) + timedelta(hours=1)}},
        )
        return bool(result.modified_count)

    await wait_for(held, 30, "the message to be held back")


async def test_erasure_forgets_the_delegate_everywhere_and_stops_unsent_email(
    service: FastAPI, sink: SmtpSink, publisher: Publisher, api: httpx.AsyncClient
) -> None:
    already_emailed = Delegate("Ngozi")
    await publish(publisher, already_emailed.confirmed(first=True), already_emailed.ticket_issued())
    await wait_for(mails(sink, already_emailed, 1), 60, "the first delegate's email")
    delegate = Delegate("Tomasz")
    sink.refusing = True
    try:
        await publish(publisher, delegate.confirmed(first=True), delegate.ticket_issued())

        async def retrying() -> list[dict[str, Any]]:
            rows = await log_for(api, delegate.registration_id)
            return rows if rows and rows[0]["status"] == "retrying" else []

        (row,) = await wait_for(retrying, 30, "the second delegate's email to be retrying")
        await _hold_back(service, row["id"])
    finally:
        sink.refusing = False
    erasures = (
        delegate.cancelled(reason="erased"),
        delegate.erased(),
        already_emailed.cancelled(reason="erased"),
        already_emailed.erased(),
    )

    await publish(publisher, *erasures)
    await wait_for(lambda: processed(service, *erasures), 30, "the erasures to be handled")
    # Later events about an erased delegate write nothing back and send nothing.
    late = (fresh_copy(delegate.confirmed(first=True)), delegate.resend_requested(), already_emailed.resend_requested())
    await publish(publisher, *late)
    await wait_for(lambda: processed(service, *late), 30, "the late events to be handled")
    await all_sent(service)

    (failed,) = await log_for(api, delegate.registration_id)
    assert (failed["kind"], failed["status"], failed["last_error"]) == ("confirmation", "failed", "erased")
    (sent,) = await log_for(api, already_emailed.registration_id)
    assert (sent["kind"], sent["status"]) == ("confirmation", "sent")
    assert mails_to(sink, delegate.email) == []
    assert len(mails_to(sink, already_emailed.email)) == 1
    store: Store = service.state.store
    for person in (delegate, already_emailed):
        stored = [
            *await store.messages.find({"registration_id": person.registration_id}).to_list(None),
            await store.registrations.find_one({"_id": person.registration_id}),
        ]
        for document in stored:
            assert document is not None
            for secret in (person.delegate.name, person.email, person.manage_token):
                assert secret not in str(document)
    outbox = service.state.runtime.db["outbox"]
    row_failed = await outbox.find_one({"key": delegate.registration_id, "type": "notification.failed"})
    assert row_failed is not None
    assert Envelope.from_bytes(bytes(row_failed["value"])).data["error"] == "erased"
