"""Turn orchestration: one customer message -> a reply running in its own asyncio task.

The reply never depends on the HTTP connection. Each event gets the thread's next sequence
number, is kept in memory while the turn runs and published on ``thread:{id}``. Storage goes
through one writer thread, in order: the customer's message first (while the model already
answers; messages that arrive together share one transaction), then every running reply's
events together every ~100 ms (one bulk insert), then each turn's end in one transaction (the
reply, the cart, the tokens spent, the last events). No transaction is ever held across a
model call. One turn runs per thread across every worker: see :class:`ChatRunner`. The assistant's side of a turn is
:mod:`server.chat.reply`; followers (the POST response and the events endpoint) read through
:mod:`server.chat.stream`; the handoff to the Cashier is :mod:`server.chat.handoff`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.chat import handoff, threads
from server.chat.assistant import Turn
from server.chat.phrases import is_checkout_phrase, waiter_asked
from server.chat.reply import FALLBACK_NOTICE, Reply
from server.chat.tools import mentions_product
from server.db import Database
from server.errors import Conflict
from server.events import EventBus
from server.orders.cart import reprice
from server.ratelimit import MemoryRateLimiter, RateLimiter
from server.settings import Settings

log = logging.getLogger("shop_assist.chat")
T = TypeVar("T")

FLUSH_SECONDS = 0.1
USAGE_TTL = 10.0
BUDGET_NOTICE = "Our assistant is very busy today; continuing in simple mode."
BUSY = "A reply is still being written; wait for it to finish."
TOO_LONG = "The reply took too long; please send your message again."
# A turn's claim on its thread lives this long and the running turn renews it every third of
# that: a worker that dies mid-reply leaves its customer locked out for at most this long.
LOCK_SECONDS = 30.0


def turn_seconds(settings: Settings) -> float:
    """The longest a turn may wait for the model: every model round the Waiter may take and
    the Cashier's two drafts, each at its full timeout. A turn still waiting then ends with an
    error; its writes (the order, the reply's end) are never cut."""
    return settings.llm_timeout * (settings.llm_max_tool_rounds + 2)


@dataclass
class TurnRequest:
    """What the route checked and read before the reply starts."""

    shop_id: str
    ctx: threads.TurnContext
    message: str
    action: str | None
    client_ip: str = ""
    created_token: str | None = None  # set when this message opens a new thread

    @property
    def thread_id(self) -> str:
        return self.ctx.thread.id

    @property
    def role(self) -> str:
        return self.ctx.thread.role


@dataclass
class TurnLog:
    """The events of one running turn."""

    thread_id: str
    start_seq: int
    events: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False  # the thread's claim was given back

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.start_seq


class ChatRunner:
    """Runs replies in background tasks; one running turn per thread across every worker.

    A turn holds the limiter's claim ``turn:{thread_id}`` (Redis when configured, so it holds
    between workers) from before the thread is read until its last event is stored. The claim
    lives ``lock_seconds`` and a background task renews it every ``renew_seconds`` until it is
    given back, so a worker that dies mid-turn locks the thread only that long; a turn still
    waiting for the model ``turn_seconds`` after it began is cut."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        llm: Any,
        limiter: RateLimiter | None = None,
        *,
        max_turn_seconds: float | None = None,
        lock_seconds: float = LOCK_SECONDS,
        renew_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.llm = llm
        self.limiter: RateLimiter = limiter if limiter is not None else MemoryRateLimiter()
        self.turn_seconds = turn_seconds(settings) if max_turn_seconds is None else max_turn_seconds
        self.lock_seconds = lock_seconds
        self.renew_seconds = lock_seconds / 3 if renew_seconds is None else renew_seconds
        self.active: dict[str, TurnLog] = {}
        self._reserved: set[str] = set()
        # Per claimed thread: the task renewing its claim until it is given back.
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # One writer thread: SQLite has one writer anyway, and queued writes never contend
        # for its lock (the busy handler sleeps); writes also stay in submission order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-db")
        self._dirty: dict[str, TurnLog] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._opening: dict[str, asyncio.Future[None]] = {}
        # Customer messages waiting for the writer thread, stored together in one transaction
        # (the loop adds, the writer takes: hence the lock).
        self._to_open: list[tuple[TurnRequest, asyncio.Future[None]]] = []
        self._open_lock = threading.Lock()
        self._open_queued = False
        # Tokens each shop spent today, re-read from the database every USAGE_TTL seconds
        # (other workers count too); the budget is a daily cap, not an exact meter.
        self._usage: dict[str, tuple[float, str, int]] = {}

    # ------------------------------------------------------------ starting a turn

    async def claim(self, thread_id: str) -> None:
        """Claim the thread for a new turn, or Conflict while a reply to it is still running
        here or on another worker. Claim before reading the thread: the previous turn gives
        its claim back only once its last event is stored, so ``last_seq`` read after this
        is current. Give it back with :meth:`release` unless :meth:`start` follows."""
        if thread_id in self._reserved or thread_id in self.active:
            raise Conflict(BUSY)
        self._reserved.add(thread_id)
        try:
            taken = await self.limiter.claim(_lock_key(thread_id), self.lock_seconds)
        except BaseException:
            self._reserved.discard(thread_id)
            raise
        if not taken:
            self._reserved.discard(thread_id)
            raise Conflict(BUSY)
        self._keepers[thread_id] = asyncio.get_running_loop().create_task(
            self._keep_claim(thread_id), name="chat-turn-claim"
        )

    async def release(self, thread_id: str) -> None:
        """Give back a claim whose turn did not start."""
        try:
            await self._stop_keeping(thread_id)
        finally:
            try:
                await self.limiter.release(_lock_key(thread_id))
            finally:
                self._reserved.discard(thread_id)

    async def _keep_claim(self, thread_id: str) -> None:
        """Renew the thread's claim every ``renew_seconds`` until cancelled. A claim that
        lapsed is taken again when nobody else took it; one held by another worker is left to
        it (a warning: a second turn may run; handoff's order guard still allows one order).
        Failures are logged, never raised: the reply goes on either way."""
        key = _lock_key(thread_id)
        lost = False
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                held = await self.limiter.extend(key, self.lock_seconds)
                if not held:
                    held = await self.limiter.claim(key, self.lock_seconds)
            except Exception as exc:
                log.warning(
                    "could not renew a chat turn's claim: %r", exc, extra={"thread_id": thread_id}
                )
                continue
            if not held and not lost:
                log.warning(
                    "a chat turn lost its claim to another reply", extra={"thread_id": thread_id}
                )
            lost = not held

    async def _stop_keeping(self, thread_id: str) -> None:
        """Stop renewing the thread's claim; returns once no renewal can land any more."""
        keeper = self._keepers.pop(thread_id, None)
        if keeper is None:
            return
        keeper.cancel()
        await asyncio.wait([keeper])

    def start(self, req: TurnRequest) -> TurnLog:
        """Queue the customer's message for storage (creating the thread when new) and start
        the reply at once: the model call does not wait for that write, and the writer thread
        stores it before any event of the turn (it runs writes in order)."""
        loop = asyncio.get_running_loop()
        opening: asyncio.Future[None] = loop.create_future()
        with self._open_lock:
            self._to_open.append((req, opening))
            submit, self._open_queued = not self._open_queued, True
        if submit:
            # Joined by every message that arrives before the writer gets to it.
            loop.run_in_executor(self._writer, self._open_turns, loop)
        thread_id = req.thread_id
        self._opening[thread_id] = opening
        opening.add_done_callback(
            lambda done: (
                self._opening.pop(thread_id, None) if self._opening.get(thread_id) is done else None
            )
        )
        turn_log = TurnLog(req.thread_id, req.ctx.thread.last_seq)
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
        await self.flush_all()

    def _open_turns(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the writer thread: store every queued customer message (and new thread) in one
        transaction. When that fails, each is stored alone, so one bad message fails only
        its own turn."""
        with self._open_lock:
            batch, self._to_open = self._to_open, []
            self._open_queued = False
        if not batch:
            return
        outcomes: list[tuple[asyncio.Future[None], BaseException | None]] = []
        try:
            with self.db.write() as session:
                threads.open_turns(session, [_opening_of(req) for req, _ in batch])
            outcomes = [(future, None) for _, future in batch]
        except Exception as err:
            if len(batch) == 1:
                outcomes = [(batch[0][1], err)]
            else:
                for req, future in batch:
                    try:
                        with self.db.write() as session:
                            threads.open_turns(session, [_opening_of(req)])
                        outcomes.append((future, None))
                    except Exception as one_err:
                        outcomes.append((future, one_err))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, outcomes)

    async def turn_running(self, thread_id: str) -> bool:
        """Whether a turn of the thread runs (or is starting) here or on another worker: its
        claim is held. The claim is given back only after the turn's last event is stored."""
        if thread_id in self.active or thread_id in self._reserved:
            return True
        return await self.limiter.held(_lock_key(thread_id))

    async def opened(self, thread_id: str) -> None:
        """Wait until the thread's newest message (and the thread, when new) is stored."""
        opening = self._opening.get(thread_id)
        if opening is not None:
            await asyncio.shield(opening)

    def known_usage(self, shop_id: str) -> int | None:
        """Today's tokens of the shop when read recently, else None (read it)."""
        cached = self._usage.get(shop_id)
        if cached and cached[0] > time.monotonic() and cached[1] == threads.today():
            return cached[2]
        return None

    def note_usage(self, shop_id: str, tokens: int, *, added: bool = False) -> None:
        cached = self._usage.get(shop_id)
        if added:
            if cached and cached[1] == threads.today():
                self._usage[shop_id] = (cached[0], cached[1], cached[2] + tokens)
            return
        if len(self._usage) > 10_000:
            self._usage.clear()
        self._usage[shop_id] = (time.monotonic() + USAGE_TTL, threads.today(), tokens)

    # ------------------------------------------------------------ events

    async def emit(self, turn_log: TurnLog, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Number, publish and queue for storage one event of a running turn."""
        record = {"seq": turn_log.last_seq + 1, "event": event, "data": data}
        turn_log.events.append(record)
        turn_log.pending.append(record)
        await self.bus.publish(f"thread:{turn_log.thread_id}", record)
        self._dirty[turn_log.thread_id] = turn_log
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        return record

    def take_pending(self, turn_log: TurnLog) -> list[dict[str, Any]]:
        """The turn's events not stored yet (the caller stores them)."""
        self._dirty.pop(turn_log.thread_id, None)
        pending, turn_log.pending = turn_log.pending, []
        return pending

    async def flush_all(self) -> None:
        """Store the queued events of every running reply in one transaction."""
        rows = [(log.thread_id, e) for log in self._dirty.values() for e in log.pending]
        for log in self._dirty.values():
            log.pending = []
        self._dirty.clear()
        if rows:
            await self.write_db(lambda s: threads.insert_events(s, rows))

    async def _flush_loop(self) -> None:
        """Every FLUSH_SECONDS while replies run: a batch of ~100 ms of everyone's events."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await self.flush_all()
                except Exception:
                    log.exception("could not store chat events")
                if not self._dirty and not self.active:
                    return
        finally:
            self._flusher = None

    async def write_db(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)`` in one short write transaction on the writer thread."""

        def run() -> T:
            with self.db.write() as session:
                return fn(session)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def read_db(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)`` in a read transaction, off the event loop."""

        def run() -> T:
            with self.db.read() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    # ------------------------------------------------------------ the turn

    async def _run(self, req: TurnRequest, turn_log: TurnLog) -> None:
        # The deadline cuts only the waits for the model (Reply.model_time): a turn past it
        # while it stores its end or places its order finishes and is shown in full.
        deadline = asyncio.get_running_loop().time() + self.turn_seconds
        reply = Reply(self, turn_log, req.shop_id, deadline=deadline)
        try:
            await self.emit(turn_log, "thread", {"thread_id": req.thread_id, "role": req.role})
            try:
                await self._turn(req, reply)
            except TimeoutError:
                log.warning("chat turn cut at its deadline", extra={"thread_id": req.thread_id})
                if not reply.closed:
                    await reply.fail("timeout", TOO_LONG)
        except asyncio.CancelledError:
            self._store_now(turn_log, reply)
            raise
        except Exception:
            log.exception("chat turn failed", extra={"thread_id": req.thread_id})
            if not reply.closed:
                await reply.fail("internal", "Something went wrong; please try again.")
        finally:
            turn_log.finished.set()
            # Not ended by its last event (cut short, or a failure): writes it queued may
            # still be running; they are stored before the thread takes another message.
            await self.end_turn(turn_log, after_writes=True)

    async def end_turn(self, turn_log: TurnLog, *, after_writes: bool = False) -> None:
        """The turn's last event is stored: the thread takes its next message, here or on
        another worker. With ``after_writes``, first wait for every write queued so far.
        Only the first call does anything."""
        if turn_log.released:
            return
        turn_log.released = True
        try:
            if after_writes:
                # Cancelled once more (the loop is going): the claim is given back anyway.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(
                        asyncio.get_running_loop().run_in_executor(self._writer, _nothing)
                    )
            await self._stop_keeping(turn_log.thread_id)
        finally:
            if self.active.get(turn_log.thread_id) is turn_log:
                del self.active[turn_log.thread_id]
            try:
                await self.limiter.release(_lock_key(turn_log.thread_id))
            except Exception:  # the claim expires on its own
                log.exception("could not release a chat turn's claim")

    def _store_now(self, turn_log: TurnLog, reply: Reply) -> None:
        """Cancelled (shutdown): keep what was said, synchronously, before the loop goes."""
        try:
            pending = self.take_pending(turn_log)
            unsaved = "".join(reply.parts[reply.stored_parts :])
            with self.db.write() as session:
                threads.store_events(session, turn_log.thread_id, pending, **reply.thread_state)
                if unsaved:
                    threads.add_message(
                        session, turn_log.thread_id, "assistant", unsaved, complete=False
                    )
        except Exception:
            log.exception("could not store a cancelled reply")

    async def _turn(self, req: TurnRequest, reply: Reply) -> None:
        ctx = req.ctx
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
            # A Waiter that answered by asking ("which tea?") gets its answer before checkout.
            confirmed = confirmed and not waiter_asked(turn.state, "".join(reply.parts))
            checkout = None if checkout is None else (checkout or confirmed)
        reply.keep(cart=turn.cart.to_state(), state=turn.state)
        if checkout is None:  # the model failed mid-reply: partial text and cart kept
            await reply.fail("upstream_error", reply.failure)
            return
        if checkout:
            await reply.store([req.thread_id])  # the Cashier's copy includes this reply
            history = [
                *ctx.history,
                *([{"role": "user", "content": req.message}] if req.message else []),
            ]
            await handoff.hand_off(self, reply, req, ctx, turn.cart, history, use_llm)
        await reply.finish([req.thread_id])

    def follow(
        self,
        thread_id: str,
        after: int,
        *,
        turn_log: TurnLog | None = None,
        token: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """SSE events of the thread after ``after`` (see :mod:`server.chat.stream`)."""
        from server.chat.stream import follow

        return follow(self, thread_id, after, turn_log=turn_log, token=token, stop=stop)


def _opening_of(req: TurnRequest) -> threads.Opening:
    return threads.Opening(
        req.shop_id, req.thread_id, req.created_token, req.client_ip, req.message
    )


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, err in outcomes:
        if future.done():
            continue
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(err)


def _nothing() -> None:
    """A no-op for the writer thread: it returns once the writes queued before it ran."""


def _lock_key(thread_id: str) -> str:
    return f"turn:{thread_id}"


def is_confirmation(req: TurnRequest) -> bool:
    return req.action == "checkout" or (bool(req.message) and is_checkout_phrase(req.message))


__all__ = [
    "BUDGET_NOTICE",
    "BUSY",
    "FALLBACK_NOTICE",
    "TOO_LONG",
    "ChatRunner",
    "TurnLog",
    "TurnRequest",
    "turn_seconds",
]
