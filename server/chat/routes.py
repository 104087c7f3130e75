"""Chat over Server-Sent Events: send a message, read a thread, replay and follow its events.

Every check that can refuse a message (size, rate limits, thread length, the token) happens
before the reply starts, so a refused message never reaches the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server import models
from server.chat import threads
from server.chat.runner import ChatRunner, TurnRequest
from server.errors import AppError, Conflict, NotFound, PayloadTooLarge, RateLimited
from server.http import client_ip, read_json
from server.shutdown import shutting_down


def _event_stream(
    request: Request, source: Callable[[asyncio.Event], AsyncIterator[Any]]
) -> Response:
    """An SSE response whose source watches the app's shutdown flag itself (cheaper per event
    than a relay task): on shutdown it ends with a final retryable error event."""
    settings = request.app.state.settings
    return EventSourceResponse(
        source(shutting_down(request.app)),
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # sse-starlette waits this long for that final event instead of cutting the stream.
        shutdown_event=anyio.Event(),
        shutdown_grace_period=max(0.5, float(settings.shutdown_grace_seconds) - 1.0),
    )


def get_runner(request: Request) -> ChatRunner:
    state = request.app.state
    runner = getattr(state, "chat_runner", None)
    if runner is None:
        runner = ChatRunner(state.settings, state.db, state.bus, state.llm, state.limiter)
        state.chat_runner = runner
    return runner


async def _limit(request: Request, key: str, limit: int, what: str) -> None:
    retry_after = await request.app.state.limiter.hit(key, limit, 60)
    if retry_after is not None:
        raise RateLimited(f"Too many messages {what}; try again in {retry_after} s.", retry_after)


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AppError(f"{key} must be a string.")
    return value


async def send_message(request: Request) -> Response:
    """``POST /api/chat/{shop_id}`` -> the reply as ``text/event-stream``."""
    settings = request.app.state.settings
    db = request.app.state.db
    shop_id = request.path_params["shop_id"]
    body = await read_json(request, max_bytes=settings.max_message_chars * 4 + 4096)
    message = (_text(body, "message") or "").strip()
    action = _text(body, "action")
    if action not in (None, "checkout"):
        raise AppError('action must be "checkout" when given.')
    if len(message) > settings.max_message_chars:
        raise PayloadTooLarge(
            f"A message can be at most {settings.max_message_chars} characters.",
            limit=settings.max_message_chars,
        )
    if not message and action is None:
        raise AppError("Write a message.")
    thread_id = _text(body, "thread_id")
    token = _text(body, "thread_token")
    await _limit(request, f"chat:ip:{client_ip(request)}", settings.ip_rate_per_minute, "from here")

    runner = get_runner(request)
    if thread_id:
        # Claimed before the thread is read: a reply still running (on any worker) makes
        # this 409, and a finished one has stored its events, so ``last_seq`` is current.
        await runner.claim(thread_id)
    claimed = thread_id or None
    try:
        known_usage = runner.known_usage(shop_id)
        with db.read() as session:
            ctx = threads.load_turn(
                session, shop_id, thread_id or None, token, tokens_today=known_usage
            )
        if known_usage is None:
            runner.note_usage(shop_id, ctx.tokens_today)
        thread = ctx.thread
        if thread.new:
            # Nobody knows the new id yet, but the next message may reach another worker
            # while this reply runs.
            await runner.claim(thread.id)
            claimed = thread.id
        else:
            await _limit(
                request, f"chat:thread:{thread.id}", settings.thread_rate_per_minute, "in this chat"
            )
            if thread.message_count + 2 > settings.max_thread_messages:
                raise Conflict(
                    "This conversation is too long; please start a new one.", code="thread_full"
                )
        created_token = threads.new_thread_token() if thread.new else None
        turn_log = runner.start(
            TurnRequest(
                shop_id=shop_id,
                ctx=ctx,
                message=message,
                action=action,
                client_ip=client_ip(request),
                created_token=created_token,
            )
        )
    except BaseException:
        if claimed is not None:
            await runner.release(claimed)
        raise
    if created_token is not None:
        # The first message counts toward the new thread's rate too.
        await request.app.state.limiter.hit(
            f"chat:thread:{thread.id}", settings.thread_rate_per_minute, 60
        )
    return _event_stream(
        request,
        lambda stop: runner.follow(
            thread.id, thread.last_seq, turn_log=turn_log, token=created_token, stop=stop
        ),
    )


# A new thread is stored by the worker running its first turn just after the turn starts:
# asked on another worker in between, it is waited for this long while that turn runs.
NEW_THREAD_WAIT_SECONDS = 2.0


async def _find(request: Request) -> str:
    """The thread id when the token opens it (NotFound otherwise). A thread whose first
    message is still being stored is waited for, here or on another worker."""
    token = request.headers.get("x-thread-token") or request.query_params.get("token")
    shop_id, thread_id = request.path_params["shop_id"], request.path_params["thread_id"]
    runner = get_runner(request)
    await runner.opened(thread_id)
    deadline = time.monotonic() + NEW_THREAD_WAIT_SECONDS
    while True:
        try:
            with request.app.state.db.read() as session:
                return str(threads.find_thread(session, shop_id, thread_id, token).id)
        except NotFound:
            if time.monotonic() > deadline or not await runner.turn_running(thread_id):
                raise
            await asyncio.sleep(0.05)


async def get_thread(request: Request) -> Response:
    """``GET /api/chat/{shop_id}/threads/{thread_id}`` (``X-Thread-Token``)."""
    thread_id = await _find(request)
    with request.app.state.db.read() as session:
        view = threads.thread_view(session, session.get(models.Thread, thread_id))
    return JSONResponse(view, headers={"Cache-Control": "no-store"})


async def thread_events(request: Request) -> Response:
    """``GET .../threads/{thread_id}/events``: replay after ``Last-Event-ID`` (or ``?after=``),
    then follow the running reply live."""
    thread_id = await _find(request)
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        after = max(0, int(raw))
    except ValueError:
        raise AppError("Last-Event-ID / after must be a whole number.") from None
    runner = get_runner(request)
    return _event_stream(request, lambda stop: runner.follow(thread_id, after, stop=stop))


routes: list[BaseRoute] = [
    Route("/api/chat/{shop_id}", send_message, methods=["POST"]),
    Route("/api/chat/{shop_id}/threads/{thread_id}", get_thread, methods=["GET"]),
    Route("/api/chat/{shop_id}/threads/{thread_id}/events", thread_events, methods=["GET"]),
]
