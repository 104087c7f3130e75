"""API tokens: stored hashed, accepted only as a well-formed Bearer header, revocable."""

from __future__ import annotations

import pytest
from sqlmodel import select

from server.db import Database
from server.errors import NotFound
from server.ids import hash_token, new_id
from server.models import ApiToken, Owner
from server.owners.tokens import create_api_token, owner_from_bearer, revoke_api_token


def _owner(db: Database, email: str) -> str:
    with db.write() as s:
        owner = Owner(id=new_id("own"), email=email)
        s.add(owner)
        return owner.id


def test_token_is_stored_hashed_with_a_short_prefix(db: Database) -> None:
    owner_id = _owner(db, "a@example.com")
    with db.write() as s:
        _, plaintext = create_api_token(s, owner_id, "  menu sync  ")
    assert plaintext.startswith("sa_") and len(plaintext) > 40
    with db.read() as s:
        stored = s.exec(select(ApiToken)).one()
        s.expunge(stored)
    assert stored.token_hash == hash_token(plaintext)
    assert plaintext not in (stored.token_hash, stored.prefix, stored.name)
    assert stored.prefix == plaintext[:10]
    assert stored.name == "menu sync"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer sa_wrong",
        "Token {t}",
        "Bearer {t}x",
        "Bearer " + "sa_" + "a" * 300,
    ],
)
def test_bad_headers_are_refused(db: Database, header: str | None) -> None:
    owner_id = _owner(db, "a@example.com")
    with db.write() as s:
        _, token = create_api_token(s, owner_id, "t")
    with db.write() as s:
        assert owner_from_bearer(s, header.format(t=token) if header else header) is None


@pytest.mark.parametrize("header", ["Bearer {t}", "bearer {t}", "  Bearer   {t}  "])
def test_valid_header_finds_the_owner_and_marks_use(db: Database, header: str) -> None:
    owner_id = _owner(db, "a@example.com")
    with db.write() as s:
        row, token = create_api_token(s, owner_id, "t")
    with db.write() as s:
        owner = owner_from_bearer(s, header.format(t=token))
        assert owner is not None and owner.id == owner_id
    with db.read() as s:
        assert s.get(ApiToken, row.id).last_used_at is not None  # type: ignore[union-attr]


def test_revoked_token_stops_working_and_only_its_owner_can_revoke(db: Database) -> None:
    owner_id = _owner(db, "a@example.com")
    other_id = _owner(db, "b@example.com")
    with db.write() as s:
        row, token = create_api_token(s, owner_id, "t")
    with db.write() as s, pytest.raises(NotFound):
        revoke_api_token(s, other_id, row.id)
    with db.write() as s:
        assert owner_from_bearer(s, f"Bearer {token}") is not None
        revoke_api_token(s, owner_id, row.id)
        revoke_api_token(s, owner_id, row.id)  # twice is harmless
    with db.write() as s:
        assert owner_from_bearer(s, f"Bearer {token}") is None
