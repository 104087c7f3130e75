"""Fixtures of the catalog tests: an owner with an API token."""

from __future__ import annotations

import pytest

from server.db import Database
from server.ids import new_id
from server.models import Owner
from server.owners.tokens import create_api_token


@pytest.fixture
def owner_token(db: Database) -> tuple[str, str]:
    """(owner_id, plaintext API token)."""
    with db.write() as s:
        owner = Owner(id=new_id("own"), email=f"{new_id('o')}@example.com")
        s.add(owner)
        s.flush()
        _, token = create_api_token(s, owner.id, "tests")
    return owner.id, token
