"""The database layer: what its errors may say."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from server import models
from server.db import Database


def test_a_database_error_does_not_carry_the_values_it_was_writing(db: Database) -> None:
    """Errors are logged with their traceback: customers' details and secrets must not be in it."""
    secret = "whsec_do-not-log-me-0123456789"
    with db.write() as s:
        s.add(models.Shop(id="shp_a", name="A", slug="a", notify_webhook_secret=secret))
    with pytest.raises(IntegrityError) as info, db.write() as s:
        s.add(models.Shop(id="shp_a", name="A", slug="a", notify_webhook_secret=secret))
    assert secret not in str(info.value)
