"""Ticketing's pure rules: per-event signing keys and how their public halves are published."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plenary_kit import ticketcode
from ticketing import domain
from ticketing.domain import RevocationReason, SigningKey
from ticketing.vault import MASTER_KEY_FILE, KeyUnreadable, Vault, master_key

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


def test_a_changed_ticket_type_or_workshop_choice_needs_a_new_ticket() -> None:
    ticket = {"ticket_type": "delegate", "sessions": ["workshop-a", "workshop-c"]}

    assert domain.needs_reissue(ticket, "speaker", ["workshop-a", "workshop-c"])
    assert domain.needs_reissue(ticket, "delegate", ["workshop-a"])
    assert not domain.needs_reissue(ticket, "delegate", ["workshop-c", "workshop-a", "workshop-a"])


def test_ticket_from_before_codes_carried_workshops_is_reissued_only_when_workshops_are_chosen() -> None:
    legacy = {"ticket_type": "delegate"}

    assert not domain.needs_reissue(legacy, "delegate", [])
    assert domain.needs_reissue(legacy, "delegate", ["workshop-b"])


def test_sessions_keep_their_numbers_when_more_are_added() -> None:
    numbered = ["workshop-a", "workshop-b"]

    fresh = domain.sessions_to_number(numbered, ["workshop-a", "panel", "workshop-b", "panel", "tour"])

    assert fresh == ["panel", "tour"]
    assert domain.entitlements([*numbered, *fresh], ["tour", "workshop-b"]) == [1, 3]


def test_revocation_page_is_complete_when_it_reaches_the_current_version() -> None:
    rows = [{"_id": f"t{n}", "revocation_version": n} for n in (4, 5, 6)]

    whole = domain.revocation_page("e", 3, 6, rows, limit=10)
    partial = domain.revocation_page("e", 3, 9, rows, limit=3)
    nothing_new = domain.revocation_page("e", 9, 9, [], limit=3)

    assert (whole.version, whole.complete) == (6, True)
    assert (partial.version, partial.complete) == (6, False)
    assert (nothing_new.version, nothing_new.complete, nothing_new.rows) == (9, True, [])


def test_sealed_private_key_opens_only_with_its_master_key_and_for_its_own_row() -> None:
    master = Vault(bytes(range(32)))
    key = SigningKey.generate(EVENT_ID, NOW)

    sealed = master.seal(key.private_key, EVENT_ID, key.key_id)

    assert key.private_key not in sealed
    assert master.unseal(sealed, EVENT_ID, key.key_id, master.master_id) == key.private_key
    with pytest.raises(KeyUnreadable, match="sealed under master key"):
        Vault(bytes(32)).unseal(sealed, EVENT_ID, key.key_id, master.master_id)
    with pytest.raises(KeyUnreadable, match="altered"):
        master.unseal(sealed, EVENT_ID, "00000000", master.master_id)
    with pytest.raises(KeyUnreadable, match="altered"):
        master.unseal(sealed[:-1] + bytes([sealed[-1] ^ 1]), EVENT_ID, key.key_id, master.master_id)


def test_master_key_is_made_once_in_var_readable_only_by_its_owner(tmp_path: Path) -> None:
    first = master_key(None, tmp_path)

    assert master_key(None, tmp_path) == first
    assert len(first) == 32
    assert (tmp_path / MASTER_KEY_FILE).stat().st_mode & 0o077 == 0
    configured = base64.urlsafe_b64encode(bytes(range(32))).decode()
    assert master_key(configured, tmp_path) == bytes(range(32))
