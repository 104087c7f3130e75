"""What a Waiter is, whatever runs it (the OpenAI model or the built-in offline assistant).

The chat runner builds a :class:`Turn`, iterates ``waiter.reply(turn)`` and turns what it yields
into stream events (``delta``, ``cart``, ``notice``), stores the reply and the cart, and starts
the Cashier when it sees :class:`Checkout`. Assistants never touch the database or the network
except through what they are given; every cart change goes through ``server.orders.cart``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.catalog.model import Menu
from server.orders.cart import Cart


@dataclass(frozen=True)
class ShopContext:
    """What an assistant may know about the shop."""

    shop_id: str
    name: str
    currency: str
    greeting: str = ""
    require_name: bool = False
    fulfillment_modes: tuple[str, ...] = ("pickup",)
    paused: bool = False  # ordering paused by the owner, or outside opening hours
    paused_reason: str = ""  # a sentence for the customer ("We open again Tuesday at 08:00.")

    @property
    def not_taking_orders(self) -> str:
        """What the customer is told when an order cannot be taken now."""
        return " ".join(["Sorry, we're not taking orders right now.", self.paused_reason]).strip()


@dataclass
class Turn:
    """One customer message and everything needed to answer it."""

    shop: ShopContext
    menu: Menu
    cart: Cart
    message: str
    history: list[dict[str, Any]] = field(
        default_factory=list
    )  # [{role, content}] before this turn
    state: dict[str, Any] = field(
        default_factory=dict
    )  # assistant memory, JSON, saved after the turn
    thread_id: str = ""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class CartChanged:
    cart: Cart


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class Checkout:
    """The customer confirmed: hand the thread to the Cashier."""


@dataclass(frozen=True)
class Usage:
    """Model tokens spent (counted against the shop's daily budget)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


AssistantEvent = TextDelta | CartChanged | Notice | Checkout | Usage


class Waiter(Protocol):
    def reply(self, turn: Turn) -> AsyncIterator[AssistantEvent]:
        """Answer one customer message; yield text as it is produced."""
        ...
