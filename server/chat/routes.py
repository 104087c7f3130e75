"""Chat over Server-Sent Events: send a message, read a thread, replay and follow its events.

Every check that can refuse a message (size, rate limits, thread length, the token) happens
before the reply starts, so a refused message never reaches the model.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.chat import threads
from server.chat.runner import ChatRunner, TurnRequest
from server.errors import AppError, Conflict, PayloadTooLarge, RateLimited
from server.http import client_ip, read_json
from server.shutdown import sse_response


def get_runner(request: Request) -> ChatRunner:
    state = request.app.state
    runner = getattr(state, "chat_runner", None)
    if runner is None:
        runner = ChatRunner(state.settings, state.db, state.bus, state.llm)
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

    with db.read() as session:
        from server.shops.service import get_shop

        get_shop(session, shop_id)
        thread = threads.find_thread(session, shop_id, thread_id, token) if thread_id else None
        if thread is not None:
            role, start_seq, count = thread.role, thread.last_seq, thread.message_count
    if thread is not None:
        await _limit(
            request, f"chat:thread:{thread_id}", settings.thread_rate_per_minute, "in this chat"
        )
        if count + 2 > settings.max_thread_messages:
            raise Conflict(
                "This conversation is too long; please start a new one.", code="thread_full"
            )

    runner = get_runner(request)
    created_token = None
    if thread is None:
        created_token = threads.new_thread_token()
        with db.write() as session:
            new = threads.create_thread(session, shop_id, created_token, client_ip(request))
            thread_id, role, start_seq = new.id, new.role, 0
        # The first message counts toward the new thread's rate too.
        await _limit(
            request, f"chat:thread:{thread_id}", settings.thread_rate_per_minute, "in this chat"
        )
    assert thread_id is not None
    runner.reserve(thread_id)
    try:
        user_message_id = None
        if message:
            with db.write() as session:
                user_message_id = threads.add_message(session, thread_id, "user", message).id
                threads.count_message(session, thread_id)
    except BaseException:
        runner.release(thread_id)
        raise
    turn_log = runner.start(
        TurnRequest(
            shop_id=shop_id,
            thread_id=thread_id,
            role=role,
            message=message,
            action=action,
            start_seq=start_seq,
            user_message_id=user_message_id,
            created_token=created_token,
        )
    )
    return sse_response(
        request,
        runner.follow(thread_id, start_seq, turn_log=turn_log, token=created_token),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _find(request: Request, session: Any) -> Any:
    token = request.headers.get("x-thread-token") or request.query_params.get("token")
    return threads.find_thread(
        session, request.path_params["shop_id"], request.path_params["thread_id"], token
    )


async def get_thread(request: Request) -> Response:
    """``GET /api/chat/{shop_id}/threads/{thread_id}`` (``X-Thread-Token``)."""
    with request.app.state.db.read() as session:
        view = threads.thread_view(session, _find(request, session))
    return JSONResponse(view, headers={"Cache-Control": "no-store"})


async def thread_events(request: Request) -> Response:
    """``GET .../threads/{thread_id}/events``: replay after ``Last-Event-ID`` (or ``?after=``),
    then follow the running reply live."""
    with request.app.state.db.read() as session:
        thread_id = _find(request, session).id
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        after = max(0, int(raw))
    except ValueError:
        raise AppError("Last-Event-ID / after must be a whole number.") from None
    runner = get_runner(request)
    return sse_response(
        request,
        runner.follow(thread_id, after),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


routes: list[BaseRoute] = [
    Route("/api/chat/{shop_id}", send_message, methods=["POST"]),
    Route("/api/chat/{shop_id}/threads/{thread_id}", get_thread, methods=["GET"]),
    Route("/api/chat/{shop_id}/threads/{thread_id}/events", thread_events, methods=["GET"]),
]
