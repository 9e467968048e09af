"""Registration CSV files without I/O: reading an import, writing an export that spreadsheets cannot run."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from registration import csvfiles

QUESTIONS: list[dict[str, Any]] = [
    {"code": "photo_ok", "label": "Photos?", "kind": "yes_no", "required": True},
    {"code": "interests", "label": "Interests", "kind": "multiple_choice", "options": ["SEND", "Curriculum"]},
]
HEADER = (
    "name,email,organisation,role,phase,local_authority,ticket_type,sessions,dietary_needs,access_needs,answer:photo_ok"
)


def test_rows_keep_their_spreadsheet_numbers_and_blank_lines_are_ignored() -> None:
    text = "\ufeff" + HEADER + "\nA,a@x.example,O,R,,,,,,,yes\n,,,,,,,,,,\n\nB,b@x.example,O,R,,,,,,,no\n"
    parsed = csvfiles.parse_import(text, QUESTIONS)
    assert parsed.columns[0] == "name"
    assert [row[0] for row in parsed.rows] == [2, 5]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty_file"),
        ("name,email,organisation\n", "missing_column"),
        ("name,email,organisation,role,shoe_size\n", "unknown_column"),
        ("name,email,organisation,role,answer:not_asked\n", "unknown_column"),
        ("name,name,email,organisation,role\n", "duplicate_column"),
    ],
)
def test_a_file_with_a_bad_header_is_refused_whole(text: str, code: str) -> None:
    with pytest.raises(csvfiles.ImportRefused) as caught:
        csvfiles.parse_import(text, QUESTIONS)
    assert caught.value.code == code


def test_more_than_ten_thousand_rows_are_refused() -> None:
    text = "name,email,organisation,role\n" + "A,a@x.example,O,R\n" * (csvfiles.MAX_ROWS + 1)
    with pytest.raises(csvfiles.ImportRefused) as caught:
        csvfiles.parse_import(text, QUESTIONS)
    assert (caught.value.status, caught.value.code) == (413, "too_many_rows")


def test_a_row_becomes_a_registration_with_the_organisers_consent() -> None:
    columns = HEADER.split(",")
    cells = [
        "Gráinne O'Neill",
        "g.oneill@sefton.sch.example",
        "Sefton High",
        "headteacher",
        "Secondary",
        "Sefton",
        "",
        "budgets inclusion",
        "Vegetarian",
        "",
        "Yes",
    ]
    request = csvfiles.row_request(columns, cells, QUESTIONS)
    assert request.name == "Gráinne O'Neill"
    assert request.phase == "secondary"
    assert request.sessions == ["budgets", "inclusion"]
    assert request.ticket_type is None
    assert request.answers == {"photo_ok": True}
    assert request.consent is True


def test_a_bad_row_says_every_reason() -> None:
    columns = HEADER.split(",")
    with pytest.raises(ValueError) as caught:
        csvfiles.row_request(
            columns, ["", "not-an-email", "O", "R", "nursery school", "", "", "", "", "", "maybe"], QUESTIONS
        )
    reason = str(caught.value)
    for part in ("name", "email", "phase", "answer:photo_ok"):
        assert part in reason


def test_cells_that_look_like_formulas_are_defused() -> None:
    assert csvfiles.safe_cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    for risky in ("+1", "-1", "@SUM(A1)", "\tx"):
        assert csvfiles.safe_cell(risky).startswith("'")
    assert csvfiles.safe_cell("Zoë O'Neill") == "Zoë O'Neill"


def test_export_has_every_field_and_one_column_per_question() -> None:
    registration = {
        "_id": "reg-1",
        "status": "confirmed",
        "name": "=cmd|' /C calc'!A0",
        "email": "z@x.example",
        "organisation": "Halton Primary",
        "role": "SENCO",
        "phase": "primary",
        "local_authority": "Halton",
        "ticket_type": "delegate",
        "sessions": ["budgets"],
        "waiting_sessions": ["inclusion"],
        "dietary_needs": None,
        "access_needs": "Hearing loop",
        "answers": {"photo_ok": False, "interests": ["SEND"]},
        "consent": {"source": "delegate", "given_at": datetime(2027, 1, 5, tzinfo=UTC), "notice_version": "2026-09"},
        "created_at": datetime(2027, 1, 5, tzinfo=UTC),
        "updated_at": datetime(2027, 1, 6, tzinfo=UTC),
    }
    rows = list(csv.DictReader(io.StringIO(csvfiles.export_csv([registration], QUESTIONS))))
    assert rows[0]["name"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["answer:photo_ok"] == "no"
    assert rows[0]["answer:interests"] == "SEND"
    assert rows[0]["waiting_sessions"] == "inclusion"
    assert rows[0]["created_at"] == "2027-01-05T00:00:00+00:00"
    for column in ("phase", "local_authority", "dietary_needs", "access_needs", "status", "ticket_type", "sessions"):
        assert column in rows[0]
