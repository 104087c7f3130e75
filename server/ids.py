"""Identifiers, secret tokens and time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford-ish base32, lowercase
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[b % 32]) for b in range(256))


def new_id(prefix: str, length: int = 16) -> str:
    """``new_id("ord") -> "ord_3k9x..."``: random, URL-safe, prefixed by what it names."""
    # 256 is a multiple of 32, so the low five bits of each random byte are uniform.
    return f"{prefix}_" + secrets.token_bytes(length).translate(_BYTE_TO_CHAR).decode()


def new_token(nbytes: int = 32) -> str:
    """A bearer secret for a thread, a session, an API token or a magic link."""
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """Tokens are stored hashed (SHA-256 is enough for random 256-bit secrets)."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret_key: str, *parts: str) -> str:
    """A deterministic HMAC token (e.g. an order's status token from its id)."""
    msg = "\x1f".join(parts).encode()
    return hmac.new(secret_key.encode(), msg, hashlib.sha256).hexdigest()[:40]


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """``2026-01-01T12:00:00Z``, the format of every timestamp in JSON."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
