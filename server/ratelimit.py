"""Rate limits: fixed windows counted per key, daily token counts, and short-lived claims (one
reply per thread). In-process by default; Redis (shared by every worker) when ``REDIS_URL`` is
set."""

from __future__ import annotations

import time
from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        """Count one hit. Returns ``None`` when allowed, else seconds until the window resets."""
        ...

    async def add_tokens(self, shop_id: str, day: str, n: int) -> int:
        """Add ``n`` LLM tokens to the shop's count for ``day`` (``YYYY-MM-DD``, UTC) and
        return the day's total so far (compare it with ``settings.shop_daily_tokens``)."""
        ...

    async def claim(self, key: str, ttl_seconds: float) -> bool:
        """Take ``key`` for ``ttl_seconds`` (one reply per thread across every worker); False
        while someone else holds it. Keep it with :meth:`extend`, give it back with
        :meth:`release`; a holder that does neither (it died) loses it after ``ttl_seconds``."""
        ...

    async def extend(self, key: str, ttl_seconds: float) -> bool:
        """Make a claim this limiter still holds last ``ttl_seconds`` from now. False (and
        nothing changes) when it expired, was never taken, or someone else holds it now."""
        ...

    async def release(self, key: str) -> None:
        """Give back a claim this limiter holds (a no-op when it expired, was never taken, or
        someone else took it since). Never raises for an outage: the claim expires anyway."""
        ...

    async def held(self, key: str) -> bool:
        """Whether anyone (any worker) holds the claim ``key`` now. Never raises for an
        outage: True then, since another worker may hold it."""
        ...


class MemoryRateLimiter:
    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        self._claims: dict[str, float] = {}

    async def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        now = self._clock()  # type: ignore[operator]
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window_seconds:
            start, count = now, 0
        if count >= limit:
            return max(1, int(window_seconds - (now - start) + 0.999))
        self._windows[key] = (start, count + 1)
        if len(self._windows) > 100_000:  # drop expired windows now and then
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 3600}
        return None

    async def add_tokens(self, shop_id: str, day: str, n: int) -> int:
        key = (shop_id, day)
        total = self._tokens.get(key, 0) + n
        self._tokens[key] = total
        if len(self._tokens) > 50_000:  # keep only today's and yesterday's counts
            recent = sorted({d for _, d in self._tokens})[-2:]
            self._tokens = {k: v for k, v in self._tokens.items() if k[1] in recent}
        return total

    async def claim(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock()  # type: ignore[operator]
        until = self._claims.get(key)
        if until is not None and until > now:
            return False
        self._claims[key] = now + ttl_seconds
        if len(self._claims) > 10_000:
            self._claims = {k: v for k, v in self._claims.items() if v > now}
        return True

    async def extend(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock()  # type: ignore[operator]
        until = self._claims.get(key)
        if until is None or until <= now:
            return False  # lapsed: whoever claims it next holds it, not us
        self._claims[key] = now + ttl_seconds
        return True

    async def release(self, key: str) -> None:
        # One process, one holder: the chat runner keeps one turn per thread in a process, so
        # the claim under ``key`` is always the caller's (no holder token needed here).
        self._claims.pop(key, None)

    async def held(self, key: str) -> bool:
        until = self._claims.get(key)
        return until is not None and until > self._clock()  # type: ignore[operator]


def make_limiter(redis_url: str) -> RateLimiter:
    """The Redis limiter when ``REDIS_URL`` is set (shared by every worker), else in-process."""
    if redis_url:
        from server.redis_bus import RedisRateLimiter

        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()
