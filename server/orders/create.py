"""Order creation (a command) and the order JSON (a query).

Orders are priced here from the catalog, never from the Cashier's draft or the client: a draft
names product ids, quantities, options and notes only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from server import models
from server.catalog.model import Menu
from server.ids import iso, new_id, utcnow
from server.orders.cart import Cart, CartError, Line, check_total, make_line

SCHEMA_PATH = Path(__file__).with_name("order.schema.json")
FULFILLMENT_TYPES = ("pickup", "delivery", "table")


class OrderDraftError(ValueError):
    """A draft (from the Cashier or a client) cannot become an order; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def price_items(menu: Menu, items: Any) -> list[Line]:
    """``[{product_id, quantity, options, note}]`` -> priced lines from ``menu``.

    Unknown keys (a ``price``, a ``unit_price``...) are ignored: they are never read. Raises
    :class:`OrderDraftError` listing every bad item.
    """
    if not isinstance(items, list) or not items:
        raise OrderDraftError(["The order has no items."])
    lines: list[Line] = []
    problems: list[str] = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            problems.append(f"Item {i} is not an object.")
            continue
        try:
            line = make_line(
                menu,
                f"l{i}",
                item.get("product_id"),
                item.get("quantity"),
                item.get("options") or None,
                item.get("note"),
            )
        except CartError as err:
            problems.append(f"Item {i}: {err}")
            continue
        lines.append(line)
    if not problems:
        try:
            check_total(sum(line.line_total for line in lines))
        except CartError as err:
            problems.append(str(err))
    if problems:
        raise OrderDraftError(problems)
    return lines


def normalize_fulfillment(shop: models.Shop, raw: Any) -> dict[str, Any]:
    """Fulfilment details with every key present; the type defaults to the shop's first mode."""
    raw = raw if isinstance(raw, dict) else {}
    modes = [m for m in (shop.fulfillment_modes or []) if m in FULFILLMENT_TYPES] or ["pickup"]
    kind = raw.get("type") if raw.get("type") in modes else modes[0]

    def text(key: str, limit: int = 200) -> str | None:
        value = raw.get(key)
        if not isinstance(value, str | int) or isinstance(value, bool):
            return None
        value = " ".join(str(value).split())[:limit]
        return value or None

    return {
        "type": kind,
        "name": text("name", 100),
        "phone": text("phone", 40),
        "address": text("address", 300),
        "table": text("table", 20),
    }


def create_order(
    session: Session,
    *,
    shop: models.Shop,
    menu: Menu,
    lines: list[Line],
    fulfillment: dict[str, Any] | None = None,
    customer_note: str | None = None,
    thread_id: str | None = None,
) -> models.Order:
    """Store a new order awaiting payment. ``lines`` come from :func:`price_items` or a cart."""
    if not lines:
        raise OrderDraftError(["The order has no items."])
    items = [{**line.to_json(), "line_id": f"l{i}"} for i, line in enumerate(lines, start=1)]
    subtotal = sum(line.line_total for line in lines)
    try:
        check_total(subtotal)
    except CartError as err:
        raise OrderDraftError([str(err)]) from None
    note = (
        " ".join(customer_note.split())[:500]
        if isinstance(customer_note, str) and customer_note.strip()
        else None
    )
    order = models.Order(
        id=new_id("ord"),
        shop_id=shop.id,
        number=next_order_number(session, shop),
        thread_id=thread_id,
        status="awaiting_payment",
        currency=menu.currency,
        items=items,
        subtotal=subtotal,
        tax=0,
        tip=0,
        total=subtotal,
        fulfillment=normalize_fulfillment(shop, fulfillment),
        customer_note=note,
        catalog_version=menu.version,
    )
    session.add(order)
    session.flush()
    return order


def next_order_number(session: Session, shop: models.Shop) -> int:
    """Take the shop's next order number (1, 2, 3...) in the caller's transaction.

    One ``UPDATE ... RETURNING``: the row lock it takes (PostgreSQL) or the write transaction
    it runs in (SQLite) makes concurrent orders of a shop wait for each other, so each gets its
    own number; a rolled-back order gives its number back. The unique index on
    ``(shop_id, number)`` backs this up."""
    bump = (
        update(models.Shop)
        .where(col(models.Shop.id) == shop.id)
        .values(order_seq=col(models.Shop.order_seq) + 1)
        .returning(col(models.Shop.order_seq))
    )
    number = session.connection().execute(bump).scalar_one()
    if shop in session:
        set_committed_value(shop, "order_seq", number)
    return int(number)


def order_from_cart(
    session: Session, *, shop: models.Shop, menu: Menu, cart: Cart, **kw: Any
) -> models.Order:
    return create_order(session, shop=shop, menu=menu, lines=list(cart.lines), **kw)


def order_to_json(order: models.Order) -> dict[str, Any]:
    """The DESIGN.md order JSON (validates against ``order.schema.json``)."""
    return {
        "order_id": order.id,
        "number": order.number,
        "shop_id": order.shop_id,
        "status": order.status,
        "currency": order.currency,
        "items": order.items,
        "subtotal": order.subtotal,
        "tax": order.tax,
        "tip": order.tip,
        "total": order.total,
        "fulfillment": order.fulfillment,
        "customer_note": order.customer_note,
        "catalog_version": order.catalog_version,
        "thread_id": order.thread_id,
        "created_at": iso(order.created_at),
        "paid_at": iso(order.paid_at),
    }


def order_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def touch(order: models.Order) -> None:
    order.updated_at = utcnow()
