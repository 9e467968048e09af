"""Builds delegates' emails from the Jinja2 templates: plain text and HTML, QR ticket and calendar file."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from notifications import ics
from notifications.domain import Kind, MessageContent, TicketFacts
from plenary_kit import dates, events, qr

# Each takes the event's title only. The fixed wording stays ASCII: a folded subject gains
# a stray space beside an encoded character.
SUBJECTS = {
    Kind.CONFIRMATION: "Your place at {title} is confirmed: your ticket",
    Kind.WAITLISTED: "You are on the waiting list for {title}",
    Kind.PROMOTED: "A place has become available for you at {title}",
    Kind.OFFERED: "A place is available at {title}",
    Kind.CANCELLED: "Your registration for {title} has been cancelled",
    Kind.OFFER_EXPIRED: "Your offer of a place at {title} has expired",
    Kind.REMINDER: "See you soon at {title}: a reminder",
    Kind.THANK_YOU: "Thank you for coming to {title}",
}

TICKET_FILENAME = "ticket.png"


def when(event: events.EventSummary) -> str:
    """The event's date and time as a delegate there would read it, in the event's own timezone."""
    return dates.span(event.starts_at, event.ends_at, dates.zone(event.timezone), with_zone=True)


def deadline(moment: datetime, timezone: str) -> str:
    """A deadline as a delegate at the event reads it, in the event's own timezone."""
    return dates.moment(moment, dates.zone(timezone), with_zone=True)


def session_times(event: events.EventSummary, codes: list[str]) -> list[str]:
    """The chosen sessions by title and time; the day is shown only when the event runs over several.

    A code the event summary does not list (a session since withdrawn) is shown as it is.
    """
    zone = dates.zone(event.timezone)
    several_days = event.starts_at.astimezone(zone).date() != event.ends_at.astimezone(zone).date()
    by_code = {session.code: session for session in event.sessions}
    lines = []
    for code in codes:
        session = by_code.get(code)
        if session is None:
            lines.append(code)
            continue
        start, end = session.starts_at.astimezone(zone), session.ends_at.astimezone(zone)
        day = f"{dates.day(start)}, " if several_days else ""
        lines.append(f"{session.title} ({day}{start:%H:%M}–{end:%H:%M})")
    return lines


class Composer:
    """Turns a stored message into the email that is sent; the same message always gets the same ids."""

    def __init__(self, mail_from: str) -> None:
        self.mail_from = mail_from
        self.domain = parseaddr(mail_from)[1].rpartition("@")[2] or "plenary.example"
        self._templates = Environment(
            loader=PackageLoader("notifications", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            keep_trailing_newline=True,
            # The templates ship with the service and change only with a new release; checking
            # their files' times on every message cost about a tenth of the service's CPU.
            auto_reload=False,
        )

    def message_id(self, key: str) -> str:
        return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{self.domain}>"

    def calendar_uid(self, registration_id: str) -> str:
        return f"{registration_id}@{self.domain}"

    def compose(
        self, key: str, kind: Kind, content: MessageContent, *, created_at: datetime, now: datetime
    ) -> EmailMessage:
        event = content.event
        offer_deadline = None
        if content.offer_expires_at is not None:
            offer_deadline = deadline(content.offer_expires_at, event.timezone)
        elif kind == Kind.OFFERED:
            raise ValueError("an offer needs its expiry")
        subject = SUBJECTS[kind].format(title=event.title)
        if kind == Kind.OFFERED:
            subject += f": please confirm by {offer_deadline}"
        qr_cid = f"ticket-{hashlib.sha256(key.encode()).hexdigest()[:16]}@{self.domain}"
        context: dict[str, Any] = {
            "subject": subject,
            "name": content.delegate.name,
            "event_title": event.title,
            "when": when(event),
            "venue": event.venue,
            "ticket_type": content.ticket_type or "",
            "sessions": session_times(event, content.sessions),
            "waitlist_position": content.waitlist_position,
            "previous_status": content.previous_status,
            "offer_deadline": offer_deadline,
            "manage_url": content.manage_url,
            "organiser_contact": event.organiser_contact,
            "qr_cid": qr_cid,
            "has_ticket": content.ticket is not None,
        }
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.mail_from
        # Built from its parts: the email package refuses a non-ASCII local part given as one
        # string, yet such addresses are valid and go out over SMTPUTF8.
        username, _, domain = content.delegate.email.rpartition("@")
        message["To"] = Address(display_name=content.delegate.name, username=username, domain=domain)
        message["Date"] = format_datetime(now)
        message["Message-ID"] = self.message_id(key)
        # RFC 3834: tells out-of-office responders not to reply to a machine.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self._templates.get_template(f"{kind}.txt").render(context))
        message.add_alternative(self._templates.get_template(f"{kind}.html").render(context), subtype="html")
        if kind == Kind.CONFIRMATION:
            if content.ticket is None:
                raise ValueError("a confirmation needs its ticket")
            self._attach_ticket(message, content, content.ticket, qr_cid, created_at)
        elif kind == Kind.REMINDER and content.ticket is not None:
            # On the day the reminder is the email a delegate finds first, so it shows the ticket too.
            self._inline_qr(message, content.ticket, qr_cid)
        # Set last: building the body moves any Content-* header into the first part.
        message["Content-Language"] = "en-GB"
        return message

    @staticmethod
    def _inline_qr(message: EmailMessage, ticket: TicketFacts, qr_cid: str) -> bytes:
        image = qr.png(ticket.code)
        html = message.get_body(preferencelist=("html",))
        assert isinstance(html, EmailMessage)
        html.add_related(image, maintype="image", subtype="png", cid=f"<{qr_cid}>", disposition="inline")
        return image

    def _attach_ticket(
        self, message: EmailMessage, content: MessageContent, ticket: TicketFacts, qr_cid: str, created_at: datetime
    ) -> None:
        image = self._inline_qr(message, ticket, qr_cid)
        message.add_attachment(image, maintype="image", subtype="png", filename=TICKET_FILENAME)
        calendar = ics.calendar(
            uid=self.calendar_uid(content.registration_id),
            event=content.event,
            stamp=created_at,
            description=f"Your ticket ({content.ticket_type}) is in your confirmation email; "
            "please show its QR code at the door.",
        )
        message.add_attachment(
            calendar.encode("utf-8"),
            maintype="text",
            subtype="calendar",
            params={"method": "PUBLISH", "charset": "utf-8"},
            filename=f"{content.event.slug}.ics",
        )
