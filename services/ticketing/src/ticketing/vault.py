"""Private signing keys sealed at rest (AES-256-GCM) under the ticketing master key.

A copy of the database alone, a backup say, must not let anybody sign tickets: the
master key lives outside it, in PLENARY_TICKET_MASTER_KEY or, for the embedded stack,
in var/ticket-master.key, readable only by its owner.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from plenary_kit import sealing

MASTER_KEY_FILE = "ticket-master.key"
_NONCE_BYTES = 12


class KeyUnreadable(RuntimeError):
    """A sealed private key that this master key cannot open: altered, or sealed under another master key."""


def master_key(configured: str | None, var: Path) -> bytes:
    """The configured master key, else the one in var/, made at first start."""
    if configured:
        return sealing.parse_key(configured)
    return sealing.parse_key(sealing.ensure_secret_file(var / MASTER_KEY_FILE, sealing.new_key_text))


class Vault:
    def __init__(self, master: bytes) -> None:
        self._aead = AESGCM(master)
        # Names the master key in each sealed row, so a wrong key is reported as such, not as tampering.
        self.master_id = hashlib.sha256(b"plenary ticket master key" + master).hexdigest()[:8]

    def seal(self, private_key: bytes, event_id: str, key_id: str) -> bytes:
        """Bound to its event and key id, so a sealed key cannot be moved to another key's row."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, private_key, _context(event_id, key_id))

    def unseal(self, sealed: bytes, event_id: str, key_id: str, sealed_by: str | None) -> bytes:
        if sealed_by is not None and sealed_by != self.master_id:
            raise KeyUnreadable(
                f"signing key {key_id} was sealed under master key {sealed_by}, not {self.master_id}; "
                "set PLENARY_TICKET_MASTER_KEY to the master key it was sealed with"
            )
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _context(event_id, key_id))
        except (InvalidTag, ValueError) as exc:
            raise KeyUnreadable(f"signing key {key_id} cannot be unsealed: it was altered") from exc


def _context(event_id: str, key_id: str) -> bytes:
    return f"plenary signing key {event_id} {key_id}".encode()
