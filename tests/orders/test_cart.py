"""The cart: every operation is checked against the catalog and a refused one changes nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.catalog.model import Choice, Menu, OptionGroup
from server.orders.cart import Cart, CartError, add_item, remove_item, reprice, update_item
from tests.orders.menus import coffee_menu

MENU = coffee_menu()
LARGE_OAT = [{"group": "Size", "choice": "Large"}, {"group": "Milk", "choice": "Oat"}]


def empty() -> Cart:
    return Cart(currency="usd")


def test_add_prices_from_catalog_with_option_deltas() -> None:
    cart, line = add_item(
        MENU,
        empty(),
        "latte",
        2,
        [{"group": "size", "choice": "large"}, {"group": "Milk", "choice": "Oat"}],
    )
    assert line.unit_price == 450 + 100 + 60
    assert line.line_total == 2 * 610
    assert cart.subtotal == 1220
    assert [(o.group, o.choice) for o in line.options] == [("Size", "Large"), ("Milk", "Oat")]
    assert cart.to_json()["lines"][0]["line_id"] == "l1"


def test_single_choice_groups_default_to_their_first_choice() -> None:
    _, line = add_item(MENU, empty(), "latte", 1)
    assert [(o.group, o.choice, o.price_delta) for o in line.options] == [
        ("Size", "Small", 0),
        ("Milk", "Whole", 0),
    ]
    assert line.unit_price == 450


def test_same_item_merges_into_one_line() -> None:
    cart, _ = add_item(MENU, empty(), "espresso", 1)
    cart, line = add_item(MENU, cart, "espresso", 2)
    assert len(cart.lines) == 1 and line.quantity == 3


@pytest.mark.parametrize(
    ("product_id", "quantity", "options", "message"),
    [
        ("burger", 1, None, "no product 'burger'"),
        ("croissant-x", 1, None, "no product"),
        ("latte", 0, None, "between 1 and 99"),
        ("latte", 100, None, "between 1 and 99"),
        ("latte", 1.5, None, "whole number"),
        ("latte", "2", None, "whole number"),
        ("latte", True, None, "whole number"),
        ("latte", 1, [{"group": "Syrup", "choice": "Vanilla"}], "no option 'Syrup'"),
        ("latte", 1, [{"group": "Size", "choice": "Huge"}], "'Huge' is not a choice of Size"),
        (
            "latte",
            1,
            [{"group": "Size", "choice": "Small"}, {"group": "Size", "choice": "Large"}],
            "only one Size",
        ),
        ("latte", 1, [{"group": "Size"}], "'group' and a 'choice'"),
        ("latte", 1, "large", "must be a list"),
        ("pizza", 1, None, "needs a choice of Crust"),
        (
            "pizza",
            1,
            [{"group": "Crust", "choice": "Thin"}]
            + [{"group": "Toppings", "choice": c} for c in ("Olives", "Basil", "Mushrooms")],
            "at most 2 Toppings",
        ),
        (42, 1, None, "product_id must be a string"),
    ],
)
def test_refused_additions_change_nothing(
    product_id: object, quantity: object, options: object, message: str
) -> None:
    before, _ = add_item(MENU, empty(), "espresso", 1)
    with pytest.raises(CartError, match=message):
        add_item(MENU, before, product_id, quantity, options)
    assert before.to_json()["lines"][0]["quantity"] == 1 and len(before.lines) == 1


def test_sold_out_product_is_refused() -> None:
    menu = coffee_menu(croissant_available=False)
    with pytest.raises(CartError, match="sold out"):
        add_item(menu, empty(), "croissant", 1)


def test_multi_choice_toppings_add_each_delta() -> None:
    opts = [
        {"group": "Crust", "choice": "Thick"},
        {"group": "Toppings", "choice": "Olives"},
        {"group": "Toppings", "choice": "Mushrooms"},
    ]
    _, line = add_item(MENU, empty(), "pizza", 1, opts)
    assert line.unit_price == 1000 + 200 + 100 + 150


def test_update_and_remove() -> None:
    cart, _ = add_item(MENU, empty(), "latte", 1)
    cart, _ = add_item(MENU, cart, "croissant", 1)
    cart, line = update_item(
        MENU, cart, "l1", quantity=3, options=[{"group": "Size", "choice": "Large"}]
    )
    assert line.quantity == 3 and line.unit_price == 550
    cart, line = update_item(MENU, cart, "l1", note="extra hot")
    assert line.note == "extra hot" and line.quantity == 3
    cart, removed = remove_item(cart, "l2")
    assert removed.product_id == "croissant"
    assert [x.line_id for x in cart.lines] == ["l1"]
    with pytest.raises(CartError, match="no cart line 'l9'"):
        update_item(MENU, cart, "l9", quantity=1)
    with pytest.raises(CartError, match="between 1 and 99"):
        update_item(MENU, cart, "l1", quantity=0)


def test_line_ids_are_not_reused_after_removal() -> None:
    cart, _ = add_item(MENU, empty(), "latte", 1)
    cart, _ = remove_item(cart, "l1")
    cart, line = add_item(MENU, cart, "espresso", 1)
    assert line.line_id == "l2"


def test_state_round_trip() -> None:
    cart, _ = add_item(MENU, empty(), "latte", 2, [{"group": "Milk", "choice": "Soy"}], "no foam")
    again = Cart.from_state(cart.to_state(), "usd")
    assert again == cart


def test_reprice_follows_a_new_catalog_version() -> None:
    cart, _ = add_item(MENU, empty(), "latte", 1)
    cart, _ = add_item(MENU, cart, "croissant", 1)
    newer = coffee_menu(version=2, latte_price=500, croissant_available=False)
    cart, changes = reprice(newer, cart)
    assert [x.product_id for x in cart.lines] == ["latte"]
    assert cart.subtotal == 500 and cart.catalog_version == 2
    assert changes == [
        "Latte (Small, Whole) now costs $5.00 (was $4.50).",
        "Croissant is sold out right now, so I removed 1 x Croissant from your cart.",
    ]


def _menu_without(menu: Menu, product_id: str) -> Menu:
    return replace(menu, products=tuple(p for p in menu.products if p.id != product_id), _by_id={})


@pytest.mark.parametrize(
    ("currency", "quantity", "new_menu", "sentence"),
    [
        (
            "usd",
            2,
            coffee_menu(2, latte_price=500),
            "Latte (Large, Oat) now costs $6.60 each (was $6.10).",
        ),
        (
            "eur",
            1,
            coffee_menu(2, latte_price=500),
            "Latte (Large, Oat) now costs €6.60 (was €6.10).",
        ),
        # Zero-decimal currency: 610 minor units are 610 yen.
        (
            "jpy",
            1,
            coffee_menu(2, latte_price=500),
            "Latte (Large, Oat) now costs ¥660 (was ¥610).",
        ),
        (
            "chf",
            1,
            coffee_menu(2, latte_price=500),
            "Latte (Large, Oat) now costs 6.60 CHF (was 6.10 CHF).",
        ),
        (
            "usd",
            2,
            _menu_without(coffee_menu(2), "latte"),
            "Latte is no longer on the menu, so I removed 2 x Latte (Large, Oat) from your cart.",
        ),
    ],
)
def test_reprice_tells_the_customer_in_the_carts_currency(
    currency: str, quantity: int, new_menu: Menu, sentence: str
) -> None:
    cart, _ = add_item(MENU, Cart(currency=currency), "latte", quantity, LARGE_OAT)
    _, changes = reprice(new_menu, cart)
    assert changes == [sentence]


def test_reprice_after_an_option_is_withdrawn_says_so() -> None:
    cart, _ = add_item(MENU, empty(), "latte", 1, LARGE_OAT)
    milk = OptionGroup("Milk", (Choice("Whole"), Choice("Soy", 60)))
    newer = coffee_menu(2)
    newer = replace(
        newer,
        products=tuple(
            replace(p, options=(p.options[0], milk)) if p.id == "latte" else p
            for p in newer.products
        ),
        _by_id={},
    )
    cart, changes = reprice(newer, cart)
    assert cart.empty
    assert changes == [
        "Latte (Large, Oat) is no longer offered with those options, so I removed "
        "1 x Latte (Large, Oat) from your cart."
    ]
