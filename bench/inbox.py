"""Reads the embedded SMTP sink's Maildir as it fills: who got which kind of email, and when it arrived."""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path


@dataclass(frozen=True)
class Arrival:
    recipient: str
    carries_ticket: bool
    # When the sink wrote the file (seconds since the epoch).
    at: float


class Inbox:
    """Each call to `new_arrivals` reads only the messages delivered since the last call."""

    def __init__(self, maildir: Path) -> None:
        self._maildir = maildir
        self._seen: set[str] = set()
        self._headers = BytesHeaderParser(policy=default)

    def new_arrivals(self) -> list[Arrival]:
        found = []
        for folder in ("new", "cur"):
            directory = self._maildir / folder
            if not directory.is_dir():
                continue
            for path in directory.iterdir():
                # The sink may move a message from new/ to cur/; its unique name stays the same.
                unique = path.name.split(":", 1)[0]
                if unique in self._seen:
                    continue
                self._seen.add(unique)
                try:
                    raw, at = path.read_bytes(), path.stat().st_mtime
                except FileNotFoundError:
                    self._seen.discard(unique)
                    continue
                headers = self._headers.parsebytes(raw)
                # The sink records the SMTP envelope recipient; the ticket is the email's PNG image.
                recipient = str(headers.get("Delivered-To", "")).strip().lower()
                found.append(Arrival(recipient, b"image/png" in raw, at))
        return found
