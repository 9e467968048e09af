"""Signed ticket codes: what ticketing issues decodes to the same ticket, and no altered byte passes."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plenary_kit import qr, ticketcode

EVENT_ID = "6f1c2b1e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"
TICKET_ID = "0b9e7c55-2f41-4a3e-8d6c-5e4f3a2b1c0d"


@pytest.fixture(scope="module")
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _raw(code: str) -> bytes:
    return base64.b32decode(code + "=" * (-len(code) % 8))


def _text(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


@pytest.mark.parametrize("ticket_type", ["delegate", "speaker", "future-heads_2026", "x", "a" * 32])
def test_code_round_trips_to_the_ticket_it_was_issued_for(private_key: Ed25519PrivateKey, ticket_type: str) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, ticket_type, private_key)

    decoded = ticketcode.decode(code)

    assert decoded.event_id == EVENT_ID
    assert decoded.ticket_id == TICKET_ID
    assert decoded.ticket_type == ticket_type
    assert decoded.key_id == ticketcode.key_id_of(ticketcode.public_bytes(private_key))
    assert ticketcode.verify(decoded, ticketcode.public_bytes(private_key))


def test_code_is_qr_alphanumeric_and_fits_version_10(private_key: Ed25519PrivateKey) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, "a" * ticketcode.MAX_TICKET_TYPE, private_key)

    assert set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert qr.version_of(code) <= qr.MAX_VERSION


def test_code_reads_the_same_in_lower_case_and_with_spaces_around(private_key: Ed25519PrivateKey) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key)

    decoded = ticketcode.decode(f"  {code.lower()}\n")

    assert ticketcode.verify(decoded, ticketcode.public_bytes(private_key))


@pytest.mark.parametrize("flip", [0x01, 0x80, 0xFF])
def test_every_altered_byte_is_malformed_or_fails_verification(private_key: Ed25519PrivateKey, flip: int) -> None:
    public = ticketcode.public_bytes(private_key)
    raw = _raw(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key))

    for position in range(len(raw)):
        tampered = bytearray(raw)
        tampered[position] ^= flip
        try:
            decoded = ticketcode.decode(_text(bytes(tampered)))
        except ticketcode.MalformedCode:
            continue
        assert not ticketcode.verify(decoded, public), f"byte {position} altered with {flip:#04x} still verified"


def test_truncated_or_extended_code_is_malformed(private_key: Ed25519PrivateKey) -> None:
    raw = _raw(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key))

    for altered in (raw[:-1], raw + b"\x00", raw[: len(raw) // 2]):
        with pytest.raises(ticketcode.MalformedCode):
            ticketcode.decode(_text(altered))


@pytest.mark.parametrize("text", ["", "   ", "not a ticket!", "0189", "A" * 401, "MFRGG==="])
def test_text_that_is_not_a_code_is_malformed(text: str) -> None:
    with pytest.raises(ticketcode.MalformedCode):
        ticketcode.decode(text)


def test_code_signed_by_another_key_is_rejected(private_key: Ed25519PrivateKey) -> None:
    impostor = Ed25519PrivateKey.generate()
    forged = ticketcode.decode(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", impostor))

    assert not ticketcode.verify(forged, ticketcode.public_bytes(private_key))
    assert forged.key_id != ticketcode.key_id_of(ticketcode.public_bytes(private_key))


def test_code_moved_to_another_event_fails_verification(private_key: Ed25519PrivateKey) -> None:
    raw = bytearray(_raw(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key)))
    raw[1:17] = uuid.uuid4().bytes

    moved = ticketcode.decode(_text(bytes(raw)))

    assert not ticketcode.verify(moved, ticketcode.public_bytes(private_key))


def test_public_key_that_is_not_ed25519_fails_verification(private_key: Ed25519PrivateKey) -> None:
    decoded = ticketcode.decode(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key))

    assert not ticketcode.verify(decoded, b"\x00" * 31)
