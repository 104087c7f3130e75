"""Rate limits and daily token budgets: in-process and shared through Redis."""

from __future__ import annotations

import asyncio
import time
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


async def test_whether_a_claim_is_held_is_seen_by_every_limiter_on_the_same_store(
    limiter: RateLimiter,
) -> None:
    """A follower on one worker asks whether a reply runs on another: the claim tells."""
    other = limiter
    if not isinstance(limiter, MemoryRateLimiter):
        from server.redis_bus import RedisRateLimiter

        other = RedisRateLimiter(limiter.url, prefix=limiter.prefix)  # type: ignore[attr-defined]
    assert await other.held("turn:thr_1") is False
    assert await limiter.claim("turn:thr_1", 30) is True
    assert await other.held("turn:thr_1") is True
    assert await other.held("turn:thr_2") is False
    await limiter.release("turn:thr_1")
    assert await other.held("turn:thr_1") is False
    assert await limiter.claim("turn:thr_3", 0.05) is True
    await asyncio.sleep(0.2)
    assert await other.held("turn:thr_3") is False  # expired: its worker died
    if other is not limiter:
        await other.close()  # type: ignore[attr-defined]


async def test_a_claim_expires(limiter: RateLimiter) -> None:
    """A worker that died holding a claim does not block the thread forever."""
    assert await limiter.claim("turn:thr_x", 0.05) is True
    await asyncio.sleep(0.2)
    assert await limiter.claim("turn:thr_x", 30) is True


async def test_a_renewed_claim_outlives_its_ttl_and_a_lapsed_one_is_not_renewed() -> None:
    """A running reply renews its claim; a dead worker's claim lapses after its ttl, and
    renewing it then does not bring it back."""
    clock = FakeClock()
    lim = MemoryRateLimiter(clock=clock)
    assert await lim.claim("turn:thr_1", 30) is True
    for _ in range(4):  # 80 s: well past the 30 s a claim lives without renewal
        clock.now += 20
        assert await lim.extend("turn:thr_1", 30) is True
        assert await lim.claim("turn:thr_1", 30) is False
    clock.now += 30.5
    assert await lim.extend("turn:thr_1", 30) is False
    assert await lim.claim("turn:thr_1", 30) is True  # the next reply takes the thread


async def test_nothing_to_renew_for_a_claim_never_taken_or_given_back(
    limiter: RateLimiter,
) -> None:
    assert await limiter.extend("turn:thr_none", 30) is False
    assert await limiter.claim("turn:thr_1", 30) is True
    await limiter.release("turn:thr_1")
    assert await limiter.extend("turn:thr_1", 30) is False
    assert await limiter.claim("turn:thr_1", 30) is True


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


@pytest.mark.redis
async def test_redis_claims_are_renewed_and_given_back_only_by_their_holder() -> None:
    from redis.asyncio import Redis

    from server.redis_bus import RedisRateLimiter

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a = RedisRateLimiter(services.redis_url(), prefix=prefix)
    b = RedisRateLimiter(services.redis_url(), prefix=prefix)
    redis = Redis.from_url(services.redis_url())
    key = f"{prefix}claim:turn:thr_1"
    try:
        assert await a.claim("turn:thr_1", 1) is True
        assert 0 < await redis.pttl(key) <= 1000
        # Another worker can neither renew nor free it.
        assert await b.extend("turn:thr_1", 60) is False
        await b.release("turn:thr_1")
        assert 0 < await redis.pttl(key) <= 1000
        assert await b.claim("turn:thr_1", 30) is False
        # Its holder renews it for a new lifetime.
        assert await a.extend("turn:thr_1", 60) is True
        assert 1000 < await redis.pttl(key) <= 60_000
        # A claim that lapsed and went to another worker stays theirs: the first holder's
        # late renewal and release leave it alone.
        assert await a.extend("turn:thr_1", 0.05) is True
        await asyncio.sleep(0.15)
        assert await b.claim("turn:thr_1", 30) is True
        assert await a.extend("turn:thr_1", 60) is False
        await a.release("turn:thr_1")
        assert await a.claim("turn:thr_1", 30) is False
        assert 1000 < await redis.pttl(key) <= 30_000
    finally:
        await redis.delete(key)
        await redis.aclose()
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_a_redis_claim_is_given_back_and_renewed_right_after_a_blip() -> None:
    """Redis failed a moment ago (this worker still counts in-process), but it is back: the
    claim is renewed and given back in Redis, so the next reply does not wait for it to
    expire."""
    from server.redis_bus import RETRY_REDIS_AFTER_SECONDS, RedisRateLimiter

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a = RedisRateLimiter(services.redis_url(), prefix=prefix)
    b = RedisRateLimiter(services.redis_url(), prefix=prefix)
    try:
        assert await a.claim("turn:thr_1", 30) is True
        a._down_until = time.monotonic() + 10 * RETRY_REDIS_AFTER_SECONDS  # the blip
        assert await a.extend("turn:thr_1", 30) is True
        await a.release("turn:thr_1")
        assert await b.claim("turn:thr_1", 30) is True
    finally:
        await a.close()
        await b.close()


async def test_giving_back_a_claim_while_redis_is_unreachable_does_not_raise() -> None:
    from server.redis_bus import RedisRateLimiter

    lim = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    lim._claims["turn:thr_1"] = "token"  # taken before Redis went away
    assert await lim.extend("turn:thr_1", 30) is False
    await lim.release("turn:thr_1")
    # Marked down now: claims are taken in-process, renewed and given back there.
    assert await lim.claim("turn:thr_2", 30) is True
    assert await lim.extend("turn:thr_2", 30) is True
    await lim.release("turn:thr_2")
    assert await lim.claim("turn:thr_2", 30) is True
    await lim.close()


async def test_while_redis_is_unreachable_a_claim_counts_as_held() -> None:
    """Another worker may hold it: a follower keeps waiting rather than cut a reply short."""
    from server.redis_bus import RedisRateLimiter

    lim = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert await lim.held("turn:thr_1") is True
    assert await lim.held("turn:thr_1") is True  # marked down: no second try
    await lim.close()


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
