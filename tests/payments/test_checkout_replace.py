"""A changed cart replaces the order's checkout: every earlier session that may still take money
is closed at Stripe, on the account it was opened on, before the new one is handed out, and a
session that a newer checkout replaced is never handed out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from server import models
from server.db import Database
from server.ids import utcnow
from server.payments import checkout
from tests.fakes.fake_stripe import FakeStripe
from tests.payments.factory import ITEMS, get_order, make_catalog, make_order, make_shop

THREE_LATTES = [{**ITEMS[0], "quantity": 3}, ITEMS[1]]
FOUR_LATTES = [{**ITEMS[0], "quantity": 4}, ITEMS[1]]


def pay(
    client: TestClient, shop: models.Shop, order: models.Order, token: str, items: Any = None
) -> httpx.Response:
    body: dict[str, Any] = {"order_id": order.id, "thread_token": token}
    if items is not None:
        body["items"] = items
    return client.post(f"/api/order/{shop.id}", json=body)


def open_sessions(fake: FakeStripe) -> list[str]:
    return [sid for sid, s in fake.sessions.items() if s["status"] == "open"]


def url_of(fake: FakeStripe, sid: str) -> str:
    return str(fake.sessions[sid]["url"])


def update_shop(db: Database, shop_id: str, **fields: Any) -> None:
    with db.write() as s:
        shop = s.get(models.Shop, shop_id)
        assert shop is not None
        for key, value in fields.items():
            setattr(shop, key, value)
        s.add(shop)


def test_an_old_session_stripe_could_not_close_is_closed_before_the_new_one_is_handed_out(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    assert pay(stripe_client, shop, order, token).status_code == 200
    first = get_order(db, order.id).checkout_session_id
    assert first is not None

    fake_stripe.expire_outage = True  # Stripe opens sessions but cannot close the old one
    failed = pay(stripe_client, shop, order, token, THREE_LATTES)
    assert failed.status_code == 502
    assert "try again" in failed.json()["detail"]
    assert "checkout_url" not in failed.json()
    assert fake_stripe.sessions[first]["status"] == "open"

    fake_stripe.expire_outage = False
    resp = pay(stripe_client, shop, order, token, THREE_LATTES)  # the customer tries again
    assert resp.status_code == 200, resp.text
    assert fake_stripe.sessions[first]["status"] == "expired"  # the old cart can no longer pay
    [current] = open_sessions(fake_stripe)
    assert resp.json()["checkout_url"] == url_of(fake_stripe, current)
    assert fake_stripe.sessions[current]["amount_total"] == 3 * 610 + 300
    assert get_order(db, order.id).checkout_session_id == current


def test_a_session_made_but_never_handed_out_is_closed_by_a_later_checkout(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    pay(stripe_client, shop, order, token)
    fake_stripe.expire_outage = True
    assert pay(stripe_client, shop, order, token, THREE_LATTES).status_code == 502
    assert len(open_sessions(fake_stripe)) == 2
    fake_stripe.expire_outage = False
    with db.write() as s:  # the customer comes back after the reservation went stale
        row = s.get(models.Order, order.id)
        assert row is not None
        row.checkout_expires_at = utcnow() + timedelta(minutes=20)

    resp = pay(stripe_client, shop, order, token, THREE_LATTES)
    assert resp.status_code == 200
    assert len(fake_stripe.sessions) == 3
    [current] = open_sessions(fake_stripe)
    assert resp.json()["checkout_url"] == url_of(fake_stripe, current)


def test_a_checkout_replaced_while_stripe_made_it_is_not_handed_out(
    stripe_client: TestClient,
    fake_stripe: FakeStripe,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two tabs: the cart changes to three lattes, and while Stripe makes that session the
    other tab changes it to four and pays. The three-latte session is closed, not handed out."""
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    pay(stripe_client, shop, order, token)
    first = get_order(db, order.id).checkout_session_id
    state = stripe_client.app.state  # type: ignore[attr-defined]
    payments = state.payments
    create = payments.create_checkout
    newer: list[dict[str, Any]] = []

    async def create_while_the_other_tab_checks_out(*args: Any, **kwargs: Any) -> Any:
        session = await create(*args, **kwargs)
        if not newer:
            newer.append({})
            body = {"order_id": order.id, "thread_token": token, "items": FOUR_LATTES}
            result, _ = await checkout.start_checkout(
                state.settings, state.db, payments, shop.id, body, limiter=state.limiter
            )
            newer[0] = result
        return session

    monkeypatch.setattr(payments, "create_checkout", create_while_the_other_tab_checks_out)
    resp = pay(stripe_client, shop, order, token, THREE_LATTES)

    assert resp.status_code == 409, resp.text
    assert "changed" in resp.json()["detail"]
    assert "checkout_url" not in resp.json()
    [current] = open_sessions(fake_stripe)  # the first and the three-latte sessions are closed
    assert current != first and fake_stripe.sessions[current]["amount_total"] == 4 * 610 + 300
    assert newer[0]["checkout_url"] == url_of(fake_stripe, current)
    stored = get_order(db, order.id)
    assert (stored.checkout_session_id, stored.total) == (current, 4 * 610 + 300)


def test_the_old_session_is_closed_on_the_account_it_was_opened_on(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db, stripe_account_id="acct_1Before")
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    pay(stripe_client, shop, order, token)
    first = get_order(db, order.id).checkout_session_id
    assert first is not None
    update_shop(db, shop.id, stripe_account_id="acct_1After")  # the owner moved the shop

    resp = pay(stripe_client, shop, order, token, THREE_LATTES)
    assert resp.status_code == 200
    assert fake_stripe.sessions[first]["status"] == "expired"
    [expire] = [r for r in fake_stripe.requests if r.path.endswith(f"/{first}/expire")]
    assert expire.headers["stripe-account"] == "acct_1Before"
    assert fake_stripe.created()[-1].headers["stripe-account"] == "acct_1After"


def test_a_stripe_session_is_closed_when_the_shop_switched_to_demo_checkout(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    pay(stripe_client, shop, order, token)
    first = get_order(db, order.id).checkout_session_id
    assert first is not None
    update_shop(db, shop.id, payments_mode="demo")

    resp = pay(stripe_client, shop, order, token, THREE_LATTES)
    assert resp.status_code == 200
    assert resp.json()["checkout_url"].startswith(f"http://testserver/pay/demo/{order.id}?")
    assert fake_stripe.sessions[first]["status"] == "expired"
