"""What a turn writes: customers' messages that arrive together are stored together, and a
turn's end stores the reply, the cart and the thread's counters in one UPDATE of the thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from server import models
from server.chat import threads
from server.chat.runner import ChatRunner, TurnLog, TurnRequest
from server.db import Database
from server.events import MemoryBus
from server.settings import Settings


def new_turn(db: Database, shop_id: str, message: str) -> TurnRequest:
    with db.read() as s:
        ctx = threads.load_turn(s, shop_id, None, None)
    return TurnRequest(shop_id, ctx, message, None, created_token=threads.new_thread_token())


def next_turn(db: Database, opened: TurnRequest, message: str) -> TurnRequest:
    """The next message to the thread ``opened`` created."""
    with db.read() as s:
        ctx = threads.load_turn(s, opened.shop_id, opened.thread_id, opened.created_token)
    return TurnRequest(opened.shop_id, ctx, message, None)


async def run(runner: ChatRunner, req: TurnRequest) -> TurnLog:
    turn_log = runner.start(req)
    await turn_log.finished.wait()
    return turn_log


@pytest.fixture
def stored_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The customers' messages of every opening transaction, in order."""
    batches: list[list[str]] = []
    open_turns = threads.open_turns

    def spy(session: Any, turns: list[threads.Opening]) -> None:
        batches.append([t.message for t in turns])
        open_turns(session, turns)

    monkeypatch.setattr(threads, "open_turns", spy)
    return batches


def test_messages_that_arrive_together_are_stored_in_one_transaction(
    settings: Settings, db: Database, shop: models.Shop, stored_batches: list[list[str]]
) -> None:
    async def main() -> list[TurnLog]:
        runner = ChatRunner(settings, db, MemoryBus(), None)
        first = new_turn(db, shop.id, "hello")
        await run(runner, first)
        # The writer is busy while four customers write at once.
        gate = threading.Event()
        busy = asyncio.ensure_future(runner.write_db(lambda s: gate.wait(10)))
        reqs = [new_turn(db, shop.id, f"an espresso, I'm guest {i}") for i in range(3)]
        reqs.append(next_turn(db, first, "and a croissant"))
        logs = [runner.start(req) for req in reqs]
        gate.set()
        await busy
        for turn_log in logs:
            await turn_log.finished.wait()
        await runner.shutdown(5)
        return logs

    logs = asyncio.run(main())
    assert stored_batches == [
        ["hello"],
        [
            "an espresso, I'm guest 0",
            "an espresso, I'm guest 1",
            "an espresso, I'm guest 2",
            "and a croissant",
        ],
    ]
    assert [log.events[-1]["event"] for log in logs] == ["done"] * 4
    with db.read() as s:
        for turn_log, said in zip(logs, stored_batches[1], strict=True):
            thread = s.get(models.Thread, turn_log.thread_id)
            assert thread is not None
            history = threads.history(s, thread.id)
            assert [m["role"] for m in history][-2:] == ["user", "assistant"]
            assert history[-2]["content"] == said
            assert thread.message_count == len(history)  # every message counted once
            assert thread.cart["lines"]  # the espresso or the croissant is in it


@pytest.fixture
def thread_updates(db: Database) -> Iterator[list[str]]:
    """Every UPDATE of a thread row sent to the database."""
    seen: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE THREAD "):
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", watch)
    yield seen
    event.remove(db.engine, "before_cursor_execute", watch)


def test_a_turn_updates_its_thread_once_as_it_opens_and_once_as_it_ends(
    settings: Settings, db: Database, shop: models.Shop, thread_updates: list[str]
) -> None:
    async def main() -> TurnLog:
        runner = ChatRunner(settings, db, MemoryBus(), None)
        first = new_turn(db, shop.id, "hello")
        await run(runner, first)
        thread_updates.clear()
        turn_log = await run(runner, next_turn(db, first, "an espresso"))
        await runner.shutdown(5)
        return turn_log

    turn_log = asyncio.run(main())
    assert len(thread_updates) == 2  # the message counted; then reply, cart, memory, last id
    with db.read() as s:
        thread = s.get(models.Thread, turn_log.thread_id)
        assert thread is not None
        assert thread.last_seq == turn_log.events[-1]["seq"]
        assert [line["product_id"] for line in thread.cart["lines"]] == ["espresso"]
        assert thread.message_count == 4
        stored = s.exec(
            select(models.ThreadEvent.seq).where(models.ThreadEvent.thread_id == thread.id)
        ).all()
        assert sorted(stored) == list(range(1, thread.last_seq + 1))
