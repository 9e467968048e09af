"""Writes the shared ticket-code vectors that both verifiers (Python and JavaScript) must pass.

    .venv/bin/python tests/unit/make_ticket_vectors.py          # rewrite the file
    .venv/bin/python tests/unit/make_ticket_vectors.py --check  # fail if the file is stale

Keys come from fixed seeds and Ed25519 signatures are deterministic, so the output is the
same on every run; test_ticketing_codes.py checks the committed file matches it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plenary_kit import testvectors, ticketcode

EVENT_ID = "5d0c6a0e-8f3b-4b7e-9a51-2c7e1f4d9b21"
OTHER_EVENT_ID = "c2a1f7d4-6b3e-4e0a-8d25-9f1b7c3e5a60"


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def _ticket(n: int) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(f"ticket {n}".encode()).digest()[:16], version=4))


def _public(key: Ed25519PrivateKey) -> str:
    return base64.urlsafe_b64encode(ticketcode.public_bytes(key)).decode("ascii")


def _raw(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _flip(text: str, position: int) -> str:
    raw = bytearray(_raw(text))
    raw[position] ^= 0x01
    return ticketcode.text_of(bytes(raw))


def _legacy(event_id: str, ticket_id: str, ticket_type: str, key: Ed25519PrivateKey) -> str:
    """A format-1 code, as issued before workshop entitlements were carried."""
    type_bytes = ticket_type.encode("ascii")
    signed = (
        bytes([ticketcode.LEGACY_FORMAT]) + uuid.UUID(event_id).bytes + uuid.UUID(ticket_id).bytes
        + bytes.fromhex(ticketcode.key_id_of(ticketcode.public_bytes(key))) + bytes([len(type_bytes)]) + type_bytes
    )
    return ticketcode.text_of(signed + key.sign(signed))


def _resigned(text: str, key: Ed25519PrivateKey, change: int, value: int) -> str:
    """A properly signed code whose byte `change` is set to `value`: the signature is not what fails."""
    raw = bytearray(_raw(text)[: -ticketcode.SIGNATURE_BYTES])
    raw[change] = value
    return ticketcode.text_of(bytes(raw) + key.sign(bytes(raw)))


def vectors() -> dict[str, Any]:
    current, earlier, stranger, other_event = _key("current"), _key("earlier"), _key("stranger"), _key("other")
    workshops = ticketcode.encode(EVENT_ID, _ticket(1), "delegate", current, entitlements=[0, 2, 9])
    plain = ticketcode.encode(EVENT_ID, _ticket(2), "speaker", current)
    type_at = 38  # first byte of the ticket type in format 2
    longest = ticketcode.encode(
        EVENT_ID, _ticket(3), "x" * ticketcode.MAX_TICKET_TYPE, current,
        entitlements=range(ticketcode.MAX_ENTITLEMENT_BYTES * 8 - 8, ticketcode.MAX_ENTITLEMENT_BYTES * 8),
    )
    # The last character of this code carries one unused bit; setting it changes no byte.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    noncanonical = workshops[:-1] + alphabet[alphabet.index(workshops[-1]) ^ 1]
    assert _raw(noncanonical) == _raw(workshops)
    rotated = ticketcode.encode(EVENT_ID, _ticket(4), "delegate", earlier)
    cases: list[tuple[str, str, str]] = [
        ("valid with workshop entitlements", workshops, "valid"),
        ("valid without entitlements", plain, "valid"),
        ("valid, longest possible code", longest, "valid"),
        ("valid, signed with the event's earlier key", rotated, "valid"),
        ("valid, format 1 issued before entitlements", _legacy(EVENT_ID, _ticket(5), "delegate", current), "valid"),
        ("valid, lower case with a trailing newline", plain.lower() + "\r\n", "valid"),
        ("tampered signature", _flip(workshops, -1), "invalid_signature"),
        ("tampered ticket type", _flip(plain, type_at), "invalid_signature"),
        ("tampered event id", _flip(workshops, 5), "invalid_signature"),
        ("tampered ticket id", _flip(workshops, 20), "invalid_signature"),
        ("tampered entitlements", _flip(workshops, type_at + len("delegate") + 1), "invalid_signature"),
        ("other event", ticketcode.encode(OTHER_EVENT_ID, _ticket(6), "delegate", other_event), "wrong_event"),
        ("unknown key", ticketcode.encode(EVENT_ID, _ticket(7), "delegate", stranger), "invalid_signature"),
        ("revoked", ticketcode.encode(EVENT_ID, _ticket(8), "delegate", current), "revoked"),
        ("truncated by one byte", ticketcode.text_of(_raw(plain)[:-1]), "malformed"),
        ("truncated text", plain[:-9], "malformed"),
        ("truncated to its header", ticketcode.text_of(_raw(plain)[:37]), "malformed"),
        ("extended by one byte", ticketcode.text_of(_raw(plain) + b"\x00"), "malformed"),
        ("empty", "", "malformed"),
        ("not base32", "TICKET-FOR-ZOË!", "malformed"),
        ("non-canonical trailing bits", noncanonical, "malformed"),
        ("unknown format version, properly signed", _resigned(plain, current, 0, 3), "malformed"),
        ("entitlement bitmap ending in a zero byte, properly signed", _resigned(
            ticketcode.encode(EVENT_ID, _ticket(9), "abcdefgh", current, entitlements=[1]), current, 47, 0
        ), "malformed"),
    ]
    return {
        "description": (
            "Ticket codes and the verdict a door verifier for event_id, trusting keys and knowing the "
            "revoked ticket ids, must reach. Written by tests/unit/make_ticket_vectors.py."
        ),
        "event_id": EVENT_ID,
        "keys": {
            ticketcode.key_id_of(ticketcode.public_bytes(k)): _public(k) for k in (current, earlier)
        },
        "revoked": [_ticket(8)],
        "vectors": [_vector(name, text, verdict) for name, text, verdict in cases],
    }


def _vector(name: str, text: str, verdict: str) -> dict[str, Any]:
    vector: dict[str, Any] = {"name": name, "code": text, "verdict": verdict}
    if verdict == "valid":
        code = ticketcode.decode(text)
        vector["ticket"] = {
            "format": code.format,
            "event_id": code.event_id,
            "ticket_id": code.ticket_id,
            "key_id": code.key_id,
            "ticket_type": code.ticket_type,
            "entitlements": list(code.entitlements),
        }
    return vector


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed vectors are stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if testvectors.TICKET_CODES.read_text(encoding="utf-8") != text:
            print(f"{testvectors.TICKET_CODES} is stale; run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    testvectors.TICKET_CODES.write_text(text, encoding="utf-8")
    print(f"wrote {len(vectors()['vectors'])} vectors to {testvectors.TICKET_CODES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
