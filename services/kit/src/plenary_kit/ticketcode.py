"""The signed ticket code carried in the QR: compact bytes, Ed25519 signature, base32 text.

Layout (format 1), all integers big-endian; see docs/ticket-code.md:

    0      1  format version (1)
    1     16  event id (UUID bytes)
    17    16  ticket id (UUID bytes)
    33     4  key id
    37     1  length n of the ticket type code
    38     n  ticket type code (ASCII)
    38+n  64  Ed25519 signature over bytes 0 .. 38+n

The text form is RFC 4648 base32 without padding: upper-case letters and digits
only, so a QR encodes it in alphanumeric mode. No personal data is in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = 1
SIGNATURE_BYTES = 64
_FIXED = 1 + 16 + 16 + 4 + 1
MAX_TICKET_TYPE = 32


class MalformedCode(ValueError):
    """Text that is not a ticket code of a known format."""


@dataclass(frozen=True)
class TicketCode:
    event_id: str
    ticket_id: str
    key_id: str
    ticket_type: str
    signed: bytes
    signature: bytes


def key_id_of(public_key: bytes) -> str:
    """Eight hex digits naming a public key; carried in every code it signed."""
    return hashlib.sha256(public_key).hexdigest()[:8]


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def encode(event_id: str, ticket_id: str, ticket_type: str, private_key: Ed25519PrivateKey) -> str:
    type_bytes = ticket_type.encode("ascii")
    if not 0 < len(type_bytes) <= MAX_TICKET_TYPE:
        raise ValueError("ticket type code must be 1 to 32 ASCII characters")
    key_id = bytes.fromhex(key_id_of(public_bytes(private_key)))
    signed = (
        bytes([FORMAT])
        + uuid.UUID(event_id).bytes
        + uuid.UUID(ticket_id).bytes
        + key_id
        + bytes([len(type_bytes)])
        + type_bytes
    )
    raw = signed + private_key.sign(signed)
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def decode(text: str) -> TicketCode:
    """Parse a code's text without checking its signature; raises MalformedCode on anything odd."""
    cleaned = text.strip().upper()
    if not cleaned or len(cleaned) > 400:
        raise MalformedCode("empty or oversized code")
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise MalformedCode("not base32") from exc
    if len(raw) < _FIXED + 1 + SIGNATURE_BYTES or raw[0] != FORMAT:
        raise MalformedCode("unknown format or truncated")
    type_length = raw[_FIXED - 1]
    end = _FIXED + type_length
    if type_length == 0 or type_length > MAX_TICKET_TYPE or len(raw) != end + SIGNATURE_BYTES:
        raise MalformedCode("bad length")
    try:
        ticket_type = raw[_FIXED:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedCode("ticket type not ASCII") from exc
    return TicketCode(
        event_id=str(uuid.UUID(bytes=raw[1:17])),
        ticket_id=str(uuid.UUID(bytes=raw[17:33])),
        key_id=raw[33:37].hex(),
        ticket_type=ticket_type,
        signed=raw[:end],
        signature=raw[end:],
    )


def verify(code: TicketCode, public_key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(code.signature, code.signed)
    except (InvalidSignature, ValueError):
        return False
    return True
