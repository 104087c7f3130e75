"""Owner API tokens: ``Authorization: Bearer sa_...`` for scripts and the CLI.

The plaintext is shown once, at creation; only its SHA-256 is stored, plus a short prefix so
the owner can tell tokens apart in a list.
"""

from __future__ import annotations

from sqlmodel import Session, select

from server.errors import NotFound
from server.ids import hash_token, new_id, new_token, utcnow
from server.models import ApiToken, Owner

TOKEN_PREFIX = "sa_"
SHOWN_PREFIX_LENGTH = 10


def create_api_token(session: Session, owner_id: str, name: str) -> tuple[ApiToken, str]:
    """A new token for ``owner_id``: returns the row and the plaintext (never stored)."""
    plaintext = TOKEN_PREFIX + new_token(32)
    row = ApiToken(
        id=new_id("tok"),
        owner_id=owner_id,
        name=name.strip()[:100],
        token_hash=hash_token(plaintext),
        prefix=plaintext[:SHOWN_PREFIX_LENGTH],
    )
    session.add(row)
    session.flush()
    return row, plaintext


def owner_from_bearer(session: Session, authorization_header: str | None) -> Owner | None:
    """The owner of a valid, unrevoked ``Bearer`` token, or None. Marks the token as used
    (saved when the caller's session commits)."""
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    owner = session.get(Owner, row.owner_id)
    if owner is not None:
        row.last_used_at = utcnow()
        session.add(row)
    return owner


def revoke_api_token(session: Session, owner_id: str, token_id: str) -> None:
    """Revoke one of the owner's tokens; NotFound when it is not theirs. Revoking twice is fine."""
    row = session.get(ApiToken, token_id)
    if row is None or row.owner_id != owner_id:
        raise NotFound("No such API token.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
