"""Dates as delegates read them: the event's own zone, British order, no leading zeros."""

from __future__ import annotations

from datetime import UTC, datetime

from plenary_kit import dates

LONDON = dates.zone("Europe/London")


def test_a_one_day_event_reads_as_one_date_and_a_time_range_in_local_time() -> None:
    start, end = datetime(2027, 6, 17, 8, 30, tzinfo=UTC), datetime(2027, 6, 17, 15, 0, tzinfo=UTC)
    assert dates.span(start, end, LONDON) == "Thursday 17 June 2027, 09:30–16:00"
    assert dates.span(start, end, LONDON, with_zone=True) == "Thursday 17 June 2027, 09:30–16:00 (BST)"


def test_a_residential_programme_names_both_days() -> None:
    start, end = datetime(2027, 3, 4, 9, 0, tzinfo=UTC), datetime(2027, 3, 5, 16, 30, tzinfo=UTC)
    assert dates.span(start, end, LONDON) == "Thursday 4 March 2027, 09:00 to Friday 5 March 2027, 16:30"


def test_a_deadline_and_an_unknown_zone() -> None:
    deadline = datetime(2027, 1, 8, 17, 0, tzinfo=UTC)
    assert dates.moment(deadline, LONDON, with_zone=True) == "Friday 8 January 2027 at 17:00 (GMT)"
    assert dates.moment(deadline, dates.zone("Not/AZone")) == "Friday 8 January 2027 at 17:00"
