"""With no model at all, a customer orders in plain words and gets a catalog-priced order."""

from __future__ import annotations

from typing import Any

import jsonschema
from starlette.applications import Starlette

from server import models
from server.catalog.model import Menu, Product
from server.orders.create import order_schema
from tests.chat.helpers import make_shop, post_chat
from tests.orders.menus import coffee_menu


def test_two_large_oat_lattes_and_a_croissant_then_thats_all(
    app: Starlette, serve: Any, shop: models.Shop
) -> None:
    base = serve(app)
    first = post_chat(base, shop.id, message="two large oat lattes and a croissant")
    cart = first.of("cart")[-1].data["cart"]
    assert cart["subtotal"] == 2 * (450 + 100 + 60) + 325
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    done = post_chat(base, shop.id, message="that's all", **ids)
    assert done.of("handoff")[0].data["role"] == "cashier"
    order = done.of("order")[0].data["order"]
    jsonschema.validate(order, order_schema())
    assert order["status"] == "awaiting_payment" and order["currency"] == "usd"
    lines = [(i["product_id"], i["quantity"], i["unit_price"]) for i in order["items"]]
    assert lines == [("latte", 2, 610), ("croissant", 1, 325)]
    latte_options = {(o["group"], o["choice"]) for o in order["items"][0]["options"]}
    assert latte_options == {("Size", "Large"), ("Milk", "Oat")}
    assert order["total"] == order["subtotal"] == 1545
    assert order["fulfillment"]["type"] == "pickup"
    assert done.events[-1].event == "done"
    # The shop's first order; the next customer's is number 2. The id stays the identifier.
    assert order["number"] == 1 and order["order_id"].startswith("ord_")
    other = post_chat(base, shop.id, message="an espresso, that's all")
    assert other.of("order")[0].data["order"]["number"] == 2


def test_offline_ordering_with_a_name_in_the_same_breath(
    app: Starlette, serve: Any, shop: models.Shop
) -> None:
    base = serve(app)
    first = post_chat(base, shop.id, message="an espresso please, my name is Ana")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    order = post_chat(base, shop.id, message="checkout", **ids).of("order")[0].data["order"]
    assert order["total"] == 300 and order["fulfillment"]["name"] == "Ana"


def test_items_named_with_the_confirmation_are_ordered_too(
    app: Starlette, serve: Any, shop: models.Shop
) -> None:
    base = serve(app)
    first = post_chat(base, shop.id, message="an espresso")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    done = post_chat(base, shop.id, message="and a croissant, that's all", **ids)
    order = done.of("order")[0].data["order"]
    assert [i["product_id"] for i in order["items"]] == ["espresso", "croissant"]
    assert order["total"] == 300 + 325


def test_a_question_in_the_confirming_message_is_answered_before_checkout(
    app: Starlette, serve: Any, db: Any
) -> None:
    menu = Menu(
        "shp_tea",
        "usd",
        1,
        (
            Product("green-tea", "Green Tea", 300, "Tea"),
            Product("black-tea", "Black Tea", 300, "Tea"),
            Product("croissant", "Croissant", 325, "Bakery"),
        ),
    )
    shop = make_shop(db, menu)
    base = serve(app)
    first = post_chat(base, shop.id, message="a tea and a croissant, that's all")
    assert "Which one would you like" in first.text and "Green Tea" in first.text
    assert [ln["product_id"] for ln in first.of("cart")[-1].data["cart"]["lines"]] == ["croissant"]
    assert not first.of("handoff") and not first.of("order")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    answer = post_chat(base, shop.id, message="green", **ids)
    assert not answer.of("handoff")
    done = post_chat(base, shop.id, message="that's all", **ids)
    order = done.of("order")[0].data["order"]
    assert [i["product_id"] for i in order["items"]] == ["croissant", "green-tea"]
    assert order["total"] == 325 + 300


def test_the_waiter_and_the_cashier_speak_once_each_in_one_reply(
    app: Starlette, serve: Any, shop: models.Shop, db: Any
) -> None:
    base = serve(app)
    first = post_chat(base, shop.id, message="an espresso")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    done = post_chat(base, shop.id, message="and a croissant, that's all", **ids)
    assert done.text == (
        "Added 1 x Croissant: $3.25. Great, let's check out. "
        "Here is your order: 1 x Espresso; 1 x Croissant. Total $6.25. Use the Pay button to pay."
    )
    # Emptied in the confirming message: the Waiter says so, once.
    first = post_chat(base, shop.id, message="an espresso")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    empty = post_chat(base, shop.id, message="remove the espresso, that's all", **ids)
    assert empty.text == "Removed 1 x Espresso. Your cart is empty."
    assert not empty.of("handoff")
    # A paused shop: one apology, not the Waiter's and then the Cashier's.
    paused = make_shop(db, coffee_menu(), paused=True)
    refused = post_chat(base, paused.id, message="an espresso, that's all")
    assert refused.text == (
        "Sorry, we're not taking orders right now. I'm happy to answer questions about the menu."
    )
