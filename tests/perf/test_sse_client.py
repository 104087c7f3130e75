"""The benchmark's load generator reads both kinds of stream correctly: a first token is the
first real one, a stream counts as done only when it ends properly, failures are named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.fake_openai import FakeOpenAI, Reply
from tests.perf.sse_client import post_sse


async def test_an_openai_stream_first_token_is_the_first_real_content(
    fake_openai: FakeOpenAI,
) -> None:
    # The opening chunk (role, empty content) comes at once, the first word 0.2 s later.
    fake_openai.add(Reply(text="Hello there", delay=0.2))
    url = f"{fake_openai.base_url}/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    result = await post_sse(url, body)
    assert result.status == 200 and result.done and not result.error
    assert result.first is not None and result.first >= 0.15


def _app(events: Callable[[], AsyncIterator[dict[str, str]]]) -> Starlette:
    async def chat(request: Request) -> Response:
        if (await request.json()).get("message") == "busy":
            return JSONResponse({"error": "slow down"}, status_code=429)
        return EventSourceResponse(events())

    return Starlette(routes=[Route("/chat", chat, methods=["POST"])])


async def _reply(*names: str) -> AsyncIterator[dict[str, str]]:
    for seq, name in enumerate(names, 1):
        yield {"id": str(seq), "event": name, "data": "{}"}


async def test_the_app_stream_done_error_and_refusals(live_server: Any) -> None:
    done = live_server(_app(lambda: _reply("thread", "delta", "delta", "done")))
    result = await post_sse(f"{done.url}/chat", {"message": "hi"})
    assert result.status == 200 and result.done and result.first is not None
    assert not result.error

    cut = live_server(_app(lambda: _reply("thread", "delta")))
    result = await post_sse(f"{cut.url}/chat", {"message": "hi"})
    assert result.first is not None and not result.done

    failed = live_server(_app(lambda: _reply("thread", "error")))
    result = await post_sse(f"{failed.url}/chat", {"message": "hi"})
    assert result.first is None and "event: error" in result.error

    result = await post_sse(f"{done.url}/chat", {"message": "busy"})
    assert result.status == 429 and result.error.startswith("HTTP 429") and not result.done
