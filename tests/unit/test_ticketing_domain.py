"""Ticketing's pure rules: per-event signing keys and how their public halves are published."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from plenary_kit import ticketcode
from ticketing import domain
from ticketing.domain import RevocationReason, SigningKey

EVENT_ID = "6f1c2b1e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"
TICKET_ID = "0b9e7c55-2f41-4a3e-8d6c-5e4f3a2b1c0d"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_generated_key_is_named_by_its_public_half() -> None:
    key = SigningKey.generate(EVENT_ID, NOW)

    assert len(key.public_key) == 32
    assert len(key.private_key) == 32
    assert key.key_id == ticketcode.key_id_of(key.public_key)
    assert key.active


def test_each_event_key_is_fresh() -> None:
    assert SigningKey.generate(EVENT_ID, NOW).public_key != SigningKey.generate(EVENT_ID, NOW).public_key


def test_ticket_signed_with_event_key_verifies_with_its_published_public_key() -> None:
    key = SigningKey.generate(EVENT_ID, NOW)

    code = ticketcode.decode(key.sign_ticket(TICKET_ID, "delegate"))
    published = base64.urlsafe_b64decode(key.public_key_text)

    assert (code.event_id, code.ticket_id, code.key_id, code.ticket_type) == (
        EVENT_ID,
        TICKET_ID,
        key.key_id,
        "delegate",
    )
    assert ticketcode.verify(code, published)


def test_ticket_signed_for_one_event_does_not_verify_with_another_events_key() -> None:
    key = SigningKey.generate(EVENT_ID, NOW)
    other = SigningKey.generate("a3d5c7e9-1b2d-4f6a-8c0e-2d4f6a8c0e1b", NOW)

    code = ticketcode.decode(key.sign_ticket(TICKET_ID, "delegate"))

    assert not ticketcode.verify(code, other.public_key)


def test_public_key_text_is_url_safe_base64_of_the_raw_bytes() -> None:
    raw = bytes(range(250, 256)) + bytes(26)

    text = domain.public_key_text(raw)

    assert "+" not in text and "/" not in text
    assert base64.urlsafe_b64decode(text) == raw


def test_now_keeps_the_millisecond_precision_mongodb_stores() -> None:
    moment = domain.now()

    assert moment.tzinfo is not None
    assert moment.microsecond % 1000 == 0


def test_erasure_is_its_own_revocation_reason_and_every_other_cancellation_is_a_cancellation() -> None:
    assert domain.revocation_reason("erased") is RevocationReason.ERASED
    assert domain.revocation_reason("cancelled") is RevocationReason.CANCELLED
    assert domain.revocation_reason("offer_expired") is RevocationReason.CANCELLED


def test_only_a_changed_ticket_type_needs_a_new_ticket() -> None:
    assert domain.needs_reissue("delegate", "speaker")
    assert not domain.needs_reissue("delegate", "delegate")
