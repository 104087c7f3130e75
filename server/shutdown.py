"""Graceful shutdown: open streams end with a final event instead of a cut connection.

On SIGTERM uvicorn stops accepting connections, then waits up to ``--timeout-graceful-shutdown``
for running responses, and only THEN runs the lifespan shutdown, which is too late to tell the
streams. So a watcher started with the app polls uvicorn's exit flag (and sse-starlette's) and
sets :func:`shutting_down`. Streams built with :func:`sse_response` (or wrapped in
:func:`until_shutdown`) then send one last ``error`` event ``{"code": "shutdown", "retryable":
true}`` with an SSE ``retry:`` hint and end, so the browser reconnects, with its
``Last-Event-ID``, to a worker that is still up, and the process exits well inside
``settings.shutdown_grace_seconds``.

Endpoint use::

    from server.shutdown import sse_response

    async def thread_events(request):
        async def events():
            async with request.app.state.bus.subscribe(channel) as sub:
                ...  # yield {"event": "delta", "id": "7", "data": "..."} as before
        return sse_response(request, events())
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request

log = logging.getLogger("shop_assist.shutdown")

SHUTDOWN_ERROR = {
    "code": "shutdown",
    "message": "The server is restarting. Reconnecting…",
    "retryable": True,
}
RECONNECT_AFTER_MS = 1000
EXIT_MARGIN_SECONDS = 0.5
WATCH_INTERVAL = 0.1


def shutting_down(app: Starlette) -> asyncio.Event:
    """The app's shutdown flag for the running loop: set once the server begins to stop.
    Call it inside the event loop that serves ``app``; ``await`` its ``wait()`` in a stream."""
    loop = asyncio.get_running_loop()
    events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] | None = getattr(
        app.state, "shutdown_events", None
    )
    if events is None:
        events = weakref.WeakKeyDictionary()
        app.state.shutdown_events = events
    event = events.get(loop)
    if event is None:
        event = events[loop] = asyncio.Event()
        if getattr(app.state, "shutting_down", False):
            event.set()
    return event


def begin_shutdown(app: Starlette) -> None:
    """Tell every open stream of ``app`` to finish (idempotent; callable from any thread)."""
    if getattr(app.state, "shutdown_began", None) is None:
        app.state.shutdown_began = time.monotonic()
    app.state.shutting_down = True
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, event in list(getattr(app.state, "shutdown_events", {}).items()):
        if loop is running:
            event.set()
        elif loop.is_running():
            loop.call_soon_threadsafe(event.set)


def remaining_grace(app: Starlette) -> float:
    """Seconds left of ``settings.shutdown_grace_seconds`` since shutdown began (all of it
    before), less a moment to store what is left: work that runs at shutdown (a reply being
    written) waits at most this long, so the process exits within the grace period."""
    grace = float(app.state.settings.shutdown_grace_seconds)
    began = getattr(app.state, "shutdown_began", None)
    if began is None:
        return grace
    return max(0.0, grace - (time.monotonic() - began) - EXIT_MARGIN_SECONDS)


def _server_exiting() -> bool:
    """True once uvicorn (or sse-starlette's hook on it) has seen SIGTERM/SIGINT."""
    try:
        from sse_starlette.sse import AppStatus

        if AppStatus.should_exit:
            return True
    except ImportError:  # pragma: no cover
        pass
    # uvicorn installs its bound ``handle_exit`` as the handler; reach the server through it.
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return bool(getattr(server, "should_exit", False))


async def _watch(app: Starlette) -> None:
    event = shutting_down(app)
    while not event.is_set():
        if _server_exiting():
            log.info("shutdown: closing open streams")
            begin_shutdown(app)
            return
        await asyncio.sleep(WATCH_INTERVAL)


@contextlib.asynccontextmanager
async def watching(app: Starlette) -> AsyncIterator[None]:
    """Run the watcher for the app's lifetime (``create_app``'s lifespan uses this)."""
    shutting_down(app)
    task = asyncio.get_running_loop().create_task(_watch(app), name="shutdown-watcher")
    try:
        yield
    finally:
        begin_shutdown(app)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def final_event(payload: dict[str, Any] | None = None) -> ServerSentEvent:
    """The last event a stream sends on shutdown. It carries no ``id`` on purpose: the
    browser keeps the last real id and resumes from it."""
    return ServerSentEvent(
        event="error",
        data=json.dumps(payload or SHUTDOWN_ERROR, separators=(",", ":")),
        retry=RECONNECT_AFTER_MS,
    )


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def until_shutdown(
    app: Starlette,
    source: AsyncIterable[Any],
    *,
    final: Any = None,
    also_stop: anyio.Event | None = None,
) -> AsyncIterator[Any]:
    """Relay ``source`` until it ends, or until shutdown begins: then yield ``final``
    (default :func:`final_event`) and stop. ``source`` runs in its own task, so it is never
    interrupted mid-step; on shutdown or client disconnect it is cancelled at its await."""
    stop = shutting_down(app)
    last = final if final is not None else final_event()
    if stop.is_set():
        yield last
        return
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # re-raised in the stream's task
            await queue.put(_Failed(exc))
            return
        await queue.put(_End())

    async def stopped() -> None:
        if also_stop is None:
            await stop.wait()
            return
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(also_stop.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    loop = asyncio.get_running_loop()
    pump_task = loop.create_task(pump())
    stop_task = loop.create_task(stopped())
    get_task: asyncio.Task[Any] | None = None
    try:
        while True:
            get_task = loop.create_task(queue.get())
            done, _ = await asyncio.wait({get_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if get_task in done:
                item = get_task.result()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
                continue
            yield last
            return
    finally:
        for task in (get_task, stop_task, pump_task):
            if task is not None:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await aclose()


def sse_response(
    request: Request,
    source: AsyncIterable[Any],
    *,
    final: Any = None,
    **kwargs: Any,
) -> EventSourceResponse:
    """An ``EventSourceResponse`` that ends with a final event on shutdown. Pings every
    ``settings.sse_ping_seconds``; other keyword arguments go to ``EventSourceResponse``."""
    app: Starlette = request.app
    settings = app.state.settings
    # sse-starlette detects shutdown on its own too; handing it an event and a grace period
    # makes it wait for our final event instead of cancelling the stream outright.
    sse_stop = anyio.Event()
    grace = max(0.5, float(settings.shutdown_grace_seconds) - 1.0)
    kwargs.setdefault("ping", settings.sse_ping_seconds)
    return EventSourceResponse(
        until_shutdown(app, source, final=final, also_stop=sse_stop),
        shutdown_event=sse_stop,
        shutdown_grace_period=grace,
        **kwargs,
    )
