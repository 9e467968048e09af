"""Logs never carry tokens, ticket codes or full email addresses."""

from __future__ import annotations

from plenary_kit.logs import scrub


def test_secret_fields_are_redacted_and_addresses_masked() -> None:
    line = scrub(
        None,
        "info",
        {
            "event": "sent to zoe.olubayo@school.example",
            "manage_token": "s3cr3t",
            "code": "AHM3BAE7HIIE3WVOJBFF",
            "authorization": "Bearer abc",
            "status_code": 201,
            "gate": "Main hall",
        },
    )

    assert line["event"] == "sent to z…@school.example"
    assert line["manage_token"] == line["code"] == line["authorization"] == "[redacted]"
    assert line["status_code"] == 201
    assert line["gate"] == "Main hall"
