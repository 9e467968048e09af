"""Sealing a secret for another service (AES-256-GCM under a shared key), e.g. the emailed manage link.

The manage token is stored only hashed by registration; the notifications service needs
the token itself to put it in the delegate's email, so it travels sealed in the event and
the outbox, readable only by services holding PLENARY_LINK_KEY.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_NONCE_BYTES = 12


class SealBroken(ValueError):
    """The sealed text was altered, truncated, or sealed under another key."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key(text: str) -> bytes:
    key = _unb64(text.strip())
    if len(key) != KEY_BYTES:
        raise ValueError("PLENARY_LINK_KEY must be 32 bytes, URL-safe base64")
    return key


def ensure_key(var: Path) -> bytes:
    """The link key from var/link.key, made at first start (the embedded stack's default)."""
    return parse_key(ensure_secret_file(var / "link.key", new_key_text))


def new_key_text() -> str:
    return _b64(AESGCM.generate_key(bit_length=256))


def ensure_secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a secret kept in a file readable only by its owner, creating it once if missing."""
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process made it first; theirs is the one everybody uses.
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def seal(secret: str, key: bytes, context: str) -> str:
    """`context` (e.g. the registration id) is bound in, so a sealed token cannot be moved to another record."""
    nonce = os.urandom(_NONCE_BYTES)
    return _b64(nonce + AESGCM(key).encrypt(nonce, secret.encode(), context.encode()))


def unseal(sealed: str, key: bytes, context: str) -> str:
    try:
        raw = _unb64(sealed)
        return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise SealBroken("cannot unseal") from exc
