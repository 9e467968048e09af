"""iCalendar (RFC 5545) text for a delegate's calendar: one event, folded and escaped by the book."""

from __future__ import annotations

from datetime import UTC, datetime

from plenary_kit import events

PRODID = "-//Plenary//Notifications//EN"
_FOLD_OCTETS = 75


def escape(text: str) -> str:
    """TEXT value escaping: backslash, semicolon, comma and line breaks."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Split a content line into chunks of at most 75 octets, never inside a UTF-8 character."""
    chunks: list[str] = []
    current = ""
    size = 0
    # Continuation lines start with a space, which counts towards their 75 octets.
    limit = _FOLD_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            chunks.append(current)
            current, size, limit = "", 0, _FOLD_OCTETS - 1
        current += char
        size += width
    chunks.append(current)
    return "\r\n ".join(chunks)


def utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(*, uid: str, event: events.EventSummary, stamp: datetime, description: str = "") -> str:
    """A VCALENDAR with METHOD:PUBLISH and one VEVENT, times in UTC, lines ending CRLF."""
    properties = [
        ("UID", uid),
        ("DTSTAMP", utc_stamp(stamp)),
        ("DTSTART", utc_stamp(event.starts_at)),
        ("DTEND", utc_stamp(event.ends_at)),
        ("SUMMARY", escape(event.title)),
        ("LOCATION", escape(event.venue)),
    ]
    if description:
        properties.append(("DESCRIPTION", escape(description)))
    properties += [("STATUS", "CONFIRMED"), ("TRANSP", "OPAQUE"), ("SEQUENCE", "0")]
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        *(f"{name}:{value}" for name, value in properties),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) + "\r\n" for line in lines)
