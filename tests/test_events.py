"""The event bus: in-process and over Redis, the same behaviour a stream relies on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from server.events import EventBus, MemoryBus, make_bus
from tests import services


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        b: EventBus = MemoryBus()
    else:
        from server.redis_bus import RedisBus

        b = RedisBus(services.redis_url(), prefix=f"t{uuid.uuid4().hex[:8]}:")
    yield b
    await b.close()


async def test_subscriber_receives_what_is_published_after_it_subscribed(bus: EventBus) -> None:
    async with bus.subscribe("order:o1") as sub:
        await bus.publish("order:o1", {"status": "paid", "amount": 1250})
        assert await sub.get(timeout=2) == {"status": "paid", "amount": 1250}


async def test_channels_are_separate_and_every_subscriber_gets_a_copy(bus: EventBus) -> None:
    async with (
        bus.subscribe("shop:a") as one,
        bus.subscribe("shop:a") as two,
        bus.subscribe("shop:b") as other,
    ):
        await bus.publish("shop:a", {"n": 1})
        assert await one.get(timeout=2) == {"n": 1}
        assert await two.get(timeout=2) == {"n": 1}
        assert await other.get(timeout=0.2) is None


async def test_messages_keep_their_order(bus: EventBus) -> None:
    async with bus.subscribe("thread:t") as sub:
        for i in range(50):
            await bus.publish("thread:t", {"seq": i})
        got = [await sub.get(timeout=2) for _ in range(50)]
    assert [m["seq"] for m in got if m] == list(range(50))


async def test_async_iteration_yields_messages(bus: EventBus) -> None:
    async with bus.subscribe("thread:it") as sub:
        await bus.publish("thread:it", {"a": 1})
        await bus.publish("thread:it", {"a": 2})
        seen = []
        async for message in sub:
            seen.append(message["a"])
            if len(seen) == 2:
                break
    assert seen == [1, 2]


async def test_get_times_out_with_none_and_publish_without_listeners_is_harmless(
    bus: EventBus,
) -> None:
    await bus.publish("order:nobody", {"x": 1})
    async with bus.subscribe("order:quiet") as sub:
        assert await sub.get(timeout=0.05) is None
        assert sub.reconnects == 0


async def test_leaving_a_subscription_stops_delivery(bus: EventBus) -> None:
    async with bus.subscribe("shop:x") as sub:
        pass
    await bus.publish("shop:x", {"late": True})
    await asyncio.sleep(0.05)
    assert sub.queue.empty()  # type: ignore[attr-defined]


async def test_hundreds_of_concurrent_streams_in_one_process(bus: EventBus) -> None:
    """Like 300 customers' streams in one worker: each gets its own messages, none dropped."""

    async def stream(i: int) -> list[int]:
        async with bus.subscribe(f"thread:{i}") as sub:
            got = []
            for k in range(3):
                await bus.publish(f"thread:{i}", {"k": k})
                message = await sub.get(timeout=10)
                got.append(message["k"] if message else -1)
            return got

    results = await asyncio.gather(*(stream(i) for i in range(300)))
    assert results == [[0, 1, 2]] * 300


def test_make_bus_picks_redis_only_when_configured() -> None:
    assert isinstance(make_bus(""), MemoryBus)
    from server.redis_bus import RedisBus

    assert isinstance(make_bus("redis://127.0.0.1:6379/15"), RedisBus)


@pytest.mark.redis
async def test_redis_bus_carries_messages_between_two_buses() -> None:
    """Two processes are two buses on one Redis: a publish on A reaches a subscriber on B."""
    from server.redis_bus import RedisBus

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a, b = (
        RedisBus(services.redis_url(), prefix=prefix),
        RedisBus(services.redis_url(), prefix=prefix),
    )
    try:
        async with b.subscribe("order:o9") as sub:
            await a.publish("order:o9", {"status": "paid"})
            assert await sub.get(timeout=2) == {"status": "paid"}
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_redis_bus_keeps_the_order_of_many_concurrent_publishes_and_drops_none() -> None:
    """Hundreds of streams publishing at once: every message arrives, in the order publish
    was called (they share pipelined round trips instead of queueing for pooled connections),
    and each publish returns only once Redis has its message."""
    from server.redis_bus import POOL_CONNECTIONS, RedisBus

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a, b = (
        RedisBus(services.redis_url(), prefix=prefix),
        RedisBus(services.redis_url(), prefix=prefix),
    )
    count = POOL_CONNECTIONS * 60  # far more publishes in flight than pooled connections
    try:
        async with b.subscribe("thread:busy") as sub:
            await asyncio.gather(*(a.publish("thread:busy", {"seq": i}) for i in range(count)))
            got = [await sub.get(timeout=5) for _ in range(count)]
        assert got == [{"seq": i} for i in range(count)]
    finally:
        await a.close()
        await b.close()


async def test_redis_bus_drops_what_queued_behind_a_failed_batch_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis unreachable: the publishes queued behind a batch that could not be sent are
    dropped with it (logged), not tried batch after batch, each waiting out a timeout."""
    import socket

    from server import redis_bus
    from server.redis_bus import RedisBus

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(redis_bus, "PUBLISH_BATCH", 5)
    bus = RedisBus(f"redis://127.0.0.1:{port}/0")
    await bus.publish("thread:warm", {"n": -1})  # binds the clients to this loop
    assert bus._publisher is not None
    attempts = 0
    pipeline = bus._publisher.pipeline

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal attempts
        attempts += 1
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(bus._publisher, "pipeline", counted)
    try:
        await asyncio.gather(*(bus.publish("thread:t", {"n": i}) for i in range(50)))
    finally:
        await bus.close()
    assert attempts == 1
