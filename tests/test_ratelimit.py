"""Rate limits and daily token budgets: in-process and shared through Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from server.ratelimit import MemoryRateLimiter, RateLimiter, make_limiter
from tests import services


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    from server.redis_bus import RedisRateLimiter

    lim = RedisRateLimiter(services.redis_url(), prefix=f"t{uuid.uuid4().hex[:8]}:")
    yield lim
    await lim.close()


async def test_allows_up_to_the_limit_then_says_how_long_to_wait(limiter: RateLimiter) -> None:
    results = [await limiter.hit("ip:1.2.3.4", 3, 60) for _ in range(5)]
    assert results[:3] == [None, None, None]
    assert all(r is not None and 1 <= r <= 60 for r in results[3:])


async def test_keys_are_counted_separately(limiter: RateLimiter) -> None:
    assert await limiter.hit("thread:a", 1, 60) is None
    assert await limiter.hit("thread:b", 1, 60) is None
    assert await limiter.hit("thread:a", 1, 60) is not None


async def test_daily_tokens_add_up_per_shop_and_day(limiter: RateLimiter) -> None:
    assert await limiter.add_tokens("shp_1", "2026-01-01", 100) == 100
    assert await limiter.add_tokens("shp_1", "2026-01-01", 50) == 150
    assert await limiter.add_tokens("shp_1", "2026-01-02", 7) == 7
    assert await limiter.add_tokens("shp_2", "2026-01-01", 1) == 1


async def test_a_claim_is_held_until_released(limiter: RateLimiter) -> None:
    assert await limiter.claim("turn:thr_1", 30) is True
    assert await limiter.claim("turn:thr_1", 30) is False  # a second reply must wait
    assert await limiter.claim("turn:thr_2", 30) is True  # other threads are free
    await limiter.release("turn:thr_1")
    assert await limiter.claim("turn:thr_1", 30) is True


async def test_a_claim_expires(limiter: RateLimiter) -> None:
    """A worker that died holding a claim does not block the thread forever."""
    import asyncio

    assert await limiter.claim("turn:thr_x", 0.05) is True
    await asyncio.sleep(0.2)
    assert await limiter.claim("turn:thr_x", 30) is True


async def test_memory_window_resets_after_the_window() -> None:
    clock = FakeClock()
    lim = MemoryRateLimiter(clock=clock)
    assert await lim.hit("k", 1, 10) is None
    clock.now += 4
    assert await lim.hit("k", 1, 10) == 6
    clock.now += 6
    assert await lim.hit("k", 1, 10) is None


@pytest.mark.redis
async def test_redis_limit_is_shared_by_two_processes() -> None:
    """Two workers = two limiters on one Redis: together they allow the limit, not twice it."""
    from server.redis_bus import RedisRateLimiter

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a = RedisRateLimiter(services.redis_url(), prefix=prefix)
    b = RedisRateLimiter(services.redis_url(), prefix=prefix)
    try:
        allowed = 0
        for i in range(10):
            if await (a if i % 2 else b).hit("ip:9.9.9.9", 4, 60) is None:
                allowed += 1
        assert allowed == 4
        assert await a.add_tokens("shp", "2026-01-01", 10) == 10
        assert await b.add_tokens("shp", "2026-01-01", 5) == 15
        # One reply per thread across workers: B cannot claim what A holds; A's release frees it,
        # and B's release does not drop a claim it does not hold.
        assert await a.claim("turn:thr_9", 30) is True
        assert await b.claim("turn:thr_9", 30) is False
        await b.release("turn:thr_9")
        assert await b.claim("turn:thr_9", 30) is False
        await a.release("turn:thr_9")
        assert await b.claim("turn:thr_9", 30) is True
    finally:
        await a.close()
        await b.close()


async def test_redis_limiter_falls_back_to_this_process_when_redis_is_unreachable() -> None:
    from server.redis_bus import RedisRateLimiter

    lim = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert await lim.hit("k", 1, 60) is None
    assert await lim.hit("k", 1, 60) is not None
    assert await lim.add_tokens("shp", "2026-01-01", 3) == 3
    await lim.close()


def test_make_limiter_picks_redis_only_when_configured() -> None:
    from server.redis_bus import RedisRateLimiter

    assert isinstance(make_limiter(""), MemoryRateLimiter)
    assert isinstance(make_limiter("redis://127.0.0.1:6379/15"), RedisRateLimiter)
