"""Bearer and manage-token checks shared by the services' APIs."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from plenary_kit.errors import ApiError


def new_token() -> str:
    """A fresh bearer secret with 192 bits of randomness."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_admin(authorization: str | None, admin_token: str) -> bool:
    token = bearer(authorization)
    return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())


def require_admin(authorization: str | None, admin_token: str) -> None:
    """Missing or wrong credentials are 401; a service that can tell a valid token of
    another kind (a door device's) answers 403 for it itself."""
    if not is_admin(authorization, admin_token):
        raise ApiError(401, "unauthenticated", "An organiser token is required.")
