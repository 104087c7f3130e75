"""The Waiter's six tools: their JSON schemas (sent to the model) and their execution.

Execution is pure: ``run_tool(name, raw_arguments, menu, cart)`` checks every argument, applies
the cart operation from ``server.orders.cart`` and returns a :class:`ToolResult` whose
``content`` goes back to the model. A refused call (unknown tool or argument, a ``price``,
malformed JSON, an unknown product, a bad option, a quantity outside 1-99...) changes nothing:
the cart comes back as it was and ``content`` explains the problem so the model can recover.
No tool takes a price; every price comes from the catalog.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from server.catalog.model import Menu, Product
from server.catalog.money import format_amount
from server.orders.cart import Cart, CartError, add_item, remove_item, update_item

MAX_SEARCH_RESULTS = 15

_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": 'Chosen options, e.g. [{"group": "Size", "choice": "Large"}].',
    "items": {
        "type": "object",
        "properties": {"group": {"type": "string"}, "choice": {"type": "string"}},
        "required": ["group", "choice"],
        "additionalProperties": False,
    },
}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOL_SCHEMAS: list[dict[str, Any]] = [
    _tool(
        "search_menu",
        "Find products by words in their name, description or category; optional category "
        "and dietary tags. Returns ids, prices and options.",
        {
            "query": {"type": "string"},
            "category": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        ["query"],
    ),
    _tool(
        "add_to_cart",
        "Add a product from the menu to the customer's cart. Use the product id from the menu.",
        {
            "product_id": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
            "options": _OPTIONS_SCHEMA,
            "note": {"type": "string"},
        },
        ["product_id", "quantity"],
    ),
    _tool(
        "update_cart_item",
        "Change the quantity, options or note of a cart line (by its line_id).",
        {
            "line_id": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
            "options": _OPTIONS_SCHEMA,
            "note": {"type": "string"},
        },
        ["line_id"],
    ),
    _tool("remove_from_cart", "Remove a cart line.", {"line_id": {"type": "string"}}, ["line_id"]),
    _tool("view_cart", "Show the cart with line ids and the subtotal.", {}, []),
    _tool(
        "checkout",
        "The customer confirmed the order is complete: hand over to the cashier.",
        {},
        [],
    ),
]

_ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    t["function"]["name"]: (
        set(t["function"]["parameters"]["properties"]),
        set(t["function"]["parameters"]["required"]),
    )
    for t in TOOL_SCHEMAS
}


@dataclass(frozen=True)
class ToolResult:
    """What a call did: the (possibly unchanged) cart, the text for the model, flags."""

    cart: Cart
    content: str
    ok: bool
    changed: bool = False
    checkout: bool = False


def run_tool(name: str, raw_arguments: str | None, menu: Menu, cart: Cart) -> ToolResult:
    """Validate and execute one tool call. Never raises for bad input: a refusal is a result."""
    try:
        args = _parse_arguments(name, raw_arguments)
        return _dispatch(name, args, menu, cart)
    except CartError as err:
        return ToolResult(cart, _error(str(err)), ok=False)


def _error(message: str) -> str:
    return json.dumps({"ok": False, "error": message, "cart_unchanged": True})


def _ok(data: dict[str, Any]) -> str:
    return json.dumps({"ok": True, **data}, separators=(",", ":"))


def _parse_arguments(name: str, raw: str | None) -> dict[str, Any]:
    if name not in _ALLOWED:
        raise CartError(f"There is no tool {name!r}.")
    try:
        args = json.loads(raw or "{}")
    except (ValueError, TypeError, RecursionError):  # bad JSON, a 4300-digit number, deep nesting
        raise CartError("The arguments are not valid JSON; send a JSON object.") from None
    if not isinstance(args, dict):
        raise CartError("The arguments must be a JSON object.")
    allowed, required = _ALLOWED[name]
    for key in args:
        if key not in allowed:
            if "price" in key.lower() or key.lower() in ("total", "amount", "cost"):
                raise CartError(
                    f"{key!r} is not accepted: prices come only from the menu and cannot be set."
                )
            raise CartError(f"Unknown argument {key!r} for {name}.")
    missing = sorted(required - set(args))
    if missing:
        raise CartError(f"Missing argument(s) for {name}: {', '.join(missing)}.")
    return args


def _dispatch(name: str, args: dict[str, Any], menu: Menu, cart: Cart) -> ToolResult:
    if name == "search_menu":
        found = search_menu(menu, args.get("query"), args.get("category"), args.get("tags"))
        return ToolResult(cart, _ok({"results": found, "count": len(found)}), ok=True)
    if name == "view_cart":
        return ToolResult(cart, _ok({"cart": cart.to_json()}), ok=True)
    if name == "checkout":
        if cart.empty:
            return ToolResult(cart, _error("The cart is empty; add items first."), ok=False)
        return ToolResult(cart, _ok({"handoff": "cashier"}), ok=True, checkout=True)
    if name == "add_to_cart":
        new, line = add_item(
            menu, cart, args["product_id"], args["quantity"], args.get("options"), args.get("note")
        )
        return _changed(new, f"Added {line.describe()}.")
    if name == "update_cart_item":
        note = args.get("note", ...)
        new, line = update_item(
            menu,
            cart,
            args["line_id"],
            quantity=args.get("quantity"),
            options=args.get("options"),
            note=note,
        )
        return _changed(new, f"Updated to {line.describe()}.")
    new, line = remove_item(cart, args["line_id"])  # remove_from_cart
    return _changed(new, f"Removed {line.describe()}.")


def _changed(cart: Cart, message: str) -> ToolResult:
    return ToolResult(cart, _ok({"done": message, "cart": cart.to_json()}), ok=True, changed=True)


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text.casefold()):
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") else w)  # plural -> singular
    return out


def mentions_product(menu: Menu, text: str) -> bool:
    """Whether ``text`` names something on the menu (a word of a product name, plurals
    folded): "two lattes, that's all" does, "ok that's all thanks" does not."""
    wanted = {w for w in _words(text) if len(w) >= 3}
    if not wanted:
        return False
    return any(wanted & set(_words(p.name)) for p in menu.products)


def search_menu(menu: Menu, query: Any, category: Any = None, tags: Any = None) -> list[dict]:
    """Products matching the words of ``query`` (any word, best first), optionally within a
    category and having every tag. Capped at :data:`MAX_SEARCH_RESULTS`."""
    wanted = _words(query) if isinstance(query, str) else []
    cat = category.strip().casefold() if isinstance(category, str) and category.strip() else None
    tag_set = (
        {t.strip().casefold() for t in tags if isinstance(t, str) and t.strip()}
        if isinstance(tags, list)
        else set()
    )
    scored: list[tuple[int, int, Product]] = []
    for position, product in enumerate(menu.products):
        if cat and (product.category or "Other").casefold() != cat:
            continue
        if tag_set and not tag_set <= {t.casefold() for t in product.tags}:
            continue
        if wanted:
            name_words = set(_words(product.name))
            other = set(
                _words(f"{product.category} {product.description} {' '.join(product.tags)}")
            )
            score = sum(3 if w in name_words else 1 if w in other else 0 for w in wanted)
            if score == 0:
                continue
        else:
            score = 1
        scored.append((-score, position, product))
    scored.sort(key=lambda s: (s[0], s[1]))
    return [describe_product(p, menu.currency) for _, _, p in scored[:MAX_SEARCH_RESULTS]]


def describe_product(product: Product, currency: str) -> dict[str, Any]:
    """A product as the model sees it: prices formatted and in minor units."""
    return {
        "product_id": product.id,
        "name": product.name,
        "price": format_amount(product.price, currency),
        "category": product.category,
        "description": product.description[:200],
        "tags": list(product.tags),
        "available": product.available,
        "options": [
            {
                "group": g.name,
                "required": g.required,
                "max": g.max_choices,
                "choices": [
                    c.name
                    + (f" (+{format_amount(c.price_delta, currency)})" if c.price_delta else "")
                    for c in g.choices
                ],
            }
            for g in product.options
        ],
    }
