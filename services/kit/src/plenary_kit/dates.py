"""Dates and times as a delegate at the venue reads them, in the event's own time zone, in British English."""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> tzinfo:
    """The named time zone; UTC for a name this machine does not know, rather than no date at all."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def day(moment: datetime) -> str:
    """ "Friday 12 March 2027" (no leading zero, no ordinal). """
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def span(starts_at: datetime, ends_at: datetime, where: tzinfo, *, with_zone: bool = False) -> str:
    """ "Friday 12 March 2027, 09:30–16:00", or both days when it runs over more than one.

    `with_zone` adds the zone's abbreviation ("(GMT)"), for readers who may not be at the venue.
    """
    start, end = starts_at.astimezone(where), ends_at.astimezone(where)
    if start.date() == end.date():
        suffix = f" ({start:%Z})" if with_zone else ""
        return f"{day(start)}, {start:%H:%M}–{end:%H:%M}{suffix}"
    if with_zone:
        return f"{day(start)}, {start:%H:%M} {start:%Z} to {day(end)}, {end:%H:%M} {end:%Z}"
    return f"{day(start)}, {start:%H:%M} to {day(end)}, {end:%H:%M}"


def moment(value: datetime, where: tzinfo, *, with_zone: bool = False) -> str:
    """ "Friday 12 March 2027 at 17:00", e.g. a deadline. """
    local = value.astimezone(where)
    suffix = f" ({local:%Z})" if with_zone else ""
    return f"{day(local)} at {local:%H:%M}{suffix}"
