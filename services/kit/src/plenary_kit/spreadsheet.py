"""CSV that is safe to open in a spreadsheet: no cell is ever run as a formula (CSV injection)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

# A cell starting with one of these would be read as a formula by Excel, LibreOffice or Sheets.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """The text, with a leading apostrophe where a spreadsheet would otherwise run it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as CSV with a header, every cell made inert; None becomes an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: inert("" if row.get(column) is None else str(row[column])) for column in columns})
    return out.getvalue()
