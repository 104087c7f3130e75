"""Redis goes down and comes back: the bus reconnects, resubscribes and tells streams about the
gap; publishers never raise; rate limits keep working in-process meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.redis_bus import RETRY_REDIS_AFTER_SECONDS, RedisBus, RedisRateLimiter
from tests.scale.redis_process import RedisProcess

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path).start()
    yield proc
    proc.stop()


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def test_subscriber_survives_a_redis_restart(redis_proc: RedisProcess) -> None:
    publisher, listener = RedisBus(redis_proc.url), RedisBus(redis_proc.url)
    try:
        async with listener.subscribe("order:o1") as sub:
            await publisher.publish("order:o1", {"status": "awaiting_payment"})
            assert await sub.get(timeout=2) == {"status": "awaiting_payment"}

            redis_proc.stop()
            # Publishing into the outage does not raise: the database already holds the truth.
            await publisher.publish("order:o1", {"status": "lost-in-outage"})
            # The stream is woken with None (re-read the database) and learns about the gap.
            assert await sub.get(timeout=5) is None
            assert sub.reconnects >= 1

            redis_proc.start()
            await wait_until(listener.connected.is_set)
            await publisher.publish("order:o1", {"status": "paid"})
            message = None
            for _ in range(10):  # skip the gap wake-ups, if any
                message = await sub.get(timeout=2)
                if message is not None:
                    break
            assert message == {"status": "paid"}

        # A channel subscribed while Redis was down works once it is back.
        redis_proc.stop()
        async with listener.subscribe("order:o2") as late:
            redis_proc.start()
            await wait_until(listener.connected.is_set)
            await asyncio.sleep(0.1)  # the reader resubscribes right after connecting
            await publisher.publish("order:o2", {"status": "paid"})
            got = None
            for _ in range(10):
                got = await late.get(timeout=2)
                if got is not None:
                    break
            assert got == {"status": "paid"}
    finally:
        await publisher.close()
        await listener.close()


async def test_iteration_ends_after_a_gap_so_the_stream_can_restart(
    redis_proc: RedisProcess,
) -> None:
    """A dashboard-style ``async for`` stream ends on reconnect: its browser reconnects and
    re-reads the order list instead of silently missing what was published meanwhile."""
    bus = RedisBus(redis_proc.url)
    try:
        async with bus.subscribe("shop:s1") as sub:
            await bus.publish("shop:s1", {"type": "order_paid"})
            seen = []

            async def consume() -> None:
                async for message in sub:
                    seen.append(message)
                    if len(seen) == 1:
                        redis_proc.stop()
                        redis_proc.start()

            await asyncio.wait_for(consume(), timeout=15)
        assert seen == [{"type": "order_paid"}]
        assert sub.reconnects >= 1
    finally:
        await bus.close()


async def test_rate_limits_hold_through_an_outage_and_share_again_after(
    redis_proc: RedisProcess,
) -> None:
    a, b = RedisRateLimiter(redis_proc.url), RedisRateLimiter(redis_proc.url)
    try:
        assert await a.hit("ip:1", 2, 60) is None
        assert await b.hit("ip:1", 2, 60) is None
        assert await a.hit("ip:1", 2, 60) is not None  # shared: the third hit is refused

        redis_proc.stop()
        # Down: each process limits on its own rather than refusing everyone.
        assert await a.hit("ip:2", 1, 60) is None
        assert await a.hit("ip:2", 1, 60) is not None

        redis_proc.start()
        await asyncio.sleep(RETRY_REDIS_AFTER_SECONDS + 0.1)  # the limiter tries Redis again
        assert await a.hit("ip:3", 1, 60) is None
        assert await b.hit("ip:3", 1, 60) is not None
    finally:
        await a.close()
        await b.close()
