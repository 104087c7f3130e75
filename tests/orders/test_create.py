"""Orders are priced from the catalog; whatever prices a draft carries are never read."""

from __future__ import annotations

import jsonschema
import pytest

from server import models
from server.db import Database
from server.ids import new_id
from server.orders.create import (
    OrderDraftError,
    create_order,
    normalize_fulfillment,
    order_schema,
    order_to_json,
    price_items,
)
from tests.orders.menus import coffee_menu

MENU = coffee_menu()


def make_shop(db: Database, **fields: object) -> models.Shop:
    with db.write() as s:
        shop = models.Shop(
            id=new_id("shp"), name="Test Cafe", slug=new_id("s"), currency="usd", **fields
        )
        s.add(shop)
    return shop


def test_draft_prices_are_ignored() -> None:
    items = [
        {
            "product_id": "latte",
            "quantity": 2,
            "options": [{"group": "Size", "choice": "Large"}],
            "price": 1,
            "unit_price": 1,
            "line_total": 2,
        }
    ]
    lines = price_items(MENU, items)
    assert lines[0].unit_price == 550 and lines[0].line_total == 1100


def test_isk_checkout_totals_are_whole_kronur() -> None:
    """Stripe charges ISK (counted in hundredths) only in whole krónur; the catalog takes no
    other ISK price, so every line and total is a multiple of 100."""
    from server.catalog.model import Menu
    from server.catalog.parse import parse_catalog

    csv = (
        "id,name,price,options\n"
        'kaffi,Kaffi,"1.450 kr","Stærð: Lítill -50 | Stór +200; Auka[0-2]: Rjómi +150 | Síróp"\n'
        "kleina,Kleina,350,\n"
    )
    parsed = parse_catalog(csv.encode(), "menu.csv", "isk")
    assert parsed.errors == []
    menu = Menu("shp_is", "isk", 1, tuple(parsed.products))
    items = [
        {"product_id": "kaffi", "quantity": 3, "options": [
            {"group": "Stærð", "choice": "Stór"}, {"group": "Auka", "choice": "Rjómi"}]},
        {"product_id": "kaffi", "quantity": 1, "options": [{"group": "Stærð", "choice": "Lítill"}]},
        {"product_id": "kleina", "quantity": 7},
    ]  # fmt: skip
    lines = price_items(menu, items)
    assert [(ln.unit_price, ln.line_total) for ln in lines] == [
        (180000, 540000),
        (140000, 140000),
        (35000, 245000),
    ]
    assert all(ln.unit_price % 100 == 0 for ln in lines)
    assert sum(ln.line_total for ln in lines) == 925000  # 9,250 kr


def test_every_bad_item_is_listed() -> None:
    with pytest.raises(OrderDraftError) as info:
        price_items(
            MENU,
            [{"product_id": "burger", "quantity": 1}, {"product_id": "latte", "quantity": 0}, "x"],
        )
    assert len(info.value.problems) == 3
    with pytest.raises(OrderDraftError, match="no items"):
        price_items(MENU, [])


def test_order_json_validates_against_the_published_schema(db: Database) -> None:
    shop = make_shop(db, fulfillment_modes=["pickup", "delivery"])
    lines = price_items(
        MENU, [{"product_id": "latte", "quantity": 2}, {"product_id": "croissant", "quantity": 1}]
    )
    with db.write() as s:
        order = create_order(
            s,
            shop=shop,
            menu=MENU,
            lines=lines,
            fulfillment={"name": "Ana"},
            customer_note="  by the window ",
        )
    data = order_to_json(order)
    jsonschema.validate(data, order_schema())
    assert data["status"] == "awaiting_payment"
    assert data["subtotal"] == data["total"] == 2 * 450 + 325
    assert data["fulfillment"] == {
        "type": "pickup",
        "name": "Ana",
        "phone": None,
        "address": None,
        "table": None,
    }
    assert data["customer_note"] == "by the window"
    assert data["created_at"].endswith("Z") and data["paid_at"] is None
    with db.read() as s:
        stored = s.get(models.Order, order.id)
        assert stored is not None and stored.total == 1225


@pytest.mark.parametrize(
    ("modes", "raw", "expected_type"),
    [
        (["pickup"], {"type": "delivery"}, "pickup"),
        (["delivery", "pickup"], {}, "delivery"),
        (["pickup", "table"], {"type": "table", "table": 7}, "table"),
        ([], None, "pickup"),
    ],
)
def test_fulfillment_type_defaults_to_the_shops_first_mode(
    modes: list[str], raw: object, expected_type: str
) -> None:
    shop = models.Shop(id="shp_x", name="x", slug="x", fulfillment_modes=modes)
    assert normalize_fulfillment(shop, raw)["type"] == expected_type


def test_an_order_too_large_for_one_payment_is_refused_everywhere() -> None:
    """$999,999 is a valid catalog price, but 99 of them is more than Stripe takes in one
    payment (99,999,999 minor units) and more than a 32-bit amount column holds."""
    from server.orders.cart import MAX_TOTAL, Cart, CartError, add_item, update_item

    menu = coffee_menu(latte_price=99_999_900)
    cart, line = add_item(menu, Cart(currency="usd"), "latte", 1)
    assert cart.subtotal == 99_999_900 <= MAX_TOTAL
    with pytest.raises(CartError, match="too large to pay in one payment"):
        add_item(menu, cart, "espresso", 1)
    with pytest.raises(CartError, match="too large to pay in one payment"):
        update_item(menu, cart, line.line_id, quantity=99)
    with pytest.raises(OrderDraftError, match="too large to pay in one payment"):
        price_items(menu, [{"product_id": "latte", "quantity": 99}])
