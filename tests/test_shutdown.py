"""Graceful shutdown of streams: a final retryable event, then the stream ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.shutdown import (
    begin_shutdown,
    remaining_grace,
    shutting_down,
    sse_response,
    until_shutdown,
)
from tests.conftest import LiveServer


def add_ticker(app: Starlette) -> None:
    """An endless stream like the order status stream: one event, then quiet until shutdown."""

    async def ticker(request: Request) -> Response:
        async def events() -> AsyncIterator[dict[str, str]]:
            n = 0
            while True:
                n += 1
                yield {"event": "status", "id": str(n), "data": json.dumps({"n": n})}
                await asyncio.sleep(30)

        return sse_response(request, events())

    app.router.routes.append(Route("/test/ticker", ticker))


def test_open_stream_gets_a_final_retryable_event_on_shutdown(
    app: Starlette, live_server: Callable[..., LiveServer]
) -> None:
    add_ticker(app)
    server = live_server(app)
    seen: list[dict[str, str]] = []
    with httpx.Client(timeout=10) as http, http.stream("GET", f"{server.url}/test/ticker") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                field, _, value = line.partition(":")
                current[field] = value.lstrip(" ")
                continue
            seen.append(current)
            current = {}
            if len(seen) == 1:
                begin_shutdown(app)  # what the watcher does when uvicorn gets SIGTERM
    # The stream ended by itself (the loop above finished) after the farewell.
    assert seen[0]["event"] == "status"
    last = seen[-1]
    assert last["event"] == "error"
    assert json.loads(last["data"]) == {
        "code": "shutdown",
        "message": "The server is restarting. Reconnecting…",
        "retryable": True,
    }
    assert "id" not in last  # the browser keeps its Last-Event-ID for the resume
    assert int(last["retry"]) > 0


async def test_until_shutdown_relays_items_until_the_source_ends(app: Starlette) -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    assert [x async for x in until_shutdown(app, source(), final="bye")] == [0, 1, 2]


async def test_until_shutdown_ends_with_the_final_item_and_cancels_the_source(
    app: Starlette,
) -> None:
    cleaned = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(60)
            yield 2
        finally:
            cleaned.set()

    got = []
    async for item in until_shutdown(app, source(), final="bye"):
        got.append(item)
        if item == 1:
            begin_shutdown(app)
    assert got == [1, "bye"]
    assert cleaned.is_set()
    assert shutting_down(app).is_set()


async def test_a_stream_opened_during_shutdown_only_gets_the_farewell(app: Starlette) -> None:
    begin_shutdown(app)

    async def source() -> AsyncIterator[int]:
        yield 1

    assert [x async for x in until_shutdown(app, source(), final="bye")] == ["bye"]


async def test_source_errors_reach_the_stream(app: Starlette) -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        async for _ in until_shutdown(app, source()):
            pass


async def test_remaining_grace_counts_from_the_start_of_shutdown(app: Starlette) -> None:
    grace = app.state.settings.shutdown_grace_seconds
    assert remaining_grace(app) == grace  # not shutting down: all of it
    begin_shutdown(app)
    app.state.shutdown_began -= 3  # shutdown began three seconds ago
    assert grace - 3 - 1 < remaining_grace(app) < grace - 3
    app.state.shutdown_began -= 3600
    assert remaining_grace(app) == 0.0
