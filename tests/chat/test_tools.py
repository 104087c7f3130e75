"""The Waiter's tools: every call is checked against the catalog; a refused call changes
nothing and explains itself to the model; no argument can set a price."""

from __future__ import annotations

import json

import pytest

from server.chat.tools import TOOL_SCHEMAS, mentions_product, run_tool, search_menu
from server.orders.cart import Cart, add_item
from tests.orders.menus import coffee_menu

MENU = coffee_menu(croissant_available=False)
EMPTY = Cart(currency="usd")
ONE_LATTE, _ = add_item(MENU, EMPTY, "latte", 1)


def test_the_six_tools_and_no_price_anywhere() -> None:
    names = [t["function"]["name"] for t in TOOL_SCHEMAS]
    assert names == [
        "search_menu",
        "add_to_cart",
        "update_cart_item",
        "remove_from_cart",
        "view_cart",
        "checkout",
    ]
    assert "price" not in json.dumps([t["function"]["parameters"] for t in TOOL_SCHEMAS])


@pytest.mark.parametrize(
    ("name", "args", "problem"),
    [
        ("add_to_cart", {"product_id": "burger", "quantity": 1}, "no product 'burger'"),
        ("add_to_cart", {"product_id": "croissant", "quantity": 1}, "sold out"),
        ("add_to_cart", {"product_id": "latte", "quantity": 0}, "between 1 and 99"),
        ("add_to_cart", {"product_id": "latte", "quantity": 100}, "between 1 and 99"),
        ("add_to_cart", {"product_id": "latte", "quantity": "2"}, "whole number"),
        ("add_to_cart", {"product_id": "latte", "quantity": 1.5}, "whole number"),
        ("add_to_cart", {"product_id": "latte"}, "Missing argument"),
        (
            "add_to_cart",
            {"product_id": "latte", "quantity": 1, "options": [{"group": "Syrup", "choice": "x"}]},
            "no option 'Syrup'",
        ),
        (
            "add_to_cart",
            {"product_id": "latte", "quantity": 1, "options": [{"group": "Size", "choice": "XL"}]},
            "not a choice of Size",
        ),
        ("add_to_cart", {"product_id": "pizza", "quantity": 1}, "needs a choice of Crust"),
        ("add_to_cart", {"product_id": "latte", "quantity": 1, "price": 1}, "prices come only"),
        (
            "add_to_cart",
            {"product_id": "latte", "quantity": 1, "unit_price": 0},
            "prices come only",
        ),
        ("add_to_cart", {"product_id": "latte", "quantity": 1, "discount": 5}, "Unknown argument"),
        ("update_cart_item", {"line_id": "l9", "quantity": 2}, "no cart line"),
        ("update_cart_item", {"line_id": "l1", "quantity": 500}, "between 1 and 99"),
        ("update_cart_item", {"line_id": "l1", "price": 0}, "prices come only"),
        ("remove_from_cart", {"line_id": "l7"}, "no cart line"),
        ("remove_from_cart", {}, "Missing argument"),
        ("view_cart", {"total": 0}, "prices come only"),
        ("give_discount", {}, "no tool"),
    ],
)
def test_a_refused_call_changes_nothing(name: str, args: dict, problem: str) -> None:
    result = run_tool(name, json.dumps(args), MENU, ONE_LATTE)
    assert not result.ok and not result.changed
    assert result.cart == ONE_LATTE
    body = json.loads(result.content)
    assert body["ok"] is False and problem in body["error"]


@pytest.mark.parametrize("raw", ['{"product_id": "latte", "quantity": 1', "[1, 2]", "null x", "7"])
def test_malformed_arguments_are_refused(raw: str) -> None:
    result = run_tool("add_to_cart", raw, MENU, EMPTY)
    assert not result.ok and result.cart == EMPTY
    assert "JSON" in json.loads(result.content)["error"]


def test_add_update_remove_view() -> None:
    added = run_tool(
        "add_to_cart",
        json.dumps(
            {
                "product_id": "latte",
                "quantity": 2,
                "options": [
                    {"group": "Size", "choice": "Large"},
                    {"group": "Milk", "choice": "oat"},
                ],
            }
        ),
        MENU,
        EMPTY,
    )
    assert added.ok and added.changed
    line = added.cart.lines[0]
    assert (line.unit_price, line.line_total) == (450 + 100 + 60, 2 * 610)
    updated = run_tool("update_cart_item", '{"line_id": "l1", "quantity": 3}', MENU, added.cart)
    assert updated.cart.lines[0].quantity == 3 and updated.cart.subtotal == 3 * 610
    viewed = run_tool("view_cart", "", MENU, updated.cart)
    assert json.loads(viewed.content)["cart"]["subtotal"] == 1830 and not viewed.changed
    removed = run_tool("remove_from_cart", '{"line_id": "l1"}', MENU, updated.cart)
    assert removed.cart.empty and removed.changed


def test_checkout_needs_items() -> None:
    assert not run_tool("checkout", "{}", MENU, EMPTY).checkout
    assert run_tool("checkout", "{}", MENU, ONE_LATTE).checkout


def test_search_menu_by_words_category_and_tags() -> None:
    assert [r["product_id"] for r in search_menu(MENU, "lattes")] == ["latte"]
    assert {r["product_id"] for r in search_menu(MENU, "", category="coffee")} == {
        "latte",
        "espresso",
    }
    assert [r["product_id"] for r in search_menu(MENU, "", tags=["Vegetarian"])] == ["latte"]
    assert search_menu(MENU, "sushi") == []
    found = search_menu(MENU, "pizza")[0]
    assert found["price"] == "$10.00"
    assert found["options"][0]["required"] is True


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("that's all", False),
        ("ok that's all, thanks a lot", False),
        ("two lattes, that's all", True),
        ("and a croissant and I'm done", True),
        ("checkout", False),
    ],
)
def test_mentions_product(text: str, names: bool) -> None:
    assert mentions_product(MENU, text) is names


def test_a_number_too_long_for_int_is_refused_not_a_crash() -> None:
    raw = '{"product_id": "latte", "quantity": ' + "9" * 5000 + "}"
    result = run_tool("add_to_cart", raw, MENU, EMPTY)
    assert not result.ok and result.cart == EMPTY
    assert "JSON" in json.loads(result.content)["error"]


def test_arguments_nested_too_deeply_are_refused_not_a_crash() -> None:
    result = run_tool("add_to_cart", '{"options": ' + "[" * 5000, MENU, EMPTY)
    assert not result.ok and result.cart == EMPTY
