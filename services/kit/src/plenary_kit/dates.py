"""Dates and times as a delegate at the venue reads them, in the event's own time zone, in British English."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, AwareDatetime, StringConstraints

# Times a client sends must stay inside Python's calendar (years 1 to 9999) when stored in UTC,
# shown in any time zone or moved by the days of a reminder or an offer; this range leaves room.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _within_range(value: datetime) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}")
    return value


# An aware date and time from outside (an API body), refused as invalid when out of range.
Instant = Annotated[AwareDatetime, AfterValidator(_within_range)]

_ZONES = frozenset(available_timezones())


def _known_zone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError("must be a time zone name such as Europe/London")
    return name


# A time zone an organiser gives an event: one of the IANA names this machine knows.
TimeZoneName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_known_zone)]


def zone(name: str) -> tzinfo:
    """The named time zone; UTC for a name this machine does not know, rather than no date at all."""
    try:
        return ZoneInfo(name)
    # A folder of the zone database ("Europe") or an over-long name fails as OSError, not as not found.
    except (ZoneInfoNotFoundError, ValueError, OSError):
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
