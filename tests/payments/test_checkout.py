"""``POST /api/order/{shop_id}`` through Stripe's real SDK against the fake Stripe API."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.db import Database
from server.ids import sign
from server.orders.cart import option_labels
from server.payments.checkout import stripe_line_items
from tests.conftest import TEST_SECRET
from tests.fakes.fake_stripe import FakeStripe
from tests.payments.factory import ITEMS, TOTAL, get_order, make_catalog, make_order, make_shop


def test_session_parameters_are_exact(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    before = int(time.time())
    resp = stripe_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    [req] = fake_stripe.created()
    sid = next(iter(fake_stripe.sessions))
    order_token = sign(TEST_SECRET, "order", order.id)
    assert body == {
        "order_id": order.id,
        "checkout_url": f"https://checkout.stripe.com/c/pay/{sid}",
        "order_token": order_token,
        "expires_at": body["expires_at"],
    }
    assert req.headers["idempotency-key"] == f"checkout-{order.id}-v1-a0"
    assert "stripe-account" not in req.headers
    form = req.form
    expires_at = int(form.pop("expires_at"))
    assert before + 30 * 60 <= expires_at <= int(time.time()) + 31 * 60 + 1
    assert form == {
        "mode": "payment",
        "line_items": [
            {
                "quantity": "2",
                "price_data": {
                    "currency": "usd",
                    "unit_amount": "610",
                    "product_data": {"name": "Latte (Large, Oat)"},
                },
            },
            {
                "quantity": "1",
                "price_data": {
                    "currency": "usd",
                    "unit_amount": "300",
                    "product_data": {"name": "Espresso"},
                },
            },
        ],
        "client_reference_id": order.id,
        "metadata": {"order_id": order.id, "shop_id": shop.id},
        "payment_intent_data": {"metadata": {"order_id": order.id, "shop_id": shop.id}},
        "success_url": f"http://testserver/checkout/return?session_id={{CHECKOUT_SESSION_ID}}&order_id={order.id}&token={order_token}",
        "cancel_url": f"http://testserver/checkout/return?cancelled=1&order_id={order.id}&token={order_token}",
    }
    assert fake_stripe.sessions[sid]["amount_total"] == TOTAL
    stored = get_order(db, order.id)
    assert (stored.checkout_session_id, stored.payment_mode, stored.checkout_version) == (
        sid,
        "stripe",
        1,
    )


def test_double_click_gets_one_session(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    urls = {
        stripe_client.post(
            f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
        ).json()["checkout_url"]
        for _ in range(3)
    }
    assert len(urls) == 1
    assert len(fake_stripe.created()) == 1
    assert len(fake_stripe.sessions) == 1


async def test_simultaneous_clicks_get_one_session(
    stripe_app: Starlette, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    transport = httpx.ASGITransport(app=stripe_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
                )
                for _ in range(5)
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["checkout_url"] for r in responses}) == 1
    # Racing clicks may each reach Stripe, but with one idempotency key and identical parameters.
    assert {r.headers["idempotency-key"] for r in fake_stripe.created()} == {
        f"checkout-{order.id}-v1-a0"
    }
    assert len(fake_stripe.sessions) == 1


def test_changed_cart_expires_the_old_session(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    first = stripe_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    ).json()
    old_sid = get_order(db, order.id).checkout_session_id
    changed = [{**ITEMS[0], "quantity": 3, "unit_price": 1, "line_total": 3}, ITEMS[1]]
    resp = stripe_client.post(
        f"/api/order/{shop.id}",
        json={"order_id": order.id, "thread_token": token, "items": changed, "total": 4},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["checkout_url"] != first["checkout_url"]
    assert fake_stripe.expired_ids() == [old_sid]
    assert fake_stripe.sessions[old_sid]["status"] == "expired"
    second = fake_stripe.created()[-1]
    assert second.headers["idempotency-key"] == f"checkout-{order.id}-v2-a0"
    # Client prices are ignored: 3 x 610 + 300 from the catalog.
    assert second.form["line_items"][0]["price_data"]["unit_amount"] == "610"
    repriced = get_order(db, order.id)
    assert (repriced.version, repriced.total) == (2, 3 * 610 + 300)


def test_same_items_from_the_client_change_nothing(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    payload = {
        "order_id": order.id,
        "thread_token": token,
        "items": [{**i, "unit_price": 0} for i in ITEMS],
    }
    urls = {
        stripe_client.post(f"/api/order/{shop.id}", json=payload).json()["checkout_url"]
        for _ in range(2)
    }
    assert len(urls) == 1 and fake_stripe.expired_ids() == []
    assert get_order(db, order.id).version == 1


def test_expired_session_is_replaced_with_a_new_attempt(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    stripe_client.post(f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token})
    with db.write() as s:
        from server import models
        from server.ids import utcnow

        row = s.get(models.Order, order.id)
        assert row is not None
        row.checkout_expires_at = utcnow()  # as if the customer came back 30 minutes later
    resp = stripe_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    )
    assert resp.status_code == 200
    assert [r.headers["idempotency-key"] for r in fake_stripe.created()] == [
        f"checkout-{order.id}-v1-a0",
        f"checkout-{order.id}-v1-a1",
    ]


def test_connected_account_gets_the_session(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db, stripe_account_id="acct_1Connected")
    order, token = make_order(db, shop)
    assert (
        stripe_client.post(
            f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
        ).status_code
        == 200
    )
    assert fake_stripe.created()[0].headers["stripe-account"] == "acct_1Connected"


def test_wrong_thread_token_or_shop_is_not_found(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop, other = make_shop(db), make_shop(db)
    order, token = make_order(db, shop)
    cases: list[tuple[str, dict[str, Any]]] = [
        (shop.id, {"order_id": order.id, "thread_token": "not-the-token"}),
        (shop.id, {"order_id": order.id}),
        (other.id, {"order_id": order.id, "thread_token": token}),
        (shop.id, {"order_id": "ord_missing", "thread_token": token}),
    ]
    for shop_id, payload in cases:
        resp = stripe_client.post(f"/api/order/{shop_id}", json=payload)
        assert resp.status_code == 404, payload
        assert resp.json()["error"] == "NotFound"
    assert fake_stripe.requests == []


def test_paid_order_cannot_be_checked_out_again(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    order, token = make_order(db, shop, status="paid")
    resp = stripe_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    )
    assert resp.status_code == 409
    assert resp.json()["status"] == "paid"
    assert fake_stripe.requests == []


def test_demo_mode_shop_uses_demo_checkout_under_stripe(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db, payments_mode="demo")
    order, token = make_order(db, shop)
    body = stripe_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    ).json()
    assert body["checkout_url"].startswith(f"http://testserver/pay/demo/{order.id}?")
    assert fake_stripe.requests == []


def test_waiter_thread_token_opens_the_cashier_threads_order(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    from server import models
    from server.ids import hash_token, new_id, new_token

    shop = make_shop(db)
    order, _ = make_order(db, shop)
    waiter_token = new_token()
    with db.write() as s:
        waiter = models.Thread(
            id=new_id("thr"), shop_id=shop.id, token_hash=hash_token(waiter_token)
        )
        s.add(waiter)
        s.flush()
        cashier = s.get(models.Thread, order.thread_id)
        assert cashier is not None
        cashier.parent_id = waiter.id
    resp = stripe_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": waiter_token}
    )
    assert resp.status_code == 200


def test_stripe_product_names_read_yes_no_options_as_the_group() -> None:
    assert option_labels([("Size", "Large"), ("Warm it up", "No"), ("Extra shot", "yes")]) == [
        "Large",
        "Extra shot",
    ]
    order = SimpleNamespace(
        items=[
            {
                "name": "Butter Croissant",
                "quantity": 1,
                "unit_price": 325,
                "options": [{"group": "Warm it up", "choice": "No"}],
            },
            {
                "name": "Latte",
                "quantity": 1,
                "unit_price": 550,
                "options": [
                    {"group": "Size", "choice": "Large"},
                    {"group": "Extra shot", "choice": "Yes"},
                ],
            },
        ],
        currency="usd",
        tax=0,
        tip=0,
    )
    names = [i["price_data"]["product_data"]["name"] for i in stripe_line_items(order)]
    assert names == ["Butter Croissant", "Latte (Large, Extra shot)"]
