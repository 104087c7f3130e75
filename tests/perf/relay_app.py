"""The baseline for the chat benchmark: a bare sse-starlette endpoint that relays the same
OpenAI-compatible upstream with the same SDK, and does nothing else (no database, no tools, no
rate limits). ``uvicorn --factory tests.perf.relay_app:build`` with ``OPENAI_BASE_URL`` set."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import openai
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def build() -> Starlette:
    client = openai.AsyncOpenAI(
        api_key="sk-bench", base_url=os.environ["OPENAI_BASE_URL"], max_retries=0
    )

    async def relay(request: Request) -> Response:
        body = await request.json()

        async def events() -> AsyncIterator[dict[str, str]]:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": str(body.get("message", ""))}],
                stream=True,
            )
            seq = 0
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    seq += 1
                    text = chunk.choices[0].delta.content
                    yield {"event": "delta", "id": str(seq), "data": json.dumps({"text": text})}
            yield {"event": "done", "id": str(seq + 1), "data": "{}"}

        return EventSourceResponse(events())

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/relay", relay, methods=["POST"]), Route("/healthz", health)])
