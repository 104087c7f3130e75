"""New checkout sessions are limited per order and per client (a changed cart expires one Stripe
session and opens another); a double click is never counted. Over the limit: 429, the error
JSON, ``Retry-After``, and the order as it was."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.db import Database
from server.events import MemoryBus
from server.payments import checkout as checkout_module
from server.settings import Settings
from tests import services
from tests.fakes.fake_stripe import FakeStripe
from tests.payments.factory import ITEMS, get_order, make_catalog, make_order, make_shop

LIMIT = checkout_module.SESSIONS_PER_ORDER


def with_quantity(n: int) -> list[dict[str, Any]]:
    return [{**ITEMS[0], "quantity": n}, ITEMS[1]]


def post(client: TestClient, shop_id: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"/api/order/{shop_id}", json=body)


def test_changing_the_cart_past_the_limit_is_429_and_changes_nothing(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    body = {"order_id": order.id, "thread_token": token}
    for n in range(1, LIMIT + 1):  # the first checkout and LIMIT - 1 cart changes
        resp = post(stripe_client, shop.id, {**body, "items": with_quantity(n)})
        assert resp.status_code == 200, resp.text
    assert len(fake_stripe.created()) == LIMIT
    before = get_order(db, order.id)

    resp = post(stripe_client, shop.id, {**body, "items": with_quantity(LIMIT + 1)})
    assert resp.status_code == 429
    data = resp.json()
    assert data["error"] == "RateLimited"
    assert "Too many new checkouts for this order" in data["detail"]
    assert 0 < data["retry_after"] <= checkout_module.SESSION_WINDOW_SECONDS
    assert resp.headers["retry-after"] == str(data["retry_after"])
    # Nothing was half-done: same cart, same open session, no Stripe call.
    after = get_order(db, order.id)
    assert (after.version, after.total, after.items) == (before.version, before.total, before.items)
    assert (after.checkout_session_id, after.checkout_url) == (
        before.checkout_session_id,
        before.checkout_url,
    )
    assert fake_stripe.sessions[str(after.checkout_session_id)]["status"] == "open"
    assert len(fake_stripe.created()) == LIMIT
    # The open session is still handed out to a click on the same cart.
    same = post(stripe_client, shop.id, {**body, "items": with_quantity(LIMIT)})
    assert same.status_code == 200 and same.json()["checkout_url"] == before.checkout_url


def test_double_clicks_are_never_counted(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    body = {"order_id": order.id, "thread_token": token}
    for n in range(1, LIMIT + 1):
        urls = {
            post(stripe_client, shop.id, {**body, "items": with_quantity(n)}).json()["checkout_url"]
            for _ in range(4)  # each cart clicked four times
        }
        assert len(urls) == 1
    assert len(fake_stripe.created()) == LIMIT  # LIMIT new sessions, 3 * LIMIT double clicks


def test_one_client_opening_many_orders_is_limited(
    stripe_settings: Settings, fake_stripe: FakeStripe, db: Database
) -> None:
    app = create_app(stripe_settings.with_(checkout_rate_per_ip=2), db=db, bus=MemoryBus())
    shop = make_shop(db)
    codes = []
    with TestClient(app, base_url="http://testserver") as client:
        for _ in range(3):
            order, token = make_order(db, shop)
            codes.append(post(client, shop.id, {"order_id": order.id, "thread_token": token}))
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert "from this address" in codes[2].json()["detail"]
    assert "retry-after" in codes[2].headers
    assert len(fake_stripe.created()) == 2


@pytest.fixture
def two_workers(stripe_settings: Settings, db: Database) -> Iterator[tuple[TestClient, TestClient]]:
    """Two app instances sharing one database and one Redis limiter, like two workers."""
    from server.redis_bus import RedisRateLimiter

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    apps: list[Starlette] = []
    for _ in range(2):
        app = create_app(stripe_settings, db=db, bus=MemoryBus())
        app.state.limiter = RedisRateLimiter(services.redis_url(), prefix=prefix)
        apps.append(app)
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        yield a, b


@pytest.mark.redis
def test_the_limit_holds_across_workers(
    two_workers: tuple[TestClient, TestClient], fake_stripe: FakeStripe, db: Database
) -> None:
    a, b = two_workers
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    body = {"order_id": order.id, "thread_token": token}
    for n in range(1, LIMIT + 1):  # alternating workers
        client = a if n % 2 else b
        assert post(client, shop.id, {**body, "items": with_quantity(n)}).status_code == 200
    for client in (a, b):
        resp = post(client, shop.id, {**body, "items": with_quantity(LIMIT + 1)})
        assert resp.status_code == 429
    assert len(fake_stripe.created()) == LIMIT
