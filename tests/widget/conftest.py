"""Fixtures for the widget: a shop, and helpers to make one with options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.db import Database
from server.ids import new_id
from server.models import Shop

MakeShop = Callable[..., Shop]


@pytest.fixture
def make_shop(db: Database) -> MakeShop:
    """``make_shop(name=..., allowed_origins=[...], ...)`` stores a shop and returns it."""

    def make(**fields: Any) -> Shop:
        fields.setdefault("name", "Corner Café")
        fields.setdefault("slug", new_id("s", 8).lower().replace("_", "-"))
        fields.setdefault("currency", "usd")
        with db.write() as session:
            shop = Shop(id=new_id("shp"), **fields)
            session.add(shop)
            session.flush()
            session.expunge(shop)
        return shop

    return make


@pytest.fixture
def shop(make_shop: MakeShop) -> Shop:
    return make_shop(greeting="Welcome! Coffee or tea?")
