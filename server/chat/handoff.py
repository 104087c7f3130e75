"""The handoff (a command): the customer confirmed, so the thread is cloned for the Cashier,
the Cashier drafts the order, the server prices it from the live menu and stores it.

A shop that requires a name gets it asked for first: the cashier thread remembers the draft in
its state, and the next message (the name) completes the order without another model call.
"""

from __future__ import annotations

from typing import Any

from server import models
from server.catalog.money import format_amount
from server.chat import threads
from server.chat.assistant import ShopContext
from server.chat.cashier import (
    Draft,
    LLMCashier,
    line_item,
    name_from_answer,
    offline_draft,
)
from server.ids import utcnow
from server.orders.cart import Cart, CartError, Line, make_line
from server.orders.create import OrderDraftError, create_order, order_to_json, price_items
from server.shops.hours import is_open

EMPTY_CART = "Your cart is empty. What would you like to order?"
ASK_NAME = "What name should I put the order under?"
ORDER_PLACED = (
    "Your order is placed and waiting for payment: use the Pay button to pay for it. "
    "To order something else, start a new order."
)


async def _say(reply: Any, text: str) -> None:
    """Say ``text``, a space apart from what the Waiter said earlier in the same turn."""
    last = reply.parts[-1] if reply.parts else ""
    await reply.say((" " if last and not last[-1].isspace() else "") + text)


def paused_reply(shop: ShopContext) -> str:
    later = shop.paused_reason or "Please try again later."
    return f"Sorry, {shop.name} is not taking orders right now. {later}"


def unorderable(menu: Any, items: list[dict[str, Any]]) -> str:
    """Why ``items`` cannot be ordered now, in the customer's words ("Croissant is sold out
    right now."), rather than the draft checker's "Item 2: ..." meant for the model."""
    problems = []
    for item in items:
        product = menu.get(str(item.get("product_id")))
        if product is None:
            problems.append(f"{item.get('name') or 'An item'} is no longer on the menu.")
        elif not product.available:
            problems.append(f"{product.name} is sold out right now.")
        else:
            try:
                make_line(
                    menu,
                    "l1",
                    product.id,
                    item.get("quantity"),
                    item.get("options") or None,
                    item.get("note"),
                )
            except CartError as err:
                problems.append(str(err))
    return " ".join(dict.fromkeys(problems))


def cannot_order(menu: Any, lines: list[Line], err: OrderDraftError) -> str:
    items = [{**line_item(line), "name": line.name} for line in lines]
    why = unorderable(menu, items) or str(err)
    return f"Sorry, I can't place this order: {why} Please change it and try again."


def order_summary(lines: list[Line], currency: str) -> str:
    items = "; ".join(line.describe() for line in lines)
    total = format_amount(sum(line.line_total for line in lines), currency)
    return f"Here is your order: {items}. Total {total}. Use the Pay button to pay."


def _draft_state(draft: Draft) -> dict[str, Any]:
    """What a cashier thread remembers while it waits for the customer's name."""
    return {
        "awaiting": "name",
        "items": [line_item(line) for line in draft.lines],
        "fulfillment": draft.fulfillment,
        "customer_note": draft.customer_note,
    }


async def hand_off(
    runner: Any,
    reply: Any,
    req: Any,
    ctx: Any,
    cart: Cart,
    history: list[dict[str, Any]],
    use_llm: bool,
) -> None:
    """The customer confirmed: clone the thread, run the Cashier, store the order."""
    if ctx.thread.order_id:
        # Confirmed again (sent again after a turn that was cut, or from another tab): the
        # conversation's order is shown, never a second one placed.
        await _show_placed(runner, reply, req.thread_id)
        return
    said = "".join(reply.parts)
    if ctx.shop.paused:
        if "not taking orders" not in said:  # the Waiter may have said so already
            await _say(reply, paused_reply(ctx.shop))
        return
    if cart.empty:
        if not said:  # else the Waiter just answered about this very cart
            await _say(reply, EMPTY_CART)
        return
    try:
        # Checked before the handoff, so a cart that cannot be ordered (a product sold out
        # since it went in) stays with the Waiter, where it can be changed.
        price_items(ctx.menu, [line_item(line) for line in cart.lines])
    except OrderDraftError as err:
        await _say(reply, cannot_order(ctx.menu, list(cart.lines), err))
        return

    def clone(session: Any) -> str:
        parent = session.get(models.Thread, req.thread_id)
        return threads.clone_thread(session, parent, cart.to_state()).id

    child_id = await runner.write_db(clone)
    await reply.event("handoff", {"role": "cashier", "thread_id": child_id})
    if use_llm:
        async with reply.model_time():
            draft = await LLMCashier(runner.llm, runner.settings).draft(
                ctx.shop, ctx.menu, cart, history
            )
        reply.tokens += draft.tokens
    else:
        texts = [m["content"] for m in history if m.get("role") == "user"]
        draft = offline_draft(cart, texts, ctx.shop)
    await _complete(
        runner, reply, ctx, draft, child_id, req.thread_id, waiter_order=ctx.thread.order_id
    )


CASHIER_STATE_KEYS = ("awaiting", "items", "fulfillment", "customer_note")


def _order_of(session: Any, thread_id: str) -> dict[str, Any] | None:
    """The order the thread points at now, as JSON."""
    thread = session.get(models.Thread, thread_id)
    order = session.get(models.Order, thread.order_id) if thread and thread.order_id else None
    return order_to_json(order) if order is not None else None


async def _show_placed(runner: Any, reply: Any, thread_id: str) -> None:
    """Say the order is placed and send it again (its Pay button)."""
    await _say(reply, ORDER_PLACED)
    order = await runner.read_db(lambda s: _order_of(s, thread_id))
    if order is not None:
        await reply.event("order", {"order": order})


async def continue_cashier(runner: Any, reply: Any, req: Any, ctx: Any) -> bool:
    """A message to a cashier thread. Returns False when it is not for the Cashier (not the
    name it asked for): the Waiter then answers in this thread, so the order can still change.
    """
    thread = ctx.thread
    state = thread.state or {}
    if thread.order_id:
        await _show_placed(runner, reply, thread.id)
    elif state.get("awaiting") == "name" and (name := name_from_answer(req.message)):
        try:
            lines = price_items(ctx.menu, state.get("items"))
        except OrderDraftError as err:
            # The menu changed since: the cart is checked again when they confirm anew.
            await runner.write_db(lambda s: threads.save_thread_state(s, thread.id, state={}))
            why = unorderable(ctx.menu, state.get("items") or []) or str(err)
            await _say(reply, f"Sorry, your order changed on the menu: {why}")
        else:
            fulfillment = {**(state.get("fulfillment") or {}), "name": name}
            draft = Draft(lines, fulfillment, state.get("customer_note"))
            await _complete(runner, reply, ctx, draft, thread.id, thread.parent_id)
    else:
        return False
    await reply.store([thread.id])
    return True


class _AlreadyOrdered(Exception):
    """Another turn placed this handoff's order first (this one's is rolled back)."""

    def __init__(self, order: dict[str, Any] | None) -> None:
        super().__init__("order already placed")
        self.order = order


async def _complete(
    runner: Any,
    reply: Any,
    ctx: Any,
    draft: Draft,
    cashier_id: str,
    waiter_id: str | None,
    *,
    waiter_order: object = threads.ANY_ORDER,
) -> None:
    """Ask for the name when the shop needs one, else store the order and send it.

    One order per handoff, whatever runs at the same time: the cashier thread takes an order
    only while it has none, and the thread that handed over only while its order is still
    ``waiter_order`` (what the turn read; unchecked when not given). A turn that loses
    stores nothing and shows the order already placed."""
    # The reply is stored in the thread the customer wrote to and in the cashier's thread.
    targets = list(dict.fromkeys([reply.log.thread_id, cashier_id]))
    try:
        # Priced again from the live menu: a product sold out since it went in the cart
        # cannot be ordered, and every price is the catalog's.
        lines = price_items(ctx.menu, [line_item(line) for line in draft.lines])
    except OrderDraftError as err:
        await _say(reply, cannot_order(ctx.menu, list(draft.lines), err))
        await reply.store(targets)
        return
    if ctx.shop.require_name and not draft.fulfillment.get("name"):
        state = _draft_state(draft)
        await runner.write_db(lambda s: threads.save_thread_state(s, cashier_id, state=state))
        await _say(reply, ASK_NAME)
        await reply.store(targets)
        return

    def create(session: Any) -> dict[str, Any] | None:
        shop = session.get(models.Shop, ctx.shop.shop_id)
        # Paused, or closed since the turn began: no order.
        if shop is None or shop.paused or not is_open(shop.opening_hours, utcnow())[0]:
            return None
        order = create_order(
            session,
            shop=shop,
            menu=ctx.menu,
            lines=lines,
            fulfillment=draft.fulfillment,
            customer_note=draft.customer_note,
            thread_id=cashier_id,
        )
        if not threads.link_order(session, cashier_id, order.id, expected=None, state={}):
            raise _AlreadyOrdered(_order_of(session, cashier_id))
        if waiter_id and not threads.link_order(
            session, waiter_id, order.id, expected=waiter_order
        ):
            raise _AlreadyOrdered(_order_of(session, waiter_id))
        return order_to_json(order)

    try:
        order = await runner.write_db(create)
    except _AlreadyOrdered as lost:
        await _say(reply, ORDER_PLACED)
        await reply.store(targets)
        if lost.order is not None:
            await reply.event("order", {"order": lost.order})
        return
    if order is None:
        await _say(reply, paused_reply(ctx.shop))
        return
    await _say(reply, order_summary(lines, ctx.menu.currency))
    await reply.store(targets)
    await reply.event("order", {"order": order})
