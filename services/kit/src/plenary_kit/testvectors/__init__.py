"""Shared test vectors: the same files are checked by the Python and the JavaScript verifiers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TICKET_CODES = Path(__file__).with_name("ticket_codes.json")


def ticket_codes() -> dict[str, Any]:
    """The ticket-code vectors (see tests/unit/make_ticket_vectors.py, which writes them)."""
    loaded: dict[str, Any] = json.loads(TICKET_CODES.read_text(encoding="utf-8"))
    return loaded
