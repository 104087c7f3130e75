"""Turn orchestration: one customer message -> a reply running in its own asyncio task.

The reply never depends on the HTTP connection. Each event gets the thread's next sequence
number, is kept in memory for the running turn, published on ``thread:{id}`` and stored as a
``ThreadEvent`` (deltas batched every ~100 ms, other events at once, in short write
transactions: none is held across a model call). Followers (the POST response and the events
endpoint) read them through :mod:`server.chat.stream`; the handoff to the Cashier is
:mod:`server.chat.handoff`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.chat import handoff, threads
from server.chat.assistant import CartChanged, Checkout, Notice, TextDelta, Turn, Usage
from server.chat.llm import LLMUnavailable
from server.chat.phrases import is_checkout_phrase
from server.chat.tools import mentions_product
from server.chat.waiter import OpenAIWaiter
from server.db import Database
from server.errors import Conflict
from server.events import EventBus
from server.orders.cart import reprice
from server.settings import Settings

log = logging.getLogger("shop_assist.chat")
T = TypeVar("T")

FLUSH_SECONDS = 0.1
FALLBACK_NOTICE = "Our assistant is having trouble; continuing in simple mode."
BUDGET_NOTICE = "Our assistant is very busy today; continuing in simple mode."


def offline_waiter() -> Any:
    from server.chat.offline import OfflineWaiter

    return OfflineWaiter()


@dataclass
class TurnRequest:
    """What the route checked and stored before the reply starts."""

    shop_id: str
    thread_id: str
    role: str
    message: str
    action: str | None
    start_seq: int
    user_message_id: int | None = None
    created_token: str | None = None


@dataclass
class TurnLog:
    """The events of one running turn."""

    thread_id: str
    start_seq: int
    events: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    last_flush: float = field(default_factory=time.monotonic)

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.start_seq


class ChatRunner:
    """Runs replies in background tasks; one running turn per thread in this process."""

    def __init__(self, settings: Settings, db: Database, bus: EventBus, llm: Any) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.llm = llm
        self.active: dict[str, TurnLog] = {}
        self._reserved: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ starting a turn

    def reserve(self, thread_id: str) -> None:
        """Claim the thread for a new turn, or Conflict when a reply is still running."""
        if thread_id in self._reserved or thread_id in self.active:
            raise Conflict("A reply is still being written; wait for it to finish.")
        self._reserved.add(thread_id)

    def release(self, thread_id: str) -> None:
        self._reserved.discard(thread_id)

    def start(self, req: TurnRequest) -> TurnLog:
        """Register the turn and start its task; the ``thread`` event is its first event."""
        turn_log = TurnLog(req.thread_id, req.start_seq)
        self.active[req.thread_id] = turn_log
        self._reserved.discard(req.thread_id)
        task = asyncio.get_running_loop().create_task(self._run(req, turn_log), name="chat-turn")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return turn_log

    async def shutdown(self, grace_seconds: float) -> None:
        """Let running replies finish for up to ``grace_seconds``, then cancel the rest (what
        they said so far is stored)."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=max(0.0, grace_seconds))
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    # ------------------------------------------------------------ events

    async def emit(self, turn_log: TurnLog, event: str, data: dict[str, Any]) -> dict[str, Any]:
        record = {"seq": turn_log.last_seq + 1, "event": event, "data": data}
        turn_log.events.append(record)
        turn_log.pending.append(record)
        await self.bus.publish(f"thread:{turn_log.thread_id}", record)
        if event != "delta" or time.monotonic() - turn_log.last_flush >= FLUSH_SECONDS:
            await self.flush(turn_log)
        return record

    async def flush(self, turn_log: TurnLog) -> None:
        if not turn_log.pending:
            return
        batch, turn_log.pending = turn_log.pending, []
        turn_log.last_flush = time.monotonic()
        await self.write_db(lambda s: threads.store_events(s, turn_log.thread_id, batch))

    async def write_db(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)`` in one short write transaction, off the event loop."""

        def run() -> T:
            with self.db.write() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def read_db(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)`` in a read transaction, off the event loop."""

        def run() -> T:
            with self.db.read() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    # ------------------------------------------------------------ the turn

    async def _run(self, req: TurnRequest, turn_log: TurnLog) -> None:
        reply = _Reply(self, turn_log)
        try:
            await self.emit(turn_log, "thread", {"thread_id": req.thread_id, "role": req.role})
            await self._turn(req, reply)
        except asyncio.CancelledError:
            self._store_now(turn_log, reply)
            raise
        except Exception:
            log.exception("chat turn failed", extra={"thread_id": req.thread_id})
            try:
                await reply.store([req.thread_id], complete=False)
            finally:
                await reply.fail("internal", "Something went wrong; please try again.")
        finally:
            try:
                await self.flush(turn_log)
            except Exception:
                log.exception("could not store chat events", extra={"thread_id": req.thread_id})
            turn_log.finished.set()
            if self.active.get(req.thread_id) is turn_log:
                del self.active[req.thread_id]

    def _store_now(self, turn_log: TurnLog, reply: _Reply) -> None:
        """Cancelled (shutdown): keep what was said, synchronously, before the loop goes."""
        try:
            with self.db.write() as session:
                threads.store_events(session, turn_log.thread_id, turn_log.pending)
                unsaved = "".join(reply.parts[reply.stored_parts :])
                if unsaved:
                    threads.add_message(
                        session, turn_log.thread_id, "assistant", unsaved, complete=False
                    )
            turn_log.pending = []
        except Exception:
            log.exception("could not store a cancelled reply")

    async def _turn(self, req: TurnRequest, reply: _Reply) -> None:
        ctx = await self.read_db(
            lambda s: threads.load_context(
                s, req.shop_id, req.thread_id, drop_last_user=req.user_message_id is not None
            )
        )
        if ctx.menu is None:
            await reply.say("This shop has no menu yet, so it cannot take orders.")
            await reply.finish([req.thread_id])
            return
        if not ctx.cart.empty and ctx.cart.catalog_version != ctx.menu.version:
            # The shop uploaded a new catalog: re-price the cart and say what changed.
            ctx.cart, changes = reprice(ctx.menu, ctx.cart)
            for change in changes:
                await reply.event("notice", {"text": change})
            await reply.event("cart", {"cart": ctx.cart.to_json()})
        use_llm = self.llm is not None
        if use_llm and ctx.tokens_today >= self.settings.shop_daily_tokens:
            use_llm = False
            await reply.event("notice", {"text": BUDGET_NOTICE})
        turn = Turn(
            shop=ctx.shop,
            menu=ctx.menu,
            cart=ctx.cart,
            message=req.message,
            history=ctx.history,
            state=dict(ctx.thread.state or {}),
            thread_id=req.thread_id,
        )
        if req.role == "cashier":
            if await handoff.continue_cashier(self, reply, req, ctx):
                await reply.finish([req.thread_id])
                return
            # Not for the Cashier ("and a cookie"): the Waiter answers here; a new
            # confirmation hands this thread over again.
            turn.state = {
                k: v for k, v in turn.state.items() if k not in handoff.CASHIER_STATE_KEYS
            }
        confirmed = is_confirmation(req)
        checkout: bool | None = confirmed
        # A bare "that's all" (or the button) goes straight to the Cashier; a message
        # that also names something ("and a croissant, that's all") is ordered first.
        if req.action != "checkout" and not (
            confirmed and not mentions_product(ctx.menu, req.message)
        ):
            checkout = await reply.run_with_fallback(turn, use_llm)
            checkout = None if checkout is None else (checkout or confirmed)
        await self.write_db(
            lambda s: threads.save_thread_state(
                s, req.thread_id, cart=turn.cart.to_state(), state=turn.state
            )
        )
        if checkout is None:  # the model failed mid-reply: partial text kept, error sent
            await reply.store([req.thread_id], complete=False)
            await self._count_usage(req.shop_id, reply)
            return
        await reply.store([req.thread_id])
        if checkout:
            history = [
                *ctx.history,
                *([{"role": "user", "content": req.message}] if req.message else []),
            ]
            await handoff.hand_off(self, reply, req, ctx, turn.cart, history, use_llm)
        await self._count_usage(req.shop_id, reply)
        await reply.finish([req.thread_id])

    def follow(
        self,
        thread_id: str,
        after: int,
        *,
        turn_log: TurnLog | None = None,
        token: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """SSE events of the thread after ``after`` (see :mod:`server.chat.stream`)."""
        from server.chat.stream import follow

        return follow(self, thread_id, after, turn_log=turn_log, token=token)

    async def _count_usage(self, shop_id: str, reply: _Reply) -> None:
        if reply.tokens:
            n, reply.tokens = reply.tokens, 0
            await self.write_db(lambda s: threads.add_usage(s, shop_id, threads.today(), n))


class _Reply:
    """The assistant's side of one turn: text so far, and helpers that emit events."""

    def __init__(self, runner: ChatRunner, turn_log: TurnLog) -> None:
        self.runner = runner
        self.log = turn_log
        self.parts: list[str] = []
        self.text = False
        self.cart_changed = False
        self.stored_parts = 0
        self.message_id: int | None = None
        self.tokens = 0

    async def say(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.text = True
            await self.runner.emit(self.log, "delta", {"text": text})

    async def event(self, name: str, data: dict[str, Any]) -> None:
        await self.runner.emit(self.log, name, data)

    async def store(self, thread_ids: list[str], *, complete: bool = True) -> int | None:
        """Store the text said since the last call as one assistant message in each thread."""
        text = "".join(self.parts[self.stored_parts :])
        self.stored_parts = len(self.parts)
        if not text:
            return self.message_id

        def write(session: Any) -> int | None:
            ids = []
            for thread_id in thread_ids:
                ids.append(
                    threads.add_message(session, thread_id, "assistant", text, complete=complete).id
                )
                threads.count_message(session, thread_id)
            return ids[0]

        self.message_id = await self.runner.write_db(write)
        return self.message_id

    async def finish(self, thread_ids: list[str]) -> None:
        """Store what is left and send ``done``."""
        await self.store(thread_ids)
        await self.event("done", {"message_id": self.message_id})

    async def fail(self, code: str, message: str, retryable: bool = True) -> None:
        await self.runner.emit(
            self.log, "error", {"code": code, "message": message, "retryable": retryable}
        )

    async def run_waiter(self, waiter: Any, turn: Turn) -> bool:
        """Relay the waiter's events; True when it asked for the Cashier."""
        checkout = False
        async for ev in waiter.reply(turn):
            if isinstance(ev, TextDelta):
                await self.say(ev.text)
            elif isinstance(ev, CartChanged):
                turn.cart = ev.cart
                self.cart_changed = True
                await self.event("cart", {"cart": ev.cart.to_json()})
            elif isinstance(ev, Notice):
                await self.event("notice", {"text": ev.text})
            elif isinstance(ev, Usage):
                self.tokens += ev.prompt_tokens + ev.completion_tokens
            elif isinstance(ev, Checkout):
                checkout = True
        return checkout

    async def run_with_fallback(self, turn: Turn, use_llm: bool) -> bool | None:
        """The OpenAI Waiter, or the offline one when it fails before saying anything.

        Returns whether the customer checked out, or None when the turn ended in an error."""
        if not use_llm:
            return await self.run_waiter(offline_waiter(), turn)
        try:
            return await self.run_waiter(OpenAIWaiter(self.runner.llm, self.runner.settings), turn)
        except LLMUnavailable as err:
            if self.text or self.cart_changed:
                # Part of the answer is out (or the cart changed, which a second assistant
                # would repeat): keep it and the cart, end cleanly.
                await self.fail("upstream_error", f"{err} Please send your message again.")
                return None
            await self.event("notice", {"text": FALLBACK_NOTICE})
            return await self.run_waiter(offline_waiter(), turn)


def is_confirmation(req: TurnRequest) -> bool:
    return req.action == "checkout" or (bool(req.message) and is_checkout_phrase(req.message))


__all__ = ["BUDGET_NOTICE", "FALLBACK_NOTICE", "ChatRunner", "TurnLog", "TurnRequest"]
