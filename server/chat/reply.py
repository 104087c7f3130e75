"""The assistant's side of one turn: what it said so far, the events it sends, and how the
turn ends (``done`` or ``error``) in one transaction with everything the turn changed.

It relays a Waiter's events (text, cart changes, notices, token usage, the checkout) and
falls back to the offline Waiter when the model fails before saying anything.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from server.chat import threads
from server.chat.assistant import CartChanged, Checkout, Notice, TextDelta, Turn, Usage
from server.chat.llm import LLMUnavailable
from server.chat.waiter import OpenAIWaiter

if TYPE_CHECKING:
    from server.chat.runner import ChatRunner, TurnLog

FALLBACK_NOTICE = "Our assistant is having trouble; continuing in simple mode."


def offline_waiter() -> Any:
    from server.chat.offline import OfflineWaiter

    return OfflineWaiter()


class Reply:
    """The assistant's side of one turn: text so far, and helpers that emit events."""

    def __init__(
        self,
        runner: ChatRunner,
        turn_log: TurnLog,
        shop_id: str = "",
        *,
        deadline: float | None = None,
    ) -> None:
        self.runner = runner
        self.log = turn_log
        self.shop_id = shop_id
        # When (event loop time) the model must have answered by; None: no deadline.
        self.deadline = deadline
        self.parts: list[str] = []
        self.text = False
        self.cart_changed = False
        self.stored_parts = 0
        self.message_id: int | None = None
        self.tokens = 0
        self.closed = False
        self.failure = ""
        # The thread's cart and assistant memory as the turn leaves them: stored with the
        # reply and its last event, in the same UPDATE of the thread row.
        self.thread_state: dict[str, Any] = {}

    def model_time(self) -> asyncio.Timeout:
        """Around a wait for the model: it is cut (TimeoutError) at the turn's deadline. Only
        that wait is: what the turn stores and sends once the model answered (the order, the
        last event) runs to its end, so nothing is stored that the customer is not shown."""
        return asyncio.timeout_at(self.deadline)

    def keep(
        self, *, cart: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> None:
        """The cart and memory to store on the turn's thread when the turn ends."""
        if cart is not None:
            self.thread_state["cart"] = cart
        if state is not None:
            self.thread_state["state"] = state

    async def say(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.text = True
            await self.runner.emit(self.log, "delta", {"text": text})

    async def event(self, name: str, data: dict[str, Any]) -> None:
        await self.runner.emit(self.log, name, data)

    def _unsaved(self) -> str:
        text = "".join(self.parts[self.stored_parts :])
        self.stored_parts = len(self.parts)
        return text

    def _save_message(
        self,
        session: Any,
        thread_ids: list[str],
        text: str,
        complete: bool,
        counted: str | None = None,
    ) -> None:
        """One assistant message in each thread; ``counted`` is a thread whose message count
        the caller advances itself (in the UPDATE that stores the turn's last events)."""
        ids = []
        for thread_id in thread_ids:
            ids.append(
                threads.insert_message(session, thread_id, "assistant", text, complete=complete)
            )
            if thread_id != counted:
                threads.count_message(session, thread_id)
        self.message_id = ids[0]

    async def store(self, thread_ids: list[str], *, complete: bool = True) -> int | None:
        """Store the text said since the last call as one assistant message in each thread."""
        text = self._unsaved()
        await self.runner.opened(self.log.thread_id)
        if text:
            await self.runner.write_db(lambda s: self._save_message(s, thread_ids, text, complete))
        return self.message_id

    async def _close(self, event: str, data: Any, thread_ids: list[str], complete: bool) -> None:
        """One transaction: the rest of the reply, the tokens spent, and every event not
        stored yet with the last one, the thread's cart and memory in the same UPDATE; then
        the last event goes out."""
        text = self._unsaved()
        kept, self.thread_state = self.thread_state, {}
        tokens, self.tokens = self.tokens, 0
        pending = self.runner.take_pending(self.log)
        seq = self.log.last_seq + 1
        shop_id, thread_id = self.shop_id, self.log.thread_id
        self.closed = True

        def write(session: Any) -> dict[str, Any]:
            counted = 0
            if text:
                self._save_message(session, thread_ids, text, complete, counted=thread_id)
                counted = int(thread_id in thread_ids)
            if tokens and shop_id:
                threads.add_usage(session, shop_id, threads.today(), tokens)
            payload = data(self.message_id) if callable(data) else data
            record = {"seq": seq, "event": event, "data": payload}
            threads.store_events(session, thread_id, [*pending, record], messages=counted, **kept)
            return record

        await self.runner.opened(thread_id)
        record = await self.runner.write_db(write)
        if tokens:
            self.runner.note_usage(shop_id, tokens, added=True)
        # Stored and the thread given back before the last event is visible (followers also
        # read ``self.log.events``): whoever sees ``done`` finds the reply in the database,
        # and the thread already takes the next message, on any worker.
        await self.runner.end_turn(self.log)
        self.log.events.append(record)
        await self.runner.bus.publish(f"thread:{thread_id}", record)

    async def finish(self, thread_ids: list[str]) -> None:
        """Store what is left and send ``done``."""
        await self._close("done", lambda mid: {"message_id": mid}, thread_ids, True)

    async def fail(self, code: str, message: str, retryable: bool = True) -> None:
        """End the turn with an ``error``; the partial reply and the cart are kept."""
        data = {"code": code, "message": message, "retryable": retryable}
        await self._close("error", data, [self.log.thread_id], False)

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

        Returns whether the customer checked out, or None when the turn ended in an error.
        Cut at the turn's deadline."""
        async with self.model_time():
            if not use_llm:
                return await self.run_waiter(offline_waiter(), turn)
            try:
                waiter = OpenAIWaiter(self.runner.llm, self.runner.settings)
                return await self.run_waiter(waiter, turn)
            except LLMUnavailable as err:
                if self.text or self.cart_changed:
                    # Part of the answer is out (or the cart changed, which a second
                    # assistant would repeat): the turn ends with an error, keeping both.
                    self.failure = f"{err} Please send your message again."
                    return None
                await self.event("notice", {"text": FALLBACK_NOTICE})
                return await self.run_waiter(offline_waiter(), turn)
