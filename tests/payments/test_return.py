"""``GET /checkout/return``: the popup's landing page checks the session itself, so a paid order
shows as paid even before the webhook, and the later webhook is still recorded."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlmodel import select
from starlette.testclient import TestClient

from server import models
from server.db import Database
from tests.fakes.fake_stripe import FakeStripe, make_event, signed_event
from tests.payments.conftest import WHSEC, RecordingBus
from tests.payments.factory import get_order, make_order, make_shop, order_token, status_changes


def checkout(client: TestClient, db: Database) -> tuple[models.Order, str]:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    assert (
        client.post(
            f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
        ).status_code
        == 200
    )
    sid = get_order(db, order.id).checkout_session_id
    assert sid
    return order, sid


def return_url(order_id: str, sid: str | None = None, **extra: str) -> str:
    params = {"order_id": order_id, "token": order_token(order_id), **extra}
    if sid:
        params["session_id"] = sid
    return "/checkout/return?" + "&".join(f"{k}={v}" for k, v in params.items())


def page_message(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="checkout-result"[^>]*>(.*?)</script>', html, re.S
    )
    assert match, "the page carries the message for its opener"
    return json.loads(match.group(1))


def test_return_before_the_webhook_pays_and_the_webhook_is_still_recorded(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database, bus: RecordingBus
) -> None:
    order, sid = checkout(stripe_client, db)
    session = fake_stripe.complete(sid)

    page = stripe_client.get(return_url(order.id, sid))
    assert page.status_code == 200
    assert "Your order is paid" in page.text
    data = page_message(page.text)
    assert data["message"] == {
        "type": "shop-assist:order_paid",
        "order_id": order.id,
        "status": "paid",
    }
    assert data["origin"] == "http://testserver"
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce and f'nonce="{nonce.group(1)}"' in page.text
    assert get_order(db, order.id).payment_intent_id == session["payment_intent"]

    body, headers = signed_event(make_event("checkout.session.completed", session), WHSEC)
    resp = stripe_client.post("/api/stripe/webhook", content=body, headers=headers)
    assert resp.json() == {"received": True, "duplicate": False, "outcome": "already paid"}
    with db.read() as s:
        assert [e.outcome for e in s.exec(select(models.PaymentEvent)).all()] == ["already paid"]
    assert status_changes(db, order.id) == [("awaiting_payment", "paid")]
    assert bus.count(f"shop:{order.shop_id}", "order_paid") == 1

    # Reloading the return page does nothing more either.
    stripe_client.get(return_url(order.id, sid))
    assert bus.count(f"shop:{order.shop_id}", "order_paid") == 1


def test_return_while_payment_is_processing_shows_pending(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    order, sid = checkout(stripe_client, db)
    fake_stripe.complete(sid, payment_status="unpaid")  # e.g. a bank debit still clearing
    page = stripe_client.get(return_url(order.id, sid))
    assert "Confirming your payment" in page.text
    assert page_message(page.text)["message"]["type"] == "shop-assist:order_pending"
    assert get_order(db, order.id).status == "awaiting_payment"


def test_return_with_wrong_amount_does_not_pay(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    order, sid = checkout(stripe_client, db)
    fake_stripe.complete(sid, amount_total=1)
    stripe_client.get(return_url(order.id, sid))
    after = get_order(db, order.id)
    assert after.status == "awaiting_payment" and after.flagged


def test_cancelled_return_says_nothing_was_paid(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    order, _sid = checkout(stripe_client, db)
    page = stripe_client.get(return_url(order.id, cancelled="1"))
    assert "came back without paying" in page.text
    assert page_message(page.text)["message"]["type"] == "shop-assist:order_cancelled"
    assert get_order(db, order.id).status == "awaiting_payment"


def test_another_orders_session_cannot_pay_this_one(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    _first, sid_first = checkout(stripe_client, db)
    second, _ = checkout(stripe_client, db)
    fake_stripe.complete(sid_first)
    stripe_client.get(return_url(second.id, sid_first))
    assert get_order(db, second.id).status == "awaiting_payment"


def test_return_with_a_wrong_token_is_not_found(stripe_client: TestClient, db: Database) -> None:
    shop = make_shop(db)
    order, _ = make_order(db, shop)
    page = stripe_client.get(f"/checkout/return?order_id={order.id}&token=wrong&session_id=cs_x")
    assert page.status_code == 404
    assert "Order not found" in page.text
