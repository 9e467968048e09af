"""iCalendar (RFC 5545) text for a delegate's calendar: one event, folded and escaped by the book.

Times are given in the event's own timezone (TZID with its VTIMEZONE), so a delegate's
calendar shows "09:30, London time" wherever they open it, and an event in summer stays at
09:30 however the clocks change. An unknown timezone name falls back to UTC times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

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


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def timezone_lines(tzid: str, start: datetime, end: datetime) -> list[str]:
    """The VTIMEZONE of `tzid` with the offset changes from the start's year to the end's, unfolded."""
    component = icalendar.Timezone.from_tzid(
        tzid, first_date=start.date().replace(month=1, day=1), last_date=end.date().replace(month=12, day=31)
    )
    text = component.to_ical().decode("utf-8").replace("\r\n ", "")
    # The generator adds a COMMENT on the range it covers; a delegate's calendar needs none.
    return [line for line in text.split("\r\n") if line and not line.startswith("COMMENT")]


def calendar(*, uid: str, event: events.EventSummary, stamp: datetime, description: str = "") -> str:
    """A VCALENDAR with METHOD:PUBLISH and one VEVENT in the event's timezone, lines ending CRLF."""
    zone = _zone(event.timezone)
    timezone: list[str] = []
    if zone is None:
        times = [("DTSTART", utc_stamp(event.starts_at)), ("DTEND", utc_stamp(event.ends_at))]
    else:
        start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
        times = [
            (f"DTSTART;TZID={event.timezone}", f"{start:%Y%m%dT%H%M%S}"),
            (f"DTEND;TZID={event.timezone}", f"{end:%Y%m%dT%H%M%S}"),
        ]
        timezone = timezone_lines(event.timezone, start, end)
    properties = [
        ("UID", uid),
        ("DTSTAMP", utc_stamp(stamp)),
        *times,
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
        *timezone,
        "BEGIN:VEVENT",
        *(f"{name}:{value}" for name, value in properties),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) + "\r\n" for line in lines)
