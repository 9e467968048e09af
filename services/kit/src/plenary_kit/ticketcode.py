"""The signed ticket code carried in the QR: compact bytes, Ed25519 signature, base32 text.

Layout (format 2, written by `encode`), all integers unsigned; see docs/ticket-code.md:

    0        1  format version (2)
    1       16  event id (UUID bytes)
    17      16  ticket id (UUID bytes)
    33       4  key id
    37       1  length n of the ticket type code (1 .. 32)
    38       n  ticket type code (printable ASCII)
    38+n     1  length m of the workshop entitlement bitmap (0 .. 56)
    39+n     m  bitmap: bit i (byte i // 8, mask 0x80 >> i % 8) set = entitled to session number i;
                its last byte is never zero
    39+n+m  64  Ed25519 signature over bytes 0 .. 39+n+m

Format 1, issued before workshop entitlements were carried, is format 2 without the
bitmap and its length byte; it is still read, so tickets issued then keep admitting.

The text form is RFC 4648 base32 without padding: upper-case letters and digits only,
so a QR encodes it in alphanumeric mode; the longest code is 191 bytes, 306 characters,
inside QR version 10 at level M (311). Only the canonical text of the bytes is accepted
(surrounding whitespace and letter case aside), so no two texts carry one code. No personal
data is in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = 2
LEGACY_FORMAT = 1
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 4
MAX_TICKET_TYPE = 32
# 56 bytes number 448 workshops; with the longest ticket type the code still fits QR version 10-M.
MAX_ENTITLEMENT_BYTES = 56
MAX_SESSION_NUMBER = MAX_ENTITLEMENT_BYTES * 8 - 1
_HEADER = 1 + 16 + 16 + KEY_ID_BYTES
# Longer text cannot be a code; refusing it first keeps a pasted novel cheap to reject.
MAX_TEXT = 320


class MalformedCode(ValueError):
    """Text that is not a ticket code of a known format."""


class Verdict(StrEnum):
    """What a door verifier concludes from a code alone (names as in the scan verdicts)."""

    VALID = "valid"
    MALFORMED = "malformed"
    WRONG_EVENT = "wrong_event"
    INVALID_SIGNATURE = "invalid_signature"
    REVOKED = "revoked"


@dataclass(frozen=True)
class TicketCode:
    event_id: str
    ticket_id: str
    key_id: str
    ticket_type: str
    signed: bytes
    signature: bytes
    # Session numbers (see the event's published numbering) the holder may enter.
    entitlements: tuple[int, ...] = ()
    format: int = FORMAT


@dataclass(frozen=True)
class Checked:
    verdict: Verdict
    # The decoded code, for every verdict but `malformed`; trust its fields only when `valid`.
    code: TicketCode | None = None


def key_id_of(public_key: bytes) -> str:
    """Eight hex digits naming a public key; carried in every code it signed."""
    return hashlib.sha256(public_key).hexdigest()[: KEY_ID_BYTES * 2]


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def _is_type_code(raw: bytes) -> bool:
    return 0 < len(raw) <= MAX_TICKET_TYPE and all(0x21 <= b <= 0x7E for b in raw)


def entitlement_bitmap(session_numbers: Iterable[int]) -> bytes:
    """The shortest bitmap with a bit set for each session number."""
    numbers = set(session_numbers)
    if any(not 0 <= n <= MAX_SESSION_NUMBER for n in numbers):
        raise ValueError(f"session numbers must be 0 to {MAX_SESSION_NUMBER}")
    if not numbers:
        return b""
    bitmap = bytearray(max(numbers) // 8 + 1)
    for n in numbers:
        bitmap[n // 8] |= 0x80 >> (n % 8)
    return bytes(bitmap)


def _numbers(bitmap: bytes) -> tuple[int, ...]:
    return tuple(i for i in range(len(bitmap) * 8) if bitmap[i // 8] & (0x80 >> (i % 8)))


def text_of(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def encode(
    event_id: str,
    ticket_id: str,
    ticket_type: str,
    private_key: Ed25519PrivateKey,
    entitlements: Iterable[int] = (),
) -> str:
    """The text of a format-2 code for this ticket, signed with `private_key`."""
    type_bytes = ticket_type.encode("ascii")  # UnicodeEncodeError is a ValueError
    if not _is_type_code(type_bytes):
        raise ValueError("ticket type code must be 1 to 32 printable ASCII characters")
    bitmap = entitlement_bitmap(entitlements)
    key_id = bytes.fromhex(key_id_of(public_bytes(private_key)))
    signed = (
        bytes([FORMAT])
        + uuid.UUID(event_id).bytes
        + uuid.UUID(ticket_id).bytes
        + key_id
        + bytes([len(type_bytes)])
        + type_bytes
        + bytes([len(bitmap)])
        + bitmap
    )
    return text_of(signed + private_key.sign(signed))


def _raw_bytes(text: str) -> bytes:
    cleaned = text.strip().upper()
    if not cleaned or len(cleaned) > MAX_TEXT:
        raise MalformedCode("empty or oversized code")
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise MalformedCode("not base32") from exc
    # Unused trailing bits must be zero, or two texts would carry the same code.
    if text_of(raw) != cleaned:
        raise MalformedCode("not canonical base32")
    return raw


def decode(text: str) -> TicketCode:
    """Parse a code's text without checking its signature; raises MalformedCode on anything odd."""
    raw = _raw_bytes(text)
    if len(raw) < _HEADER + 1 or raw[0] not in (FORMAT, LEGACY_FORMAT):
        raise MalformedCode("unknown format or truncated")
    type_length = raw[_HEADER]
    type_end = _HEADER + 1 + type_length
    type_bytes = raw[_HEADER + 1 : type_end]
    if len(type_bytes) != type_length or not _is_type_code(type_bytes):
        raise MalformedCode("bad ticket type")
    bitmap = b""
    end = type_end
    if raw[0] == FORMAT:
        if len(raw) <= type_end:
            raise MalformedCode("truncated")
        bitmap_length = raw[type_end]
        end = type_end + 1 + bitmap_length
        bitmap = raw[type_end + 1 : end]
        if bitmap_length > MAX_ENTITLEMENT_BYTES or (bitmap and bitmap[-1] == 0):
            raise MalformedCode("bad entitlements")
    if len(raw) != end + SIGNATURE_BYTES:
        raise MalformedCode("bad length")
    return TicketCode(
        event_id=str(uuid.UUID(bytes=raw[1:17])),
        ticket_id=str(uuid.UUID(bytes=raw[17:33])),
        key_id=raw[33:_HEADER].hex(),
        ticket_type=type_bytes.decode("ascii"),
        signed=raw[:end],
        signature=raw[end:],
        entitlements=_numbers(bitmap),
        format=raw[0],
    )


def verify(code: TicketCode, public_key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(code.signature, code.signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def check(
    text: str, event_id: str, keys: Mapping[str, bytes], revoked: Container[str] = frozenset()
) -> Checked:
    """Everything a door can decide offline about a code, in the order that makes forgery useless.

    `keys` maps key ids to public keys the verifier trusts (its event's, current and rotated).
    A code naming a known key is verified before its event is compared, so an altered event id
    reads as `invalid_signature`; a code whose key is unknown and whose event is another one is
    `wrong_event`, and one of this event with an unknown key `invalid_signature`.
    """
    try:
        code = decode(text)
    except MalformedCode:
        return Checked(Verdict.MALFORMED)
    public_key = keys.get(code.key_id)
    if public_key is None:
        verdict = Verdict.WRONG_EVENT if code.event_id != event_id else Verdict.INVALID_SIGNATURE
        return Checked(verdict, code)
    if not verify(code, public_key):
        return Checked(Verdict.INVALID_SIGNATURE, code)
    if code.event_id != event_id:
        return Checked(Verdict.WRONG_EVENT, code)
    if code.ticket_id in revoked:
        return Checked(Verdict.REVOKED, code)
    return Checked(Verdict.VALID, code)
