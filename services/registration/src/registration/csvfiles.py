"""Registrations as CSV: reading an organiser's import file and writing a safe export. No I/O."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from plenary_kit import spreadsheet
from plenary_kit.errors import ApiError
from registration import domain

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
ANSWER_PREFIX = "answer:"
IMPORT_COLUMNS = (
    "name",
    "email",
    "organisation",
    "role",
    "phase",
    "local_authority",
    "ticket_type",
    "sessions",
    "dietary_needs",
    "access_needs",
)
REQUIRED_COLUMNS = ("name", "email", "organisation", "role")
_YES = frozenset({"yes", "y", "true", "1"})
_NO = frozenset({"no", "n", "false", "0"})


class ImportRefused(ApiError):
    """A file that cannot be imported at all (as opposed to a bad row, which is reported)."""


@dataclass(frozen=True)
class ImportFile:
    columns: list[str]
    # Each row: its spreadsheet row number (the header is row 1), then its cells.
    rows: list[list[Any]]


def parse_import(text: str, questions: Sequence[Mapping[str, Any]]) -> ImportFile:
    """Check the header and split the rows; refuses unknown or missing columns and oversized files."""
    try:
        reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
        header = next(reader, None)
        if header is None:
            raise ImportRefused(422, "empty_file", "The file is empty; it needs a header row and some rows.")
        columns = [h.strip().lower() for h in header]
        _check_header(columns, {q["code"] for q in questions})
        rows: list[list[Any]] = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            rows.append([number, *cells])
            if len(rows) > MAX_ROWS:
                raise ImportRefused(413, "too_many_rows", f"A file may hold at most {MAX_ROWS} rows.")
    except csv.Error as exc:
        raise ImportRefused(422, "invalid_csv", f"The file is not valid CSV: {exc}.") from exc
    return ImportFile(columns, rows)


def _check_header(columns: list[str], question_codes: set[str]) -> None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ImportRefused(422, "duplicate_column", f"Columns appear twice: {', '.join(repeated)}.")
    unknown = [
        c
        for c in columns
        if c not in IMPORT_COLUMNS and not (c.startswith(ANSWER_PREFIX) and c[len(ANSWER_PREFIX) :] in question_codes)
    ]
    if unknown:
        raise ImportRefused(
            422,
            "unknown_column",
            f"Unknown columns: {', '.join(unknown)}. Use {', '.join(IMPORT_COLUMNS)} and answer:<question code>.",
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ImportRefused(422, "missing_column", f"Missing columns: {', '.join(missing)}.")


def row_request(
    columns: Sequence[str], cells: Sequence[str], questions: Sequence[Mapping[str, Any]]
) -> domain.RegistrationCreate:
    """One row as a registration with the organiser's consent; ValueError says what is wrong with it."""
    if len(cells) > len(columns):
        raise ValueError(f"the row has {len(cells)} cells but the header has {len(columns)} columns")
    values = dict(zip(columns, [*cells, *[""] * (len(columns) - len(cells))], strict=True))
    by_code = {q["code"]: q for q in questions}
    problems: list[str] = []
    try:
        phase = domain.phase_from_text(values.get("phase", ""))
    except ValueError as exc:
        problems.append(f"phase: {exc}")
        phase = None
    answers: dict[str, Any] = {}
    for column, cell in values.items():
        if column.startswith(ANSWER_PREFIX) and cell.strip():
            code = column[len(ANSWER_PREFIX) :]
            try:
                answers[code] = _answer_from_cell(by_code[code], cell)
            except ValueError as exc:
                problems.append(f"{column}: {exc}")
    try:
        request = domain.RegistrationCreate(
            name=values.get("name", ""),
            email=values.get("email", "").strip(),
            organisation=values.get("organisation", ""),
            role=values.get("role", ""),
            phase=phase,
            local_authority=values.get("local_authority"),
            ticket_type=values.get("ticket_type", "").strip() or None,
            sessions=values.get("sessions", "").split(),
            dietary_needs=values.get("dietary_needs"),
            access_needs=values.get("access_needs"),
            answers=answers,
            consent=True,
        )
    except ValidationError as exc:
        problems += [f"{_column(e['loc'])}: {e['msg']}" for e in exc.errors()]
        request = None
    if problems or request is None:
        raise ValueError("; ".join(problems))
    return request


def _column(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "row"


def _answer_from_cell(question: Mapping[str, Any], cell: str) -> Any:
    kind = question["kind"]
    text = cell.strip()
    if kind == domain.QuestionKind.YES_NO:
        if text.casefold() in _YES:
            return True
        if text.casefold() in _NO:
            return False
        raise ValueError("must be yes or no")
    if kind == domain.QuestionKind.MULTIPLE_CHOICE:
        return [part.strip() for part in text.split(";") if part.strip()]
    return text


def safe_cell(value: Any) -> str:
    """A cell as text that a spreadsheet will not run as a formula (CSV injection)."""
    return spreadsheet.inert(_text(value))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    return str(value)


def export_columns(registrations: Sequence[Mapping[str, Any]], questions: Sequence[Mapping[str, Any]]) -> list[str]:
    codes = [q["code"] for q in questions]
    withdrawn = sorted({c for r in registrations for c in r.get("answers", {}) if c not in codes})
    return [
        "id",
        "status",
        *IMPORT_COLUMNS[:7],
        "sessions",
        "waiting_sessions",
        "dietary_needs",
        "access_needs",
        *(ANSWER_PREFIX + code for code in [*codes, *withdrawn]),
        "waitlist_position",
        "offer_expires_at",
        "consent_source",
        "consent_given_at",
        "consent_notice_version",
        "cancel_reason",
        "created_at",
        "updated_at",
        "cancelled_at",
    ]


def export_row(registration: Mapping[str, Any]) -> dict[str, Any]:
    consent = registration.get("consent") or {}
    row: dict[str, Any] = {
        "id": registration["_id"],
        **{name: registration.get(name) for name in IMPORT_COLUMNS},
        "status": registration["status"],
        # Space-separated, as the import reads them, so an export can be re-imported elsewhere.
        "sessions": " ".join(registration.get("sessions", [])),
        "waiting_sessions": " ".join(registration.get("waiting_sessions", [])),
        "waitlist_position": registration.get("waitlist_position"),
        "offer_expires_at": (registration.get("offer") or {}).get("expires_at"),
        "consent_source": consent.get("source", "delegate"),
        "consent_given_at": consent.get("given_at"),
        "consent_notice_version": consent.get("notice_version"),
        "cancel_reason": registration.get("cancel_reason"),
        "created_at": registration.get("created_at"),
        "updated_at": registration.get("updated_at"),
        "cancelled_at": registration.get("cancelled_at"),
    }
    for code, answer in registration.get("answers", {}).items():
        row[ANSWER_PREFIX + code] = answer
    return row


def export_csv(registrations: Sequence[Mapping[str, Any]], questions: Sequence[Mapping[str, Any]]) -> str:
    """Every registration with every built-in field and one `answer:<code>` column per question."""
    buffer = io.StringIO()
    columns = export_columns(registrations, questions)
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for registration in registrations:
        row = export_row(registration)
        writer.writerow({column: safe_cell(row.get(column)) for column in columns})
    return buffer.getvalue()
