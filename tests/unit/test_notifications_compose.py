"""Composed emails as a delegate's mail client sees them: parts, inline QR, attachments, wording."""

from __future__ import annotations

import email
import email.policy
import io
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from notifications.compose import Composer, deadline, session_times, when
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
    image = Image.open(io.BytesIO(png))
    return [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


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
    # March: London is on GMT, so local time and UTC agree.
    assert "DTSTART;TZID=Europe/London:20260312T093000" in text
    assert "DTEND;TZID=Europe/London:20260312T160000" in text
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
    kind: Kind, extra: dict[str, Any], phrase: str
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


MANAGE_URL = f"https://register.plenary.example/manage/{REGISTRATION_ID}?token=Zm9vYmFy-_x"
OFFER_EXPIRES = datetime(2026, 3, 5, 17, 0, tzinfo=UTC)
WORKSHOPS = EVENT.model_copy(
    update={
        "organiser_contact": "leadership-centre@university.example",
        "sessions": [
            events.SessionSummary(
                code="ws-inclusion",
                title="Leading inclusive schools",
                starts_at=datetime(2026, 3, 12, 11, 0, tzinfo=UTC),
                ends_at=datetime(2026, 3, 12, 12, 15, tzinfo=UTC),
            ),
            events.SessionSummary(
                code="ws-wellbeing",
                title="Staff wellbeing in hard times",
                starts_at=datetime(2026, 3, 12, 13, 30, tzinfo=UTC),
                ends_at=datetime(2026, 3, 12, 14, 30, tzinfo=UTC),
            ),
        ],
    }
)
EXTRAS: dict[Kind, dict[str, Any]] = {
    Kind.CONFIRMATION: {"ticket": TicketFacts(ticket_id=TICKET_ID, code=CODE), "ticket_type": "delegate"},
    Kind.WAITLISTED: {"waitlist_position": 2},
    Kind.PROMOTED: {},
    Kind.OFFERED: {"offer_expires_at": OFFER_EXPIRES},
    Kind.CANCELLED: {"previous_status": "confirmed"},
    Kind.OFFER_EXPIRED: {"previous_status": "waitlisted", "offer_expires_at": OFFER_EXPIRES},
    Kind.REMINDER: {"ticket": TicketFacts(ticket_id=TICKET_ID, code=CODE), "ticket_type": "delegate"},
    Kind.THANK_YOU: {},
}


def texts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def composed(kind: Kind, event: events.EventSummary = EVENT, **fields: Any) -> tuple[EmailMessage, str, str]:
    content = MessageContent(registration_id=REGISTRATION_ID, delegate=DELEGATE, event=event, **EXTRAS[kind], **fields)
    message = compose(kind, content)
    return message, *texts(message)


@pytest.mark.parametrize("kind", list(Kind))
def test_every_email_links_to_the_delegates_manage_page(kind: Kind) -> None:
    _, plain, html = composed(kind, manage_url=MANAGE_URL)

    assert MANAGE_URL in plain
    assert f'href="{MANAGE_URL}"' in html
    assert "first email" not in plain


@pytest.mark.parametrize("kind", list(Kind))
def test_without_a_manage_link_the_email_points_to_the_first_one(kind: Kind) -> None:
    _, plain, html = composed(kind)

    for text in (plain, html):
        assert "use the link in your first email" in text
        assert "/manage/" not in text


def test_manage_link_is_escaped_in_html() -> None:
    _, plain, html = composed(Kind.PROMOTED, manage_url=MANAGE_URL + "&lang=cy")

    assert MANAGE_URL + "&lang=cy" in plain
    assert f'href="{MANAGE_URL}&amp;lang=cy"' in html


def test_organiser_contact_is_in_the_footer_only_when_the_event_has_one() -> None:
    _, plain, html = composed(Kind.WAITLISTED, WORKSHOPS)
    _, without_plain, without_html = composed(Kind.WAITLISTED)

    assert "Questions? Contact leadership-centre@university.example." in plain
    assert "Questions? Contact leadership-centre@university.example." in html
    assert "Questions?" not in without_plain + without_html


def test_sessions_are_shown_by_title_and_local_time_not_by_code() -> None:
    _, plain, html = composed(Kind.CONFIRMATION, WORKSHOPS, sessions=["ws-wellbeing", "ws-inclusion"])

    listed = "Sessions:\n- Staff wellbeing in hard times (13:30–14:30)\n- Leading inclusive schools (11:00–12:15)\n"
    assert listed in plain
    assert "Staff wellbeing in hard times (13:30–14:30)<br>Leading inclusive schools (11:00–12:15)" in html
    assert "ws-wellbeing" not in plain + html


def test_sessions_of_an_event_over_several_days_name_their_day() -> None:
    programme = WORKSHOPS.model_copy(update={"ends_at": datetime(2026, 6, 30, 16, 0, tzinfo=UTC)})
    summer_session = events.SessionSummary(
        code="module-3",
        title="Stepping up to senior leadership: module 3",
        starts_at=datetime(2026, 5, 14, 8, 0, tzinfo=UTC),
        ends_at=datetime(2026, 5, 14, 15, 0, tzinfo=UTC),
    )
    programme = programme.model_copy(update={"sessions": [*programme.sessions, summer_session]})

    assert session_times(programme, ["ws-inclusion", "module-3", "withdrawn"]) == [
        "Leading inclusive schools (Thursday 12 March 2026, 11:00–12:15)",
        "Stepping up to senior leadership: module 3 (Thursday 14 May 2026, 09:00–16:00)",
        "withdrawn",
    ]


def test_cancellation_lists_no_sessions() -> None:
    _, plain, html = composed(Kind.CANCELLED, WORKSHOPS, sessions=["ws-inclusion"])

    assert "Leading inclusive schools" not in plain + html


@pytest.mark.parametrize(
    ("moment", "zone", "text"),
    [
        (datetime(2026, 3, 5, 17, 0, tzinfo=UTC), "Europe/London", "Thursday 5 March 2026 at 17:00 (GMT)"),
        (datetime(2026, 6, 11, 16, 0, tzinfo=UTC), "Europe/London", "Thursday 11 June 2026 at 17:00 (BST)"),
        (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), "Europe/Dublin", "Saturday 28 March 2026 at 23:30 (GMT)"),
        (datetime(2026, 3, 29, 23, 30, tzinfo=UTC), "Europe/Dublin", "Monday 30 March 2026 at 00:30 (IST)"),
        (datetime(2026, 3, 5, 17, 0, tzinfo=UTC), "Not/AZone", "Thursday 5 March 2026 at 17:00 (UTC)"),
    ],
)
def test_offer_deadline_is_given_in_the_events_timezone(moment: datetime, zone: str, text: str) -> None:
    assert deadline(moment, zone) == text


def test_offer_asks_the_delegate_to_confirm_by_the_deadline_on_the_manage_page() -> None:
    message, plain, html = composed(Kind.OFFERED, manage_url=MANAGE_URL)

    assert message["Subject"] == (
        "A place is available at Education Leadership in Challenging Times: "
        "please confirm by Thursday 5 March 2026 at 17:00 (GMT)"
    )
    assert "holding it for you until Thursday 5 March 2026 at 17:00 (GMT)" in plain
    assert f"please confirm on your registration page:\n{MANAGE_URL}" in plain
    assert f'<a href="{MANAGE_URL}"' in html and "Confirm my place</a>" in html
    assert "offered to the next person on the waiting list" in plain
    assert list(message.iter_attachments()) == []


def test_offer_without_its_expiry_is_refused() -> None:
    content = MessageContent(registration_id=REGISTRATION_ID, delegate=DELEGATE, event=EVENT)

    with pytest.raises(ValueError, match="expiry"):
        compose(Kind.OFFERED, content)


def test_expired_offer_says_so_and_when_it_ran_out() -> None:
    message, plain, html = composed(Kind.OFFER_EXPIRED)

    assert message["Subject"] == "Your offer of a place at Education Leadership in Challenging Times has expired"
    for text in (plain, html):
        assert "Your offer has expired" in text
        assert "until Thursday 5 March 2026 at 17:00 (GMT)" in text
        assert "register again while places remain" in text


@pytest.mark.parametrize("kind", list(Kind))
def test_every_email_has_both_parts_with_title_date_venue_and_organiser(kind: Kind) -> None:
    message, plain, html = composed(kind, WORKSHOPS)

    assert message["Content-Language"] == "en-GB"
    for text in (plain, html):
        assert "Education Leadership in Challenging Times" in text
        assert "Thursday 12 March 2026" in text
        assert "The Spine, Liverpool" in text
        assert "leadership-centre@university.example" in text


def test_reminder_shows_the_ticket_inline_without_attachments() -> None:
    message, plain, html = composed(Kind.REMINDER, WORKSHOPS)

    assert str(message["Subject"]) == "See you soon at Education Leadership in Challenging Times: a reminder"
    assert "is coming up soon" in plain
    [image] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image.get_content_disposition() == "inline"
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    assert decode_qr(image.get_content()) == [CODE]
    assert list(message.iter_attachments()) == []


def test_reminder_without_a_ticket_points_to_the_confirmation() -> None:
    content = MessageContent(registration_id=REGISTRATION_ID, delegate=DELEGATE, event=EVENT)
    message = compose(Kind.REMINDER, content)
    plain, html = texts(message)

    assert "the QR code in your confirmation email" in plain
    assert "cid:" not in html
    assert not [part for part in message.walk() if part.get_content_type() == "image/png"]


def test_thank_you_invites_feedback_only_where_there_is_someone_to_write_to() -> None:
    _, with_contact, _ = composed(Kind.THANK_YOU, WORKSHOPS)
    _, without_contact, _ = composed(Kind.THANK_YOU)

    assert "Thank you for being part of Education Leadership in Challenging Times" in with_contact
    assert "write to the organisers" in with_contact
    assert "write to the organisers" not in without_contact
