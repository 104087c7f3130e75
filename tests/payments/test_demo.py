"""Demo payments end to end over HTTP: checkout, the demo page, paying, the return page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.testclient import TestClient

from server.db import Database
from server.settings import Settings
from tests.payments.conftest import RecordingBus
from tests.payments.factory import (
    TOTAL,
    get_order,
    make_order,
    make_shop,
    order_token,
    status_changes,
)


def open_checkout(client: TestClient, db: Database) -> tuple[str, dict[str, str], str]:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    body = client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    ).json()
    return order.id, body, shop.id


def test_demo_checkout_pays_through_the_webhook_path(
    demo_client: TestClient, db: Database, pay_settings: Settings, bus: RecordingBus
) -> None:
    order_id, body, shop_id = open_checkout(demo_client, db)
    assert body["checkout_url"].startswith(f"http://testserver/pay/demo/{order_id}?token=")

    page = demo_client.get(body["checkout_url"])
    assert page.status_code == 200
    assert "no money moves" in page.text
    assert "$15.20" in page.text and "Latte" in page.text and "Large, Oat" in page.text
    assert "Pay (demo)" in page.text and "Cancel" in page.text
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce is not None

    paid = demo_client.post(
        f"/pay/demo/{order_id}",
        data={"token": body["order_token"], "action": "pay"},
        follow_redirects=False,
    )
    assert paid.status_code == 303
    assert paid.headers["location"].startswith("/checkout/return?session_id=demo_")

    landing = demo_client.get(paid.headers["location"])
    assert landing.status_code == 200
    assert "Your order is paid" in landing.text

    status = demo_client.get(
        f"/api/order/status/{order_id}", params={"token": body["order_token"]}
    ).json()
    assert (status["status"], status["total"]) == ("paid", TOTAL)
    assert status["paid_at"]
    written = json.loads((Path(pay_settings.orders_dir) / shop_id / f"{order_id}.json").read_text())
    assert written["status"] == "paid"
    assert bus.count(f"shop:{shop_id}", "order_paid") == 1

    # Paying twice (back button, double submit) changes nothing.
    again = demo_client.post(
        f"/pay/demo/{order_id}",
        data={"token": body["order_token"], "action": "pay"},
        follow_redirects=False,
    )
    assert again.status_code == 303
    assert status_changes(db, order_id) == [("awaiting_payment", "paid")]
    assert bus.count(f"shop:{shop_id}", "order_paid") == 1


def test_demo_cancel_leaves_the_order_unpaid(demo_client: TestClient, db: Database) -> None:
    order_id, body, _ = open_checkout(demo_client, db)
    resp = demo_client.post(
        f"/pay/demo/{order_id}",
        data={"token": body["order_token"], "action": "cancel"},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    landing = demo_client.get(resp.headers["location"])
    assert "came back without paying" in landing.text
    assert get_order(db, order_id).status == "awaiting_payment"


def test_demo_page_needs_the_order_token(demo_client: TestClient, db: Database) -> None:
    order_id, _body, _ = open_checkout(demo_client, db)
    assert demo_client.get(f"/pay/demo/{order_id}", params={"token": "nope"}).status_code == 404
    resp = demo_client.post(
        f"/pay/demo/{order_id}", data={"token": "nope", "action": "pay"}, follow_redirects=False
    )
    assert resp.status_code == 404
    assert get_order(db, order_id).status == "awaiting_payment"


def test_no_demo_page_for_a_stripe_order(demo_client: TestClient, db: Database) -> None:
    shop = make_shop(db)
    order, _ = make_order(db, shop, payment_mode="stripe", checkout_session_id="cs_test_x")
    token = order_token(order.id)
    resp = demo_client.post(
        f"/pay/demo/{order.id}", data={"token": token, "action": "pay"}, follow_redirects=False
    )
    assert resp.status_code == 404
    assert get_order(db, order.id).status == "awaiting_payment"


def test_expired_demo_checkout_cannot_be_paid_but_a_new_one_can(
    demo_client: TestClient, db: Database
) -> None:
    from server import models
    from server.ids import utcnow

    shop = make_shop(db)
    order, thread_token = make_order(db, shop)
    start = {"order_id": order.id, "thread_token": thread_token}
    body = demo_client.post(f"/api/order/{shop.id}", json=start).json()
    with db.write() as s:
        row = s.get(models.Order, order.id)
        assert row is not None
        row.checkout_expires_at = utcnow()  # 30 minutes later
    page = demo_client.get(body["checkout_url"])
    assert "has expired" in page.text and "Pay (demo)" not in page.text
    pay = {"token": body["order_token"], "action": "pay"}
    assert (
        demo_client.post(f"/pay/demo/{order.id}", data=pay, follow_redirects=False).status_code
        == 409
    )
    assert get_order(db, order.id).status == "awaiting_payment"

    fresh = demo_client.post(f"/api/order/{shop.id}", json=start).json()
    assert fresh["checkout_url"] != body["checkout_url"]
    assert (
        demo_client.post(f"/pay/demo/{order.id}", data=pay, follow_redirects=False).status_code
        == 303
    )
    assert get_order(db, order.id).status == "paid"


def test_the_customer_is_told_the_shops_short_order_number(
    demo_client: TestClient, db: Database, pay_settings: Settings, bus: RecordingBus
) -> None:
    """The shop's second order is number 2: on the demo page, the return page, in the status
    JSON, the order file and the owner's live message; the long id stays the identifier."""
    shop = make_shop(db)
    make_order(db, shop)
    order, thread_token = make_order(db, shop)
    body = demo_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": thread_token}
    ).json()
    assert body["order_id"] == order.id

    page = demo_client.get(body["checkout_url"])
    assert "Order number 2" in page.text and order.id not in page.text
    paid = demo_client.post(
        f"/pay/demo/{order.id}",
        data={"token": body["order_token"], "action": "pay"},
        follow_redirects=False,
    )
    landing = demo_client.get(paid.headers["location"])
    assert 'Your order number is <strong id="order-number">2</strong>' in landing.text

    status = demo_client.get(
        f"/api/order/status/{order.id}", params={"token": body["order_token"]}
    ).json()
    assert (status["order_id"], status["number"], status["status"]) == (order.id, 2, "paid")
    written = json.loads((Path(pay_settings.orders_dir) / shop.id / f"{order.id}.json").read_text())
    assert (written["order_id"], written["number"]) == (order.id, 2)
    [owner_message] = [m for c, m in bus.published if c == f"shop:{shop.id}"]
    assert owner_message["order"]["number"] == 2
