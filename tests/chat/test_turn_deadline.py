"""The turn deadline cuts only the wait for the model: a turn whose deadline passes while it
stores its end or places its order still finishes, and the customer sees the order and the
``done`` event; a confirmation sent again shows that order and places no second one.

The turns run on an event loop whose clock the test moves forward, so the deadline passes
exactly while a write is held, never because the machine was slow."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from sqlmodel import select

from server import models
from server.chat import handoff, threads
from server.chat.handoff import ORDER_PLACED
from server.chat.runner import ChatRunner, TurnRequest
from server.db import Database
from server.events import MemoryBus
from server.settings import Settings
from tests.chat.helpers import Event, make_shop, parse_sse
from tests.orders.menus import coffee_menu

T = TypeVar("T")


class SteppedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps when the test says (timers due by then fire)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0

    def time(self) -> float:
        return super().time() + self.skipped

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on; returns once every timer due by then has run
        (timers run in the order they are due, so those due before this one ran first)."""
        self.skipped += seconds
        passed = self.create_future()
        self.call_at(self.time(), passed.set_result, None)
        await passed


def run_stepped(main: Callable[[SteppedLoop], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=SteppedLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, SteppedLoop)
        return runner.run(main(loop))


class Held:
    """Holds the next call of a function on the writer thread until released."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.armed = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.released.wait(30)
        return self.fn(*args, **kwargs)

    async def hold_past_deadline(self, loop: SteppedLoop, runner: ChatRunner) -> None:
        """Once the held call started, let the turn's whole deadline pass, then release it."""
        assert await asyncio.to_thread(self.entered.wait, 30)
        await loop.advance(runner.turn_seconds + 1)
        self.released.set()


async def send(
    runner: ChatRunner,
    shop_id: str,
    message: str,
    ids: dict[str, str] | None = None,
    *,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> tuple[dict[str, str], list[Event]]:
    """One message as the chat endpoint takes it; returns the thread's ids and what the
    customer's stream showed. ``meanwhile`` runs while the reply does."""
    with runner.db.read() as s:
        ctx = threads.load_turn(
            s, shop_id, ids["thread_id"] if ids else None, ids["thread_token"] if ids else None
        )
    created = threads.new_thread_token() if ctx.thread.new else None
    turn_log = runner.start(
        TurnRequest(shop_id=shop_id, ctx=ctx, message=message, action=None, created_token=created)
    )

    async def read() -> list[Event]:
        chunks = [
            chunk
            async for chunk in runner.follow(
                ctx.thread.id, ctx.thread.last_seq, turn_log=turn_log, token=created
            )
        ]
        text = "".join(c.decode() if isinstance(c, bytes) else _as_sse(c) for c in chunks)
        return parse_sse(text.split("\n"), to_end=True)

    reading = asyncio.create_task(read())
    if meanwhile is not None:
        await meanwhile()
    events = await asyncio.wait_for(reading, 30)
    await turn_log.finished.wait()
    token = ids["thread_token"] if ids else created
    assert token is not None
    return {"thread_id": ctx.thread.id, "thread_token": token}, events


def _as_sse(event: dict[str, Any]) -> str:
    return f"event: {event['event']}\ndata: {event['data']}\n\n"


def orders(db: Database, shop_id: str) -> list[str]:
    with db.read() as s:
        return list(s.exec(select(models.Order.id).where(models.Order.shop_id == shop_id)).all())


def said(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


def test_a_deadline_passing_while_the_reply_is_stored_still_sends_done(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = make_shop(db, coffee_menu())
    store = Held(threads.store_events)
    monkeypatch.setattr(threads, "store_events", store)

    async def main(loop: SteppedLoop) -> list[Event]:
        runner = ChatRunner(settings, db, MemoryBus(), None)
        store.armed = True  # the turn's end: its reply, its last events
        _, events = await send(
            runner, shop.id, "hi", meanwhile=lambda: store.hold_past_deadline(loop, runner)
        )
        await runner.shutdown(5)
        return events

    events = run_stepped(main)
    assert store.entered.is_set()
    assert said(events)
    assert events[-1].event == "done"
    assert events[-1].id == len(events)
    with db.read() as s:
        replies = s.exec(select(models.Message.id).where(models.Message.role == "assistant")).all()
    assert list(replies) == [events[-1].data["message_id"]]


def test_a_deadline_passing_while_the_order_is_placed_still_shows_the_order(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = make_shop(db, coffee_menu())
    create = Held(handoff.create_order)
    monkeypatch.setattr(handoff, "create_order", create)

    async def main(loop: SteppedLoop) -> tuple[list[Event], list[Event]]:
        runner = ChatRunner(settings, db, MemoryBus(), None)
        ids, _ = await send(runner, shop.id, "an espresso")
        create.armed = True
        _, placed = await send(
            runner,
            shop.id,
            "that's all",
            ids,
            meanwhile=lambda: create.hold_past_deadline(loop, runner),
        )
        # The customer sends the confirmation again all the same.
        _, again = await send(runner, shop.id, "that's all", ids)
        await runner.shutdown(5)
        return placed, again

    placed, again = run_stepped(main)
    assert create.entered.is_set()
    [order_id] = orders(db, shop.id)
    assert [e.data["order"]["order_id"] for e in placed if e.event == "order"] == [order_id]
    assert placed[-1].event == "done"
    assert [e.data["order"]["order_id"] for e in again if e.event == "order"] == [order_id]
    assert said(again).endswith(ORDER_PLACED)
    assert again[-1].event == "done"
