"""The Cashier: turns a finished conversation into an order draft the server can price.

The LLM Cashier answers with Structured Outputs (a strict JSON schema naming only product ids,
quantities, options, notes, fulfilment details and a customer note: no prices). The server
prices the draft from the catalog with :func:`~server.orders.create.price_items`; an invalid
draft is retried once with the problems listed, then the live cart is used instead. The offline
Cashier is the cart plus the fulfilment details found in the conversation.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from server.catalog.model import Menu
from server.chat.assistant import ShopContext
from server.chat.llm import LLM, PROVIDER_ERRORS
from server.chat.tools import search_menu
from server.chat.waiter import product_line, render_prompt
from server.orders.cart import Cart, Line
from server.orders.create import FULFILLMENT_TYPES, OrderDraftError, price_items
from server.settings import Settings

log = logging.getLogger("shop_assist.chat")

CASHIER_MENU_LIMIT = 150
CASHIER_MAX_TOKENS = 2000
_NULLABLE_STRING = {"type": ["string", "null"]}

ORDER_DRAFT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "product_id": {"type": "string"},
                    "quantity": {"type": "integer"},
                    "options": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "group": {"type": "string"},
                                "choice": {"type": "string"},
                            },
                            "required": ["group", "choice"],
                            "additionalProperties": False,
                        },
                    },
                    "note": _NULLABLE_STRING,
                },
                "required": ["product_id", "quantity", "options", "note"],
                "additionalProperties": False,
            },
        },
        "fulfillment": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": list(FULFILLMENT_TYPES)},
                "name": _NULLABLE_STRING,
                "phone": _NULLABLE_STRING,
                "address": _NULLABLE_STRING,
                "table": _NULLABLE_STRING,
            },
            "required": ["type", "name", "phone", "address", "table"],
            "additionalProperties": False,
        },
        "customer_note": _NULLABLE_STRING,
    },
    "required": ["items", "fulfillment", "customer_note"],
    "additionalProperties": False,
}

RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "order_draft", "strict": True, "schema": ORDER_DRAFT_SCHEMA},
}


@dataclass
class Draft:
    """A priced order proposal (lines from the catalog) and what the customer told us."""

    lines: list[Line]
    fulfillment: dict[str, Any] = field(default_factory=dict)
    customer_note: str | None = None
    source: str = "cart"  # "cashier" when the LLM's draft was used
    tokens: int = 0


# ---------------------------------------------------------------- pure helpers


_NAME = re.compile(
    r"\b(?:my name is|name is|name's|this is|i am|i'm|im|call me|under|for)\s+"
    r"([^\W\d_][\w'\-]{1,30})(?:\s+([^\W\d_][\w'\-]{1,30}))?",
    re.IGNORECASE,
)
_NOT_NAMES = set(
    """a an the done good fine ok okay ready here pickup delivery table me it that this all just
    not sure two one three hungry looking going back in at on to take takeaway now later today
    tonight what why who how where when yes no sorry hi hello hey thanks thank please and with
    your you my us we order cash card paying""".split()  # noqa: SIM905
)
_MODE_WORDS = (
    ("delivery", re.compile(r"\bdeliver")),
    ("pickup", re.compile(r"\bpick(?:ing)? (?:it |them |this |that )?up\b|\bpickup\b|\bcollect")),
)
_PHONE = re.compile(r"(\+?\d[\d\s().-]{6,}\d)")
_TABLE = re.compile(
    r"\btable\s*(?:number\s*|no\.?\s*|#\s*)?(\d{1,4}|[a-z]\d{0,3})\b", re.IGNORECASE
)
_ADDRESS = re.compile(r"\b(?:deliver(?:ed|y)? to|address is|address:)\s+(.{5,200})", re.IGNORECASE)


def find_name(text: str) -> str | None:
    for match in _NAME.finditer(text):
        first, last = match.group(1), match.group(2)
        if first.casefold() in _NOT_NAMES:
            continue
        # A second word is a surname only when capitalised ("Ana Lima", not "Ana and").
        if last and last[0].isupper() and last.casefold() not in _NOT_NAMES:
            first = f"{first} {last}"
        return first.title() if first.islower() else first
    return None


def name_from_answer(text: str) -> str | None:
    """The reply to "what name should I put the order under?": a sentence or just the name."""
    found = find_name(text)
    if found:
        return found
    if "?" in text:
        return None
    words = re.sub(r"[^\w\s'\-]", " ", text).split()
    plain = all(w.isalpha() or "-" in w or "'" in w for w in words)
    if 1 <= len(words) <= 3 and plain and not {w.casefold() for w in words} & _NOT_NAMES:
        return " ".join(w[:1].upper() + w[1:] for w in words)
    return None


def fulfillment_from_conversation(texts: list[str], modes: tuple[str, ...]) -> dict[str, Any]:
    """Name, phone, table, address and fulfilment type as the customer wrote them."""
    out: dict[str, Any] = {
        "type": None,
        "name": None,
        "phone": None,
        "address": None,
        "table": None,
    }
    for text in texts:
        low = text.casefold()
        out["name"] = find_name(text) or out["name"]
        if m := _PHONE.search(text):
            out["phone"] = " ".join(m.group(1).split())
        if m := _TABLE.search(text):
            out["table"] = m.group(1)
            out["type"] = "table" if "table" in modes else out["type"]
        if m := _ADDRESS.search(text):
            out["address"] = m.group(1).strip().rstrip(".")
        for kind, pattern in _MODE_WORDS:
            if kind in modes and pattern.search(low):
                out["type"] = kind
    return out


def merge_fulfillment(primary: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    return {
        k: primary.get(k) or fallback.get(k) for k in ("type", "name", "phone", "address", "table")
    }


def _key(line: Line) -> tuple[str, tuple[tuple[str, str], ...], str | None]:
    return (line.product_id, tuple((s.group, s.choice) for s in line.options), line.note)


def cart_difference(cart: list[Line], draft: list[Line]) -> list[str]:
    """How the draft differs from the cart (empty when they name the same items)."""
    a: Counter = Counter()
    b: Counter = Counter()
    for line in cart:
        a[_key(line)] += line.quantity
    for line in draft:
        b[_key(line)] += line.quantity
    out = []
    for key in sorted(set(a) | set(b), key=str):
        if a[key] != b[key]:
            out.append(f"{key[0]} {list(key[1])}: cart {a[key]}, cashier {b[key]}")
    return out


def line_item(line: Line) -> dict[str, Any]:
    """A priced line back to a draft item (no price: the catalog prices it again)."""
    return {
        "product_id": line.product_id,
        "quantity": line.quantity,
        "options": [{"group": s.group, "choice": s.choice} for s in line.options],
        "note": line.note,
    }


def offline_draft(cart: Cart, texts: list[str], shop: ShopContext) -> Draft:
    """The offline Cashier: the cart, and the fulfilment details found in the conversation."""
    return Draft(list(cart.lines), fulfillment_from_conversation(texts, shop.fulfillment_modes))


def cashier_menu_lines(menu: Menu, cart: Cart, texts: list[str]) -> list[str]:
    """The whole menu when small; otherwise the cart's products and what the customer named."""
    if len(menu.products) <= CASHIER_MENU_LIMIT:
        return [product_line(p, menu.currency) for p in menu.products]
    ids = [line.product_id for line in cart.lines]
    for text in texts[-10:]:
        ids += [r["product_id"] for r in search_menu(menu, text)]
    seen = dict.fromkeys(ids)
    products = [p for pid in list(seen)[:CASHIER_MENU_LIMIT] if (p := menu.get(pid)) is not None]
    return [product_line(p, menu.currency) for p in products]


# ---------------------------------------------------------------- the LLM Cashier


class LLMCashier:
    """Structured Outputs over Chat Completions; the server prices whatever it names."""

    def __init__(self, llm: LLM, settings: Settings) -> None:
        self.llm = llm
        self.settings = settings

    async def draft(
        self, shop: ShopContext, menu: Menu, cart: Cart, history: list[dict[str, Any]]
    ) -> Draft:
        """The Cashier's priced draft, or the cart when it fails twice (or the call fails)."""
        texts = [m["content"] for m in history if m.get("role") == "user"]
        heuristics = fulfillment_from_conversation(texts, shop.fulfillment_modes)
        modes = [m for m in shop.fulfillment_modes if m in FULFILLMENT_TYPES] or ["pickup"]
        system = render_prompt(
            "cashier",
            shop=shop,
            modes=", ".join(modes),
            default_mode=modes[0],
            menu_lines=cashier_menu_lines(menu, cart, texts),
            cart_json=json.dumps([line_item(line) for line in cart.lines]),
        )
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        messages += [
            {"role": m["role"], "content": m["content"]}
            for m in history[-40:]
            if m.get("role") in ("user", "assistant") and m.get("content")
        ]
        messages.append({"role": "user", "content": "Write the final order JSON now."})
        tokens = 0
        for attempt in (1, 2):
            try:
                response = await self.llm.client.chat.completions.create(
                    model=self.llm.model,
                    messages=messages,
                    response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                    # A long order takes more room than a chat reply; a cut draft is invalid.
                    max_tokens=max(self.settings.llm_max_output_tokens, CASHIER_MAX_TOKENS),
                )
            except PROVIDER_ERRORS as err:
                log.warning("cashier call failed; using the cart", extra={"error": repr(err)[:300]})
                break
            if response.usage is not None:
                tokens += response.usage.total_tokens
            content = response.choices[0].message.content if response.choices else None
            try:
                raw = json.loads(content or "")
                if not isinstance(raw, dict):
                    raise OrderDraftError(["The answer is not a JSON object."])
                lines = price_items(menu, raw.get("items"))
            except (ValueError, RecursionError) as err:  # bad JSON, or OrderDraftError
                problem = str(err)
                log.info(
                    "cashier draft invalid", extra={"attempt": attempt, "problem": problem[:300]}
                )
                messages.append({"role": "assistant", "content": content or ""})
                messages.append(
                    {
                        "role": "user",
                        "content": f"That draft is invalid: {problem}. Write it again.",
                    }
                )
                continue
            diff = cart_difference(list(cart.lines), lines)
            if diff:
                log.warning("cashier draft differs from the cart", extra={"difference": diff})
            fulfillment = raw.get("fulfillment") if isinstance(raw.get("fulfillment"), dict) else {}
            note = raw.get("customer_note") if isinstance(raw.get("customer_note"), str) else None
            return Draft(lines, merge_fulfillment(fulfillment, heuristics), note, "cashier", tokens)
        return Draft(list(cart.lines), heuristics, None, "cart", tokens)
