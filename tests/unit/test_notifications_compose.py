"""Composed emails as a delegate's mail client sees them: parts, inline QR, attachments, wording."""

from __future__ import annotations

import email
import email.policy
import io
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from notifications.compose import Composer, when
from notifications.domain import Kind, MessageContent, TicketFacts, message_key
from plenary_kit import events, ticketcode

EVENT_ID = str(uuid.uuid4())
TICKET_ID = str(uuid.uuid4())
REGISTRATION_ID = str(uuid.uuid4())
CODE = ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", Ed25519PrivateKey.generate())
EVENT = events.EventSummary(
    id=EVENT_ID,
    slug="leadership-symposium",
    title="Education Leadership in Challenging Times",
    venue="The Spine, Liverpool",
    starts_at=datetime(2026, 3, 12, 9, 30, tzinfo=UTC),
    ends_at=datetime(2026, 3, 12, 16, 0, tzinfo=UTC),
    timezone="Europe/London",
)
DELEGATE = events.Delegate(
    name="Zoë Ní Bhriain", email="zoe.nibhriain@school.example", organisation="Halton Primary", role="Headteacher"
)
CREATED = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
COMPOSER = Composer("Plenary <events@plenary.example>")


def parse(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def compose(kind: Kind, content: MessageContent) -> EmailMessage:
    version = content.ticket.ticket_id if content.ticket else "1"
    key = message_key(REGISTRATION_ID, kind, version)
    return parse(COMPOSER.compose(key, kind, content, created_at=CREATED, now=CREATED))


def confirmation() -> EmailMessage:
    content = MessageContent(
        registration_id=REGISTRATION_ID,
        delegate=DELEGATE,
        event=EVENT,
        ticket_type="delegate",
        sessions=["keynote"],
        ticket=TicketFacts(ticket_id=TICKET_ID, code=CODE),
    )
    return compose(Kind.CONFIRMATION, content)


def decode_qr(png: bytes) -> list[str]:
    return [barcode.text for barcode in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_confirmation_has_plain_and_html_parts_in_british_english() -> None:
    message = confirmation()
    assert message["To"].addresses[0].addr_spec == DELEGATE.email
    assert message["To"].addresses[0].display_name == DELEGATE.name
    assert message["Subject"].startswith("Your place at Education Leadership in Challenging Times is confirmed")
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    for text in (plain.get_content(), html.get_content()):
        assert "Dear Zoë Ní Bhriain" in text
        assert "Thursday 12 March 2026, 09:30–16:00 (GMT)" in text
        assert "The Spine, Liverpool" in text
        assert "organising team" in text
        assert CODE not in text


def test_confirmation_html_shows_the_qr_inline_by_content_id() -> None:
    message = confirmation()
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    related = [part for part in message.walk() if part.get_content_type() == "multipart/related"]
    assert len(related) == 1
    inline = [part for part in related[0].iter_parts() if part.get_content_type() == "image/png"]
    assert len(inline) == 1
    cid = inline[0]["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html.get_content()
    assert inline[0].get_content_disposition() == "inline"
    assert decode_qr(inline[0].get_content()) == [CODE]


def test_confirmation_attaches_the_ticket_png_and_a_calendar_file() -> None:
    message = confirmation()
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attachments) == {"ticket.png", "leadership-symposium.ics"}
    assert attachments["ticket.png"].get_content_type() == "image/png"
    assert decode_qr(attachments["ticket.png"].get_content()) == [CODE]
    calendar = attachments["leadership-symposium.ics"]
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "PUBLISH"
    text = calendar.get_content()
    assert "DTSTART:20260312T093000Z" in text
    assert "DTEND:20260312T160000Z" in text
    assert "LOCATION:The Spine\\, Liverpool" in text
    assert f"UID:{REGISTRATION_ID}@plenary.example" in text


def test_the_same_message_key_always_gets_the_same_message_id() -> None:
    first, second = confirmation(), confirmation()
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"].endswith("@plenary.example>")
    other = COMPOSER.message_id(message_key(REGISTRATION_ID, Kind.CANCELLED))
    assert other != first["Message-ID"]


@pytest.mark.parametrize(
    ("kind", "extra", "phrase"),
    [
        (Kind.WAITLISTED, {"waitlist_position": 3}, "on the waiting list at position 3"),
        (Kind.PROMOTED, {}, "a place has become available"),
        (Kind.CANCELLED, {"previous_status": "confirmed"}, "has been cancelled"),
        (Kind.CANCELLED, {"previous_status": "waitlisted"}, "taken off the waiting list"),
    ],
)
def test_short_messages_say_what_happened_without_attachments(
    kind: Kind, extra: dict[str, object], phrase: str
) -> None:
    content = MessageContent(registration_id=REGISTRATION_ID, delegate=DELEGATE, event=EVENT, **extra)
    message = compose(kind, content)
    assert list(message.iter_attachments()) == []
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert phrase in plain.get_content()
    assert phrase in html.get_content()
    assert EVENT.title in message["Subject"]


def test_times_are_shown_in_the_events_timezone() -> None:
    summer = EVENT.model_copy(
        update={
            "starts_at": datetime(2026, 6, 18, 8, 30, tzinfo=UTC),
            "ends_at": datetime(2026, 6, 19, 15, 0, tzinfo=UTC),
        }
    )
    assert when(summer) == "Thursday 18 June 2026, 09:30 BST to Friday 19 June 2026, 16:00 BST"


def test_html_escapes_delegate_names() -> None:
    content = MessageContent(
        registration_id=REGISTRATION_ID,
        delegate=DELEGATE.model_copy(update={"name": "O'Neill <b>"}),
        event=EVENT,
        previous_status="confirmed",
    )
    message = compose(Kind.CANCELLED, content)
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "O&#39;Neill &lt;b&gt;" in html.get_content()
