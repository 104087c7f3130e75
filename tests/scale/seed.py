"""Seed data for the scale tests and benchmarks: a shop with a live catalog, an order."""

from __future__ import annotations

from pathlib import Path

from server import models
from server.catalog.service import import_catalog, load_menu
from server.db import Database
from server.orders.create import create_order, price_items
from server.payments.checkout import order_token
from server.settings import Settings
from server.shops.service import create_shop

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def seed_shop(db: Database, name: str = "Bench Coffee", csv: str = "coffee.csv") -> tuple[str, str]:
    """A shop with the example catalog live. Returns ``(shop_id, slug)``."""
    path = EXAMPLES / csv
    with db.write() as s:
        shop = create_shop(s, name=name, currency="usd")
        import_catalog(s, shop, path.read_bytes(), path.name)
        return shop.id, shop.slug


def seed_order(
    db: Database, settings: Settings, shop_id: str, items: list[dict] | None = None
) -> tuple[str, str]:
    """An order awaiting payment. Returns ``(order_id, order_token)``."""
    with db.write() as s:
        shop = s.get(models.Shop, shop_id)
        menu = load_menu(s, shop_id)
        assert shop is not None and menu is not None
        lines = price_items(menu, items or [{"product_id": "latte", "quantity": 2}])
        order = create_order(
            s, shop=shop, menu=menu, lines=lines, fulfillment={"type": "pickup", "name": "Ana"}
        )
        return order.id, order_token(settings, order.id)
