"""Secrets shared with agents: school enrollment tokens and device credentials.

Both are ``secrets.token_urlsafe(32)``; the collector keeps only their SHA-256 hashes,
so a copy of the database does not let anyone speak for a school or a device.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ROLES = ("lab", "office", "teacher", "other")


def new_secret() -> str:
    """A fresh random token or credential (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a secret is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(secret: str, stored_hash: str | None) -> bool:
    """True when ``secret`` hashes to ``stored_hash``, compared in constant time."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_device_id() -> str:
    """A device id as design.md shows it: ``d_`` and 16 hex digits."""
    return "d_" + secrets.token_hex(8)


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
