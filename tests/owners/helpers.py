"""Helpers for owner tests: sign up through the real pages, read CSRF tokens, make shops,
catalogs and orders straight in the database."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from server.db import Database
from server.ids import new_id, utcnow
from server.models import Catalog, Order, Product, Shop

PASSWORD = "correct horse 42"
_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


def form_token(client: TestClient, path: str = "/login") -> str:
    """The CSRF token of a form page (pre-sign-in forms: the double-submit cookie is set)."""
    r = client.get(path)
    m = _FIELD.search(r.text)
    assert m, f"no csrf_token field on {path}"
    return m.group(1)


def session_csrf(client: TestClient) -> str:
    """The signed-in session's CSRF token, from any dashboard page."""
    r = client.get("/dashboard")
    assert r.status_code == 200, r.text
    m = _META.search(r.text)
    assert m and m.group(1)
    return m.group(1)


def signup(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = form_token(client, "/signup")
    return client.post(
        "/signup",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = form_token(client, "/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def owner_id_of(db: Database, email: str) -> str:
    from server.owners.service import find_owner

    with db.read() as s:
        owner = find_owner(s, email)
        assert owner is not None
        return owner.id


def make_shop(db: Database, owner_id: str, name: str = "Cafe", currency: str = "usd") -> str:
    from server.shops.service import create_shop

    with db.write() as s:
        return create_shop(s, name=name, currency=currency, owner_id=owner_id).id


def make_catalog(
    db: Database, shop_id: str, products: list[tuple[str, str, int]] | None = None
) -> None:
    """A live catalog version with ``(product_id, name, price)`` products."""
    products = products or [("latte", "Latte", 450), ("scone", "Scone", 300)]
    with db.write() as s:
        shop = s.get(Shop, shop_id)
        assert shop is not None
        version = (shop.live_catalog_version or 0) + 1
        catalog = Catalog(shop_id=shop_id, version=version, product_count=len(products))
        s.add(catalog)
        s.flush()
        for pos, (pid, name, price) in enumerate(products):
            s.add(
                Product(catalog_id=catalog.id, product_id=pid, position=pos, name=name, price=price)
            )
        shop.live_catalog_version = version
        s.add(shop)


def make_order(
    db: Database,
    shop_id: str,
    *,
    status: str = "paid",
    name: str = "Ana",
    total: int = 900,
    **extra: Any,
) -> str:
    order_id = new_id("ord")
    item = {
        "line_id": "l1",
        "product_id": "latte",
        "name": "Latte",
        "quantity": 2,
        "options": [],
        "note": None,
        "unit_price": total // 2,
        "line_total": total,
    }
    from server.orders.create import next_order_number

    with db.write() as s:
        shop = s.get(Shop, shop_id)
        assert shop is not None
        s.add(
            Order(
                id=order_id,
                shop_id=shop_id,
                number=next_order_number(s, shop),
                status=status,
                currency="usd",
                items=[item],
                subtotal=total,
                total=total,
                fulfillment={
                    "type": "pickup",
                    "name": name,
                    "phone": None,
                    "address": None,
                    "table": None,
                },
                catalog_version=1,
                paid_at=utcnow() if status != "awaiting_payment" else None,
                **extra,
            )
        )
    return order_id


def make_payable_order(
    db: Database, shop_id: str, items: list[dict[str, Any]] | None = None
) -> tuple[str, str]:
    """An order awaiting payment on a cashier thread, priced from the shop's live menu, the way
    the Cashier leaves it. Returns the order id and the thread token."""
    from server.catalog.service import load_menu
    from server.ids import hash_token, new_token
    from server.models import Thread
    from server.orders.create import create_order, price_items

    token = new_token()
    with db.write() as s:
        shop = s.get(Shop, shop_id)
        menu = load_menu(s, shop_id)
        assert shop is not None and menu is not None
        thread = Thread(
            id=new_id("thr"), shop_id=shop_id, token_hash=hash_token(token), role="cashier"
        )
        s.add(thread)
        s.flush()
        lines = price_items(menu, items or [{"product_id": menu.products[0].id, "quantity": 2}])
        order = create_order(
            s,
            shop=shop,
            menu=menu,
            lines=lines,
            thread_id=thread.id,
            fulfillment={"type": "pickup", "name": "Ana"},
        )
        return order.id, token


def pay_in_demo_checkout(http: Any, shop_id: str, order_id: str, thread_token: str) -> None:
    """What the customer does: open the checkout, press "Pay (demo)" (over HTTP)."""
    r = http.post(
        f"/api/order/{shop_id}", json={"order_id": order_id, "thread_token": thread_token}
    )
    assert r.status_code in (200, 201), r.text
    order_token = r.json()["order_token"]
    r = http.post(f"/pay/demo/{order_id}", data={"token": order_token}, follow_redirects=False)
    assert r.status_code == 303, r.text
