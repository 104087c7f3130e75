"""The Cashier's pure parts: fulfilment details from the conversation, names, differences."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from server.chat.assistant import ShopContext
from server.chat.cashier import (
    LLMCashier,
    cart_difference,
    fulfillment_from_conversation,
    name_from_answer,
    offline_draft,
)
from server.chat.llm import LLM
from server.orders.cart import Cart, add_item
from server.settings import Settings
from tests.orders.menus import coffee_menu

MENU = coffee_menu()
MODES = ("pickup", "delivery", "table")


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["two lattes please"], {}),
        (["a latte, my name is Ana"], {"name": "Ana"}),
        (["I'm Ana Lima and I want a latte"], {"name": "Ana Lima"}),
        (["name's bob"], {"name": "Bob"}),
        (["i'm done"], {}),
        (["I'm hungry, a croissant"], {}),
        (["we're at table 12"], {"table": "12", "type": "table"}),
        (
            ["deliver to 5 Rue Cler, Paris please"],
            {"address": "5 Rue Cler, Paris please", "type": "delivery"},
        ),
        (["call me on +33 6 12 34 56 78"], {"phone": "+33 6 12 34 56 78"}),
        (["I'll pick it up", "for Marc"], {"type": "pickup", "name": "Marc"}),
    ],
)
def test_fulfilment_details_from_the_conversation(texts: list[str], expected: dict) -> None:
    got = fulfillment_from_conversation(texts, MODES)
    assert {k: v for k, v in got.items() if v} == expected


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ("Ana", "Ana"),
        ("ana lima", "Ana Lima"),
        ("It's for Jo", "Jo"),
        ("my name is Zoë", "Zoë"),
        ("what?", None),
        ("I would rather not say that now", None),
        ("ok", None),
    ],
)
def test_the_answer_to_what_name(answer: str, name: str | None) -> None:
    assert name_from_answer(answer) == name


def test_cart_difference_names_what_changed() -> None:
    cart, _ = add_item(MENU, Cart(currency="usd"), "latte", 2)
    same, _ = add_item(MENU, Cart(currency="usd"), "latte", 1)
    same, _ = add_item(MENU, same, "latte", 1)
    assert cart_difference(list(cart.lines), list(same.lines)) == []
    more, _ = add_item(MENU, cart, "espresso", 1)
    diff = cart_difference(list(cart.lines), list(more.lines))
    assert diff == ["espresso []: cart 0, cashier 1"]


def test_offline_draft_is_the_cart() -> None:
    cart, _ = add_item(MENU, Cart(currency="usd"), "espresso", 3)
    shop = ShopContext(shop_id="s", name="S", currency="usd", fulfillment_modes=("pickup",))
    draft = offline_draft(cart, ["3 espressos", "table 4, I'm Li"], shop)
    assert draft.lines == list(cart.lines) and draft.source == "cart"
    assert draft.fulfillment["name"] == "Li" and draft.fulfillment["type"] is None


def test_a_draft_with_a_number_too_long_for_int_is_asked_again(settings: Settings) -> None:
    """``json.loads`` raises a plain ValueError (not JSONDecodeError) past 4300 digits."""
    answers = [
        '{"items": [{"product_id": "latte", "quantity": ' + "9" * 5000 + "}]}",
        '{"items": [{"product_id": "latte", "quantity": 2}], "fulfillment": {"type": "pickup"}}',
    ]
    asked: list[Any] = []

    async def create(**kw: Any) -> Any:
        asked.append(kw)
        message = SimpleNamespace(content=answers[len(asked) - 1])
        return SimpleNamespace(usage=None, choices=[SimpleNamespace(message=message)])

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    cashier = LLMCashier(LLM(client=client, model="m"), settings)  # type: ignore[arg-type]
    cart, _ = add_item(MENU, Cart(currency="usd"), "latte", 2)
    shop = ShopContext(shop_id="s", name="S", currency="usd", fulfillment_modes=("pickup",))
    history = [{"role": "user", "content": "two lattes"}]
    draft = asyncio.run(cashier.draft(shop, MENU, cart, history))
    assert len(asked) == 2 and draft.source == "cashier"
    assert [(line.product_id, line.quantity) for line in draft.lines] == [("latte", 2)]
