"""Rows for payment and order tests: a shop, a cashier thread with its token, an order."""

from __future__ import annotations

from typing import Any

from server import models
from server.db import Database
from server.ids import hash_token, new_id, new_token
from server.orders.create import create_order, price_items
from tests.orders.menus import coffee_menu

# 2 x Latte (Large, Oat) = 2 x (450 + 100 + 60) = 1220; 1 x Espresso = 300; total 1520.
ITEMS: list[dict[str, Any]] = [
    {
        "product_id": "latte",
        "quantity": 2,
        "options": [{"group": "Size", "choice": "Large"}, {"group": "Milk", "choice": "Oat"}],
    },
    {"product_id": "espresso", "quantity": 1},
]
TOTAL = 1520


def make_shop(db: Database, **fields: Any) -> models.Shop:
    shop_id = new_id("shp")
    with db.write() as s:
        shop = models.Shop(
            id=shop_id, name=fields.pop("name", "Corner Cafe"), slug=shop_id, **fields
        )
        s.add(shop)
    return shop


def make_order(
    db: Database, shop: models.Shop, items: list[dict[str, Any]] | None = None, **fields: Any
) -> tuple[models.Order, str]:
    """An order awaiting payment on a cashier thread; returns it and the thread token."""
    token = new_token()
    menu = coffee_menu()
    with db.write() as s:
        thread = models.Thread(
            id=new_id("thr"), shop_id=shop.id, token_hash=hash_token(token), role="cashier"
        )
        s.add(thread)
        s.flush()
        order = create_order(
            s, shop=shop, menu=menu, lines=price_items(menu, items or ITEMS), thread_id=thread.id
        )
        order.currency = shop.currency
        for key, value in fields.items():
            setattr(order, key, value)
        s.add(order)
    return order, token


def issue_session(
    db: Database, order_id: str, session_id: str, *, account: str = "", gateway: str = "stripe"
) -> None:
    """List ``session_id`` as a checkout session this server opened for the order."""
    with db.write() as s:
        s.add(
            models.IssuedCheckout(
                id=session_id, order_id=order_id, gateway=gateway, stripe_account=account
            )
        )


def get_order(db: Database, order_id: str) -> models.Order:
    with db.read() as s:
        order = s.get(models.Order, order_id)
        assert order is not None
        s.expunge(order)
        return order


def status_changes(db: Database, order_id: str) -> list[tuple[str, str]]:
    from sqlmodel import select

    with db.read() as s:
        rows = s.exec(
            select(models.OrderStatusChange)
            .where(models.OrderStatusChange.order_id == order_id)
            .order_by(models.OrderStatusChange.id)
        ).all()
        return [(r.from_status, r.to_status) for r in rows]


MENU_CSV = b"""id,name,price,options
latte,Latte,4.50,"Size: Small | Medium +0.50 | Large +1.00; Milk: Whole | Oat +0.60 | Soy +0.60"
espresso,Espresso,3.00,
croissant,Croissant,3.25,
"""


def make_catalog(db: Database, shop: models.Shop) -> int:
    """Import the coffee menu as the shop's live catalog; returns its version."""
    from server.catalog.service import import_catalog

    with db.write() as s:
        live = s.get(models.Shop, shop.id)
        assert live is not None
        return import_catalog(s, live, MENU_CSV, "menu.csv").version


def order_token(order_id: str) -> str:
    """The customer's order token as the app signs it in tests."""
    from server.ids import sign
    from tests.conftest import TEST_SECRET

    return sign(TEST_SECRET, "order", order_id)
