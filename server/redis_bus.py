"""Redis-backed event bus and rate limiter, shared by every worker and machine.

:class:`RedisBus` carries :mod:`server.events` messages over Redis pub/sub. Each process keeps ONE
subscriber connection and fans messages out to its local subscriptions, so a thousand open
streams cost one Redis connection, not a thousand. When Redis goes away the reader reconnects
with backoff and resubscribes every channel; subscriptions learn about the gap (``get()`` returns
``None`` early, ``async for`` ends, ``sub.reconnects`` grows) so a stream can re-read the
database, which stays the truth. A publish that fails is retried once, then logged and dropped: the row it announces
is already committed.

:class:`RedisRateLimiter` counts fixed windows with one atomic Lua script (INCR + PEXPIRE + PTTL)
and falls back to an in-process limiter while Redis is unreachable, so an outage loosens limits
to per-process ones instead of refusing customers. A claim is a key holding a random token of
this limiter's (``SET NX PX``); renewing and giving it back compare that token first, in one Lua
script, so a claim that expired and was taken by another worker is never renewed or freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.events import _QueueSubscription
from server.ratelimit import MemoryRateLimiter

log = logging.getLogger("shop_assist.redis")

DEFAULT_PREFIX = "sa:"
# Commands from hundreds of concurrent streams queue for one of these connections (redis-py's
# default pool refuses the 101st concurrent command with "Too many connections").
POOL_CONNECTIONS = 32
POOL_WAIT_SECONDS = 5.0
PUBLISH_BATCH = 500  # messages per pipelined round trip at most
_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# How long subscribe() waits for Redis to confirm, so a publish right after is not missed.
SUBSCRIBE_CONFIRM_SECONDS = 2.0


def _pooled_client(url: str, **kwargs: Any) -> Redis:
    """A client whose commands wait for a free pooled connection instead of failing."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_connect_timeout=2,
        **kwargs,
    )
    return Redis(connection_pool=pool)


class _Resync:
    """Wakes ``get()`` with ``None`` after a reconnect (a gap the stream should re-read)."""


class RedisSubscription(_QueueSubscription):
    """A local subscription fed by the bus's single reader. ``reconnects`` counts gaps."""

    def __init__(self) -> None:
        super().__init__()
        self.reconnects = 0

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        message = await super().get(timeout)
        return None if isinstance(message, _Resync) else message

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Messages until a gap: iteration ends after Redis reconnected, because messages may
        be missing. A stream built on ``async for`` then ends and its browser reconnects and
        re-reads the database (``get()`` users see ``None`` instead)."""
        while True:
            message = await self.queue.get()
            if isinstance(message, _Resync):
                return
            yield message


class RedisBus:
    """:class:`server.events.EventBus` over Redis pub/sub (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, max_backoff: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.max_backoff = max_backoff
        self._subs: dict[str, set[RedisSubscription]] = defaultdict(set)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Redis | None = None
        self._subscriber: Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._down = False  # the reader failed to reach Redis and is retrying
        self.connected = asyncio.Event()
        # Messages waiting for the publisher task, sent in order, many per round trip.
        self._outbox: list[tuple[str, str, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    # -- connections (bound to the running loop; a new loop gets new clients) -------------
    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        # Publishers retry once on a broken connection; the reader handles its own reconnects.
        self._publisher = _pooled_client(
            self.url, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1), socket_timeout=5
        )
        self._subscriber = Redis.from_url(
            self.url,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            health_check_interval=10,
        )
        self._pubsub = None
        self._reader = None
        self.connected = asyncio.Event()
        self._confirmed = {}
        self._outbox = []
        self._sender = None

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(
                self._read_forever(), name="redis-bus-reader"
            )

    # -- EventBus ----------------------------------------------------------------------------
    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Publish to every process; returns once Redis has it. Never raises for a Redis
        outage (logged instead). Messages published while others are on their way go out
        together, in order, in one pipelined round trip: hundreds of streams publishing at
        once do not queue for pooled connections."""
        self._bind()
        payload = json.dumps(message, separators=(",", ":"), default=str)
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((channel, payload, sent))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(
                self._send_outbox(), name="redis-bus-publisher"
            )
        # A cancelled caller does not take its message back: it still goes out in order.
        await asyncio.shield(sent)

    async def _send_outbox(self) -> None:
        assert self._publisher is not None
        while self._outbox:
            batch = self._outbox[:PUBLISH_BATCH]
            del self._outbox[:PUBLISH_BATCH]
            try:
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for channel, payload, _ in batch:
                        pipe.publish(self.prefix + channel, payload)
                    await pipe.execute()
            except _LINK_ERRORS as exc:
                # Redis is unreachable: what queued behind this batch meanwhile is dropped
                # too, at once, rather than each batch waiting out its own connect timeout
                # (streams re-read the database; the database stays the truth).
                batch += self._outbox
                self._outbox = []
                log.warning(
                    "redis publish of %d messages (to %s...) dropped: %s",
                    len(batch),
                    batch[0][0],
                    exc,
                )
            except Exception as exc:  # protocol errors: log, and keep sending the rest
                log.error("redis publish of %d messages failed: %r", len(batch), exc)
            finally:
                for _, _, sent in batch:
                    if not sent.done():
                        sent.set_result(None)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[RedisSubscription]:
        """Listen on ``channel``; returns once Redis confirmed (or after a short wait when
        Redis is down: the subscription starts working when Redis comes back)."""
        self._bind()
        sub = RedisSubscription()
        first = not self._subs.get(channel)
        self._subs[channel].add(sub)
        try:
            if first:
                self._confirmed[channel] = asyncio.Event()
                await self._send_subscribe(channel)
            self._ensure_reader()
            event = self._confirmed.get(channel)
            # While Redis is known to be down there is nothing to wait for: the reader
            # subscribes this channel when it reconnects.
            if event is not None and not self._down:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), SUBSCRIBE_CONFIRM_SECONDS)
            yield sub
        finally:
            self._subs[channel].discard(sub)
            if not self._subs[channel]:
                del self._subs[channel]
                self._confirmed.pop(channel, None)
                if self._pubsub is not None and self._pubsub.connection is not None:
                    with contextlib.suppress(*_LINK_ERRORS, RedisError):
                        await self._pubsub.unsubscribe(self.prefix + channel)

    def subscriber_count(self, channel: str) -> int:
        return len(self._subs.get(channel, ()))

    async def close(self) -> None:
        if self._sender is not None and self._loop is asyncio.get_running_loop():
            # What was published before closing still goes out.
            with contextlib.suppress(Exception):
                await self._sender
        self._closed = True
        if self._reader is not None and self._loop is asyncio.get_running_loop():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_LINK_ERRORS, RedisError):
                await self._reader
        for client in (self._publisher, self._subscriber):
            if client is not None:
                with contextlib.suppress(*_LINK_ERRORS, RedisError, RuntimeError):
                    await client.aclose()
        self._subs.clear()

    # -- the reader ----------------------------------------------------------------------------
    async def _send_subscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or pubsub.connection is None:
            return  # the reader subscribes every channel when it (re)connects
        # On a broken link the reader notices and resubscribes every channel after reconnecting.
        with contextlib.suppress(*_LINK_ERRORS):
            await pubsub.subscribe(self.prefix + channel)

    async def _read_forever(self) -> None:
        backoff = 0.05
        had_connection = False
        while not self._closed:
            assert self._subscriber is not None
            pubsub = self._subscriber.pubsub()
            try:
                # Ping first: a pubsub with no channels is not connected yet.
                await pubsub.ping()
                self._pubsub = pubsub
                channels = [self.prefix + c for c in list(self._subs)]
                if channels:
                    await pubsub.subscribe(*channels)
                if had_connection:
                    log.warning("redis bus reconnected; %d channel(s) resubscribed", len(channels))
                    self._announce_gap()
                had_connection = True
                self._down = False
                self.connected.set()
                backoff = 0.05
                while not self._closed:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except (*_LINK_ERRORS, RedisError) as exc:
                if had_connection and self.connected.is_set():
                    log.warning("redis bus lost its connection: %s", exc)
                    self._announce_gap()
                self.connected.clear()
                self._down = True
                for event in self._confirmed.values():
                    event.clear()
                self._pubsub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                if self._pubsub is pubsub:
                    self._pubsub = None

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        raw_channel = message.get("channel") or ""
        if not raw_channel.startswith(self.prefix):
            return
        channel = raw_channel[len(self.prefix) :]
        if kind == "subscribe":
            event = self._confirmed.get(channel)
            # While Redis is known to be down there is nothing to wait for: the reader
            # subscribes this channel when it reconnects.
            if event is not None and not self._down:
                event.set()
            return
        if kind != "message":
            return
        try:
            data = json.loads(message["data"])
        except (TypeError, ValueError):
            log.error("redis bus: undecodable message on %s", channel)
            return
        for sub in list(self._subs.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(data)

    def _announce_gap(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.reconnects += 1
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(_Resync())  # type: ignore[arg-type]


# Atomic fixed window: count, set the expiry on the first hit, report the time left.
_HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""

_ADD_TOKENS_SCRIPT = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return total
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

TOKEN_KEY_TTL_SECONDS = 3 * 86_400
RETRY_REDIS_AFTER_SECONDS = 1.0
# While Redis is marked down, renewing or giving back a claim still tries Redis, for this long:
# a claim given back during a blip would otherwise lock its thread until it expires.
CLAIM_TRY_SECONDS = 0.5


class RedisRateLimiter:
    """:class:`server.ratelimit.RateLimiter` shared by every process through Redis."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.fallback = MemoryRateLimiter()
        self._down_until = 0.0
        self._claims: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: Redis | None = None

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._redis is None:
            self._loop = loop
            self._redis = _pooled_client(self.url, retry=Retry(NoBackoff(), 1), socket_timeout=2)
        return self._redis

    def _redis_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, exc: BaseException) -> None:
        # Skip Redis for a moment, so an outage does not add a connect timeout to every request.
        self._down_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
        log.warning("rate limits fall back to this process for now (redis: %s)", exc)

    async def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        """Count one hit; ``None`` when allowed, else whole seconds until the window resets."""
        if self._redis_down():
            return await self.fallback.hit(key, limit, window_seconds)
        try:
            count, ttl_ms = await self._client().eval(
                _HIT_SCRIPT, 1, f"{self.prefix}rl:{key}", str(window_seconds * 1000)
            )
        except (*_LINK_ERRORS, RedisError) as exc:
            self._failed(exc)
            return await self.fallback.hit(key, limit, window_seconds)
        if int(count) <= limit:
            return None
        return max(1, -(-int(ttl_ms) // 1000))

    async def add_tokens(self, shop_id: str, day: str, n: int) -> int:
        """Add ``n`` LLM tokens to a shop's count for ``day`` (``YYYY-MM-DD``); the new total."""
        if self._redis_down():
            return await self.fallback.add_tokens(shop_id, day, n)
        try:
            total = await self._client().eval(
                _ADD_TOKENS_SCRIPT,
                1,
                f"{self.prefix}tok:{shop_id}:{day}",
                str(n),
                str(TOKEN_KEY_TTL_SECONDS),
            )
        except (*_LINK_ERRORS, RedisError) as exc:
            self._failed(exc)
            return await self.fallback.add_tokens(shop_id, day, n)
        return int(total)

    async def claim(self, key: str, ttl_seconds: float) -> bool:
        """``SET NX PX``: one holder across every worker until released or expired."""
        if self._redis_down():
            return await self.fallback.claim(key, ttl_seconds)
        token = uuid.uuid4().hex
        try:
            taken = await self._client().set(
                f"{self.prefix}claim:{key}", token, nx=True, px=max(1, int(ttl_seconds * 1000))
            )
        except (*_LINK_ERRORS, RedisError) as exc:
            self._failed(exc)
            return await self.fallback.claim(key, ttl_seconds)
        if taken:
            self._claims[key] = token
        return bool(taken)

    async def extend(self, key: str, ttl_seconds: float) -> bool:
        """``PEXPIRE`` the claim only while it still holds this limiter's token."""
        token = self._claims.get(key)
        if token is None:  # taken while Redis was down: it lives in this process
            return await self.fallback.extend(key, ttl_seconds)
        try:
            async with asyncio.timeout(self._claim_timeout()):
                renewed = await self._client().eval(
                    _EXTEND_SCRIPT,
                    1,
                    f"{self.prefix}claim:{key}",
                    token,
                    str(max(1, int(ttl_seconds * 1000))),
                )
        except (*_LINK_ERRORS, RedisError) as exc:
            self._claim_failed("renew", key, exc)
            return await self.fallback.extend(key, ttl_seconds)
        return bool(int(renewed))

    async def release(self, key: str) -> None:
        """Delete the claim only while it still holds this limiter's token. Tried even while
        Redis is marked down (briefly); never raises: an unreleased claim expires."""
        token = self._claims.pop(key, None)
        await self.fallback.release(key)
        if token is None:
            return
        try:
            async with asyncio.timeout(self._claim_timeout()):
                await self._client().eval(_RELEASE_SCRIPT, 1, f"{self.prefix}claim:{key}", token)
        except (*_LINK_ERRORS, RedisError) as exc:
            self._claim_failed("give back", key, exc)

    async def held(self, key: str) -> bool:
        """Whether any worker holds the claim (``EXISTS``). True while Redis is unreachable:
        another worker may hold it, and a chat follower then keeps waiting for its events."""
        if self._redis_down():
            return True
        try:
            async with asyncio.timeout(self._claim_timeout()):
                return bool(await self._client().exists(f"{self.prefix}claim:{key}"))
        except (*_LINK_ERRORS, RedisError) as exc:
            self._claim_failed("look up", key, exc)
            return True

    def _claim_timeout(self) -> float | None:
        # Healthy: the client's own timeouts apply. Marked down: one short try.
        return CLAIM_TRY_SECONDS if self._redis_down() else None

    def _claim_failed(self, what: str, key: str, exc: BaseException) -> None:
        self._down_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
        log.warning(
            "could not %s the claim %s in redis (it expires on its own): %r", what, key, exc
        )

    async def close(self) -> None:
        if self._redis is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(*_LINK_ERRORS, RedisError):
                await self._redis.aclose()
        self._redis = None
