"""The printable PDF ticket: event, date, venue, delegate, ticket type and workshops, and the QR code.

The QR is drawn as vector squares from the code's module matrix, so it stays sharp at any
printer resolution. Names such as Nguyễn or Ó Súilleabháin need a Unicode font: DejaVu Sans
(Debian's fonts-dejavu-core, installed in the service image) or PLENARY_TICKET_FONT; without
one, text falls back to the PDF core font with accents folded away, never to an error.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from fpdf import FPDF

from plenary_kit import dates, qr

_FONT_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)
_BOLD_SUFFIX: Final = "-Bold"
QR_MM: Final = 70.0


@dataclass(frozen=True)
class PrintedTicket:
    """What the paper shows; nothing here is in the code itself."""

    event_title: str
    venue: str
    starts_at: datetime | None
    ends_at: datetime | None
    timezone: str
    delegate_name: str | None
    ticket_type: str
    code: str
    ticket_id: str
    workshops: list[str] = field(default_factory=list)


def font_path() -> Path | None:
    configured = os.environ.get("PLENARY_TICKET_FONT")
    for candidate in ([configured] if configured else []) + list(_FONT_CANDIDATES):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def when(starts_at: datetime | None, ends_at: datetime | None, timezone: str) -> str:
    """"Thursday 4 March 2027, 09:00–16:30" in the event's own time zone."""
    if starts_at is None:
        return "Date to be confirmed"
    zone = dates.zone(timezone)
    if ends_at is None:
        local = starts_at.astimezone(zone)
        return f"{dates.day(local)}, {local:%H:%M}"
    return dates.span(starts_at, ends_at, zone)


def ticket_type_label(code: str) -> str:
    """`future-heads` reads as "Future heads" on paper."""
    words = code.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def _folded(text: str) -> str:
    """Latin-1 text for the core font: accents dropped where the letter has no Latin-1 form."""
    out = []
    for char in text:
        try:
            char.encode("latin-1")
            out.append(char)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode("latin-1")
            out.append("".join(c for c in base if not unicodedata.combining(c)) or "?")
    return "".join(out)


class _Page:
    def __init__(self) -> None:
        self.pdf = FPDF(orientation="P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(auto=False)
        self.pdf.set_creator("Plenary")
        self.pdf.set_producer("Plenary")
        font = font_path()
        self.unicode = font is not None
        if font is not None:
            self.pdf.add_font("Ticket", "", str(font))
            bold = font.with_name(font.stem + _BOLD_SUFFIX + font.suffix)
            self.pdf.add_font("Ticket", "B", str(bold if bold.is_file() else font))
            self.family = "Ticket"
        else:
            self.family = "Helvetica"
        self.pdf.add_page()

    def text(self, value: str, size: float, *, bold: bool = False, gap: float = 2.0) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)
        # Left-aligned: fpdf2 justifies by default, which stretches a wrapped title's spaces.
        self.pdf.multi_cell(
            0, size * 0.5, value if self.unicode else _folded(value), align="L", new_x="LMARGIN", new_y="NEXT"
        )
        self.pdf.ln(gap)


def render(ticket: PrintedTicket) -> bytes:
    page = _Page()
    pdf = page.pdf
    pdf.set_title(f"Ticket: {ticket.event_title}" if page.unicode else _folded(f"Ticket: {ticket.event_title}"))
    pdf.set_margins(20, 20, 20)
    pdf.set_xy(20, 20)
    pdf.set_draw_color(40, 40, 40)
    pdf.set_line_width(0.4)
    pdf.rect(12, 12, 186, 200)

    page.text("Your ticket", 11)
    page.text(ticket.event_title, 20, bold=True, gap=4)
    page.text(when(ticket.starts_at, ticket.ends_at, ticket.timezone), 12)
    page.text(ticket.venue, 12, gap=6)
    page.text(ticket.delegate_name or "Delegate", 16, bold=True)
    page.text(f"Ticket type: {ticket_type_label(ticket.ticket_type)}", 12)
    if ticket.workshops:
        page.text("Workshops: " + "; ".join(ticket.workshops), 11)

    # Below the text, but never so low that it runs into the footer.
    _draw_qr(pdf, ticket.code, x=(210 - QR_MM) / 2, y=min(max(pdf.get_y() + 4, 105), 122))
    pdf.set_xy(20, 196)
    page.text(
        "Show this code at the door, on paper or on your phone. It admits one person; please do not share it.",
        9,
        gap=1,
    )
    page.text(f"Ticket {ticket.ticket_id}", 8)
    return bytes(pdf.output())


def _draw_qr(pdf: FPDF, code: str, x: float, y: float) -> None:
    modules = qr.modules(code)
    cell = QR_MM / len(modules)
    pdf.set_fill_color(0, 0, 0)
    for row, line in enumerate(modules):
        column = 0
        while column < len(line):
            if not line[column]:
                column += 1
                continue
            # Runs of dark modules become one rectangle: a smaller file, and no hairline seams.
            start = column
            while column < len(line) and line[column]:
                column += 1
            pdf.rect(x + start * cell, y + row * cell, (column - start) * cell, cell, style="F")
