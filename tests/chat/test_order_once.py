"""One order per handoff even when two turns of a thread run at once (a lock lost to a Redis
outage or an expired claim): the second turn finds the order placed, stores none of its own,
and shows the customer the order that exists."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from sqlmodel import select

from server import models
from server.app import create_app
from server.chat import threads
from server.chat.handoff import ASK_NAME, ORDER_PLACED
from server.chat.runner import ChatRunner, TurnRequest
from server.db import Database
from server.events import MemoryBus
from server.settings import Settings
from tests.chat.helpers import make_shop, post_chat
from tests.orders.menus import coffee_menu


def read_turn(db: Database, shop_id: str, ids: dict[str, str]) -> threads.TurnContext:
    """What a turn reads before it starts."""
    with db.read() as s:
        return threads.load_turn(s, shop_id, ids["thread_id"], ids["thread_token"])


def run_late_twin(
    settings: Settings, db: Database, shop_id: str, ctx: threads.TurnContext, message: str
) -> list[dict[str, Any]]:
    """Run a turn that read the thread (``ctx``) before another turn changed it, as a second
    worker would have; its event ids continue the thread's. Returns its events."""
    with db.read() as s:
        thread = s.get(models.Thread, ctx.thread.id)
        assert thread is not None
        last_seq = thread.last_seq
    ctx = replace(ctx, thread=replace(ctx.thread, last_seq=last_seq))

    async def run() -> list[dict[str, Any]]:
        runner = ChatRunner(settings, db, MemoryBus(), None)
        turn_log = runner.start(TurnRequest(shop_id=shop_id, ctx=ctx, message=message, action=None))
        await turn_log.finished.wait()
        await runner.shutdown(5)
        return turn_log.events

    return asyncio.run(run())


def orders(db: Database, shop_id: str) -> list[str]:
    with db.read() as s:
        return list(s.exec(select(models.Order.id).where(models.Order.shop_id == shop_id)).all())


def said(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["event"] == "delta")


def test_two_confirmations_of_one_cart_at_once_place_one_order(
    settings: Settings, db: Database, serve: Any
) -> None:
    shop = make_shop(db, coffee_menu())
    base = serve(create_app(settings, db=db))
    first = post_chat(base, shop.id, message="an espresso")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    late = read_turn(db, shop.id, ids)  # read before the first confirmation placed the order
    placed = post_chat(base, shop.id, message="that's all", **ids)
    order = placed.of("order")[0].data["order"]

    twin = run_late_twin(settings, db, shop.id, late, "that's all")
    assert orders(db, shop.id) == [order["order_id"]]
    assert said(twin).endswith(ORDER_PLACED)
    assert [e["data"]["order"]["order_id"] for e in twin if e["event"] == "order"] == [
        order["order_id"]
    ]
    assert twin[-1]["event"] == "done"
    # The conversation still points at that order.
    with db.read() as s:
        thread = s.get(models.Thread, ids["thread_id"])
        assert thread is not None and thread.order_id == order["order_id"]


def test_two_answers_to_the_cashiers_name_question_at_once_place_one_order(
    settings: Settings, db: Database, serve: Any
) -> None:
    shop = make_shop(db, coffee_menu(), require_name=True)
    base = serve(create_app(settings, db=db))
    first = post_chat(base, shop.id, message="an espresso")
    token = first.thread["thread_token"]
    asked = post_chat(
        base, shop.id, message="that's all", thread_id=first.thread["thread_id"], thread_token=token
    )
    assert asked.text.endswith(ASK_NAME)
    cashier = {"thread_id": asked.of("handoff")[0].data["thread_id"], "thread_token": token}
    late = read_turn(db, shop.id, cashier)
    placed = post_chat(base, shop.id, message="Ana", **cashier)
    order = placed.of("order")[0].data["order"]

    twin = run_late_twin(settings, db, shop.id, late, "Ana")
    assert orders(db, shop.id) == [order["order_id"]]
    assert said(twin) == ORDER_PLACED
    assert [e["data"]["order"]["order_id"] for e in twin if e["event"] == "order"] == [
        order["order_id"]
    ]
    with db.read() as s:
        thread = s.get(models.Thread, cashier["thread_id"])
        assert thread is not None and thread.order_id == order["order_id"]


def test_a_confirmation_sent_again_after_the_order_shows_that_order_and_places_no_other(
    settings: Settings, db: Database, serve: Any
) -> None:
    shop = make_shop(db, coffee_menu())
    base = serve(create_app(settings, db=db))
    first = post_chat(base, shop.id, message="an espresso")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    placed = post_chat(base, shop.id, message="that's all", **ids)
    order_id = placed.of("order")[0].data["order"]["order_id"]
    cashier = {**ids, "thread_id": placed.of("handoff")[0].data["thread_id"]}
    # Sent again to the conversation (a stale tab), then to the Cashier's thread.
    for where in (ids, cashier):
        again = post_chat(base, shop.id, message="that's all", **where)
        assert again.text.endswith(ORDER_PLACED)
        assert [e.data["order"]["order_id"] for e in again.of("order")] == [order_id]
        assert not again.of("handoff") and again.events[-1].event == "done"
    assert orders(db, shop.id) == [order_id]
