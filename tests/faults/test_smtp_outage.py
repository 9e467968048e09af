"""The mail server goes away in the middle of a registration burst: every email still arrives, once.

The embedded SMTP sink closes its listening socket for 30 seconds (connections are refused,
as by a server that is down) while 200 delegates register through the registration API. When
it listens again, every delegate must have exactly one email, read back from the Maildir as a
mail client would read it.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
import zxingcpp
from burst import burst, delegates, inbox, mail_settled, registrations
from journey import create_event, eventually, organiser, register, ticket_of
from PIL import Image

from plenary_stack.processes import port_open
from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(600)

DELEGATES = 200
IN_FLIGHT = 20
OUTAGE_SECONDS = 30
CAPACITY = 180
TITLE = "Education Leadership in Challenging Times"
VENUE = "The Spine, 2 Paddington Village, Liverpool"
CONTACT = "leadership-centre@university.example"
LONDON = ZoneInfo("Europe/London")
# A summer date, so the event's own timezone (BST) differs from UTC and a slip would show.
STARTS = datetime(2027, 6, 17, 9, 30, tzinfo=LONDON)
ENDS = datetime(2027, 6, 17, 16, 0, tzinfo=LONDON)


@pytest.fixture(scope="module")
def stack(own_stack: EmbeddedStack) -> EmbeddedStack:
    """A stack of this module's own, whose SMTP sink is switched off and on; its commits need not be durable."""
    return own_stack


def set_listening(stack: EmbeddedStack, listening: bool) -> None:
    """Ask the sink process to open or close its port, and wait until it has."""
    assert stack.smtp.process is not None
    stack.smtp.process.send_signal(signal.SIGUSR2 if listening else signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", stack.config.smtp_port) != listening:
        assert time.monotonic() < deadline, f"the SMTP sink did not {'open' if listening else 'close'} its port"
        time.sleep(0.05)


async def test_every_email_arrives_once_after_the_mail_server_refused_connections_for_30_seconds(
    stack: EmbeddedStack,
) -> None:
    maildir = stack.config.maildir
    people = delegates(DELEGATES)
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(
            http, stack, capacity=CAPACITY, title=TITLE, venue=VENUE, starts_at=STARTS.isoformat(),
            ends_at=ENDS.isoformat(), organiser_contact=CONTACT,
        )
        await asyncio.to_thread(set_listening, stack, False)
        outage_started = time.monotonic()
        try:
            # As a booking surge would send them, IN_FLIGHT at a time.
            await burst(http, stack, event_id, people, IN_FLIGHT)
            replies = registrations(people)
            burst_seconds = time.monotonic() - outage_started
            assert burst_seconds < OUTAGE_SECONDS, f"the burst took {burst_seconds:.0f} s, longer than the outage"

            async def retrying() -> bool:
                reply = await http.get(
                    f"{stack.config.url('notifications')}/api/v1/notifications",
                    params={"status": "retrying"},
                    headers=organiser(stack),
                )
                return bool(reply.json())

            # The senders are really meeting refusals, not merely waiting for events.
            await eventually(retrying, OUTAGE_SECONDS, "a message to be retrying")
            assert inbox(maildir) == {}
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        finally:
            await asyncio.to_thread(set_listening, stack, True)

        addresses = {person.email for person in people}
        statuses = Counter(reply["status"] for reply in replies)
        assert statuses == {"confirmed": CAPACITY, "waitlisted": DELEGATES - CAPACITY}

        async def everyone_has_mail() -> bool:
            return addresses <= set(inbox(maildir))

        await eventually(everyone_has_mail, 300, "an email for every delegate")

        await mail_settled(http, stack, timeout=120)
        received = inbox(maildir)
        assert set(received) == addresses
        doubled = {address: len(mails) for address, mails in received.items() if len(mails) != 1}
        assert doubled == {}
        subjects = Counter(str(mails[0]["Subject"]).strip() for mails in received.values())
        assert subjects == {
            f"Your place at {TITLE} is confirmed: your ticket": CAPACITY,
            f"You are on the waiting list for {TITLE}": DELEGATES - CAPACITY,
        }
        log = await http.get(
            f"{stack.config.url('notifications')}/api/v1/notifications",
            params={"status": "sent"},
            headers=organiser(stack),
        )
        retried = [row for row in log.json() if row["attempts"] > 1]
        assert retried, "no message needed a second attempt, so the outage was never met"


async def test_confirmation_reads_as_a_mail_client_sees_it(stack: EmbeddedStack) -> None:
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(
            http, stack, capacity=CAPACITY, title=TITLE, venue=VENUE, starts_at=STARTS.isoformat(),
            ends_at=ENDS.isoformat(), organiser_contact=CONTACT,
        )
        address = f"zoe.{uuid.uuid4().hex[:8]}@birkenhead-park.example"
        registration = await register(http, stack, event_id, address)
        code = str((await ticket_of(http, stack, registration))["code"])

        async def arrived() -> list[EmailMessage]:
            return inbox(stack.config.maildir).get(address, [])

        (mail,) = await eventually(arrived, 60, "the confirmation email")

    plain = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    for text in (plain.get_content(), html.get_content()):
        assert TITLE in text
        assert "Thursday 17 June 2027, 09:30–16:00 (BST)" in text
        assert VENUE in text
        assert CONTACT in text
        assert f"/manage/{registration['id']}?token=" in text

    inline = {
        part["Content-ID"].strip("<>"): part
        for part in mail.walk()
        if part.get_content_type() == "image/png" and part.get_content_disposition() == "inline"
    }
    (cid,) = [cid for cid in inline if f'src="cid:{cid}"' in html.get_content()]
    image = Image.open(io.BytesIO(inline[cid].get_content()))
    decoded = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [barcode.text for barcode in decoded] == [code]

    attachments = {part.get_filename(): part for part in mail.iter_attachments()}
    png = attachments.pop("ticket.png")
    attached = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.get_content())), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [barcode.text for barcode in attached] == [code]
    ((filename, ics_part),) = attachments.items()
    assert filename.endswith(".ics")
    assert ics_part.get_content_type() == "text/calendar"
    calendar = icalendar.Calendar.from_ical(ics_part.get_payload(decode=True))
    (vevent,) = calendar.walk("VEVENT")
    start, end = vevent.decoded("DTSTART"), vevent.decoded("DTEND")
    assert start == STARTS and end == ENDS
    assert (start.astimezone(LONDON).hour, start.astimezone(LONDON).minute) == (9, 30)
    assert str(vevent["LOCATION"]) == VENUE
    assert str(vevent["SUMMARY"]) == TITLE
    assert end - start == timedelta(hours=6, minutes=30)
