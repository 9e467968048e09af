"""The calendar file attached to confirmations: RFC 5545 folding, escaping and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar

from notifications import ics
from plenary_kit import events

EVENT = events.EventSummary(
    id="0b7d6c1e-8f0e-4c55-9a61-0d9f3c1f6d2a",
    slug="leadership-symposium",
    title="Education Leadership in Challenging Times; a symposium, with keynote",
    venue="The Spine, 2 Paddington Village, Liverpool",
    starts_at=datetime(2026, 6, 18, 9, 30, tzinfo=timezone(timedelta(hours=1))),
    ends_at=datetime(2026, 6, 18, 16, 0, tzinfo=timezone(timedelta(hours=1))),
    timezone="Europe/London",
)
STAMP = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def properties(text: str) -> dict[str, str]:
    lines = [line for line in unfold(text) if line]
    return dict(line.split(":", 1) for line in lines)


def test_calendar_carries_times_in_the_events_timezone_venue_and_title() -> None:
    text = ics.calendar(uid="reg-1@plenary.example", event=EVENT, stamp=STAMP)
    props = properties(text)
    assert props["DTSTART;TZID=Europe/London"] == "20260618T093000"
    assert props["DTEND;TZID=Europe/London"] == "20260618T160000"
    assert props["DTSTAMP"] == "20260501T120000Z"
    assert props["LOCATION"] == "The Spine\\, 2 Paddington Village\\, Liverpool"
    assert props["SUMMARY"] == "Education Leadership in Challenging Times\\; a symposium\\, with keynote"
    assert props["UID"] == "reg-1@plenary.example"
    assert props["METHOD"] == "PUBLISH"


def test_calendar_parses_to_the_same_moments_with_the_zone_it_was_given_in() -> None:
    text = ics.calendar(uid="reg-1@plenary.example", event=EVENT, stamp=STAMP)
    (vevent,) = icalendar.Calendar.from_ical(text).walk("VEVENT")
    start, end = vevent.decoded("DTSTART"), vevent.decoded("DTEND")
    assert (start, end) == (EVENT.starts_at, EVENT.ends_at)
    assert start.tzinfo == ZoneInfo("Europe/London")
    (zone,) = icalendar.Calendar.from_ical(text).walk("VTIMEZONE")
    assert {str(part["TZNAME"]) for part in zone.subcomponents} == {"GMT", "BST"}


def test_an_unknown_timezone_falls_back_to_utc_times() -> None:
    event = EVENT.model_copy(update={"timezone": "Atlantis/Capital"})
    props = properties(ics.calendar(uid="reg-1@plenary.example", event=event, stamp=STAMP))
    assert props["DTSTART"] == "20260618T083000Z"
    assert "TZID" not in props


def test_calendar_is_one_event_with_crlf_line_endings() -> None:
    text = ics.calendar(uid="reg-1@plenary.example", event=EVENT, stamp=STAMP)
    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert text.endswith("END:VEVENT\r\nEND:VCALENDAR\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert text.count("BEGIN:VEVENT") == 1


def test_long_unicode_lines_fold_within_75_octets_without_splitting_characters() -> None:
    event = EVENT.model_copy(update={"title": "Ó Súilleabháin and Nguyễn: " + "ĉ" * 60, "venue": "Zoë's hall " * 12})
    text = ics.calendar(uid="reg-1@plenary.example", event=event, stamp=STAMP, description="Línea\nsegunda")
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75
    props = properties(text)
    assert props["SUMMARY"] == "Ó Súilleabháin and Nguyễn: " + "ĉ" * 60
    assert props["LOCATION"] == ics.escape("Zoë's hall " * 12)
    assert props["DESCRIPTION"] == "Línea\\nsegunda"


def test_escape_handles_backslashes_before_other_characters() -> None:
    assert ics.escape("a\\b;c,d\ne") == "a\\\\b\\;c\\,d\\ne"
