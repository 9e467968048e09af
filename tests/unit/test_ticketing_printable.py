"""The printable PDF ticket: what it says, in the event's time zone, for names in any script."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plenary_kit import ticketcode
from ticketing import printable

EVENT_ID = "6f1c2b1e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"
TICKET_ID = "0b9e7c55-2f41-4a3e-8d6c-5e4f3a2b1c0d"


def _ticket(name: str | None = "Nguyễn Thị Ó Súilleabháin") -> printable.PrintedTicket:
    return printable.PrintedTicket(
        event_title="Education Leadership in Challenging Times",
        venue="Liverpool Guild of Students",
        starts_at=datetime(2027, 3, 4, 9, 30, tzinfo=UTC),
        ends_at=datetime(2027, 3, 4, 16, 0, tzinfo=UTC),
        timezone="Europe/London",
        delegate_name=name,
        ticket_type="future-heads",
        code=ticketcode.encode(EVENT_ID, TICKET_ID, "future-heads", Ed25519PrivateKey.generate(), [0, 2]),
        ticket_id=TICKET_ID,
        workshops=["Leading through change", "Inclusion and SEN"],
    )


def test_event_time_reads_in_the_events_own_time_zone() -> None:
    summer = datetime(2027, 6, 10, 8, 0, tzinfo=UTC)

    assert printable.when(summer, datetime(2027, 6, 10, 15, 0, tzinfo=UTC), "Europe/London") == (
        "Thursday 10 June 2027, 09:00–16:00"
    )
    assert printable.when(summer, datetime(2027, 6, 11, 15, 0, tzinfo=UTC), "Europe/London").endswith(
        "to Friday 11 June 2027, 16:00"
    )
    assert printable.when(None, None, "Europe/London") == "Date to be confirmed"
    assert printable.when(summer, None, "Not/AZone") == "Thursday 10 June 2027, 08:00"


def test_ticket_type_code_reads_as_words() -> None:
    assert printable.ticket_type_label("future-heads") == "Future heads"
    assert printable.ticket_type_label("teacher_educator") == "Teacher educator"


def _page_text(document: bytes) -> bytes:
    """The PDF's content streams inflated, where the drawn text and QR squares live."""
    streams = []
    for chunk in document.split(b"stream\n")[1:]:
        body = chunk.split(b"\nendstream", 1)[0]
        try:
            streams.append(zlib.decompress(body))
        except zlib.error:
            streams.append(body)
    return b"".join(streams)


def test_pdf_ticket_embeds_a_unicode_font_for_any_delegate_name() -> None:
    if printable.font_path() is None:
        pytest.skip("no Unicode font on this machine (Debian: fonts-dejavu-core)")

    document = printable.render(_ticket())

    assert document.startswith(b"%PDF-")
    assert b"/FontFile2" in document
    # The QR is drawn as filled rectangles ("re f"), not pasted as a bitmap.
    content = _page_text(document)
    assert content.count(b" re f") > 100
    assert b"/Subtype /Image" not in document


def test_pdf_ticket_falls_back_to_the_core_font_with_accents_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(printable, "font_path", lambda: None)

    document = printable.render(_ticket())

    content = _page_text(document)
    assert b"Nguyen Th" in content
    assert b"Suilleabh" in content or "Súilleabh".encode("latin-1") in content
    assert b"Future heads" in content


def test_pdf_ticket_without_a_known_name_still_renders() -> None:
    assert printable.render(_ticket(name=None)).startswith(b"%PDF-")
