"""Publish/subscribe of thread, order and shop events.

Channels are plain strings: ``thread:{id}``, ``order:{id}``, ``shop:{id}``. The in-process bus
serves one process; :class:`RedisBus` (when ``REDIS_URL`` is set) carries the same messages
between processes. The database stays the truth: a subscriber that reconnects re-reads it, so a
message lost in a restart costs latency, never a paid order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol


class EventBus(Protocol):
    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...


class Subscription(Protocol):
    reconnects: int

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or ``None`` after ``timeout`` seconds. Also ``None`` early when
        the bus reconnected after an outage: a loop that re-reads the database on ``None``
        catches up on anything published during the gap."""
        ...

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Messages as they come. Over Redis the iteration ends after a reconnect (messages may
        have been missed): end the stream there, so the client reconnects and re-reads."""
        ...


class _QueueSubscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        # Times the bus lost and regained its link (always 0 in process); a stream that sees
        # it grow may have missed messages and should re-read the database.
        self.reconnects = 0

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()


class MemoryBus:
    """In-process bus: one asyncio queue per subscriber."""

    def __init__(self) -> None:
        self._subs: dict[str, set[_QueueSubscription]] = defaultdict(set)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        for sub in list(self._subs.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_QueueSubscription]:
        sub = _QueueSubscription()
        self._subs[channel].add(sub)
        try:
            yield sub
        finally:
            self._subs[channel].discard(sub)
            if not self._subs[channel]:
                del self._subs[channel]

    def subscriber_count(self, channel: str) -> int:
        return len(self._subs.get(channel, ()))

    async def close(self) -> None:
        self._subs.clear()


def make_bus(redis_url: str) -> EventBus:
    """The Redis bus when ``REDIS_URL`` is set, else the in-process one."""
    if redis_url:
        from server.redis_bus import RedisBus  # optional dependency

        return RedisBus(redis_url)
    return MemoryBus()
