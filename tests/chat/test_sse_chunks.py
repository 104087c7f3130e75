"""Reading a Chat Completions stream raw: chunks, the end, and an error inside the stream."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from server.chat.waiter import sse_chunks


class Body:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.read = 0

    async def aiter_lines(self) -> Any:
        for line in self.lines:
            self.read += 1
            yield line


async def chunks(lines: list[str]) -> tuple[list[dict[str, Any]], Body]:
    body = Body(lines)
    request = httpx.Request("POST", "http://upstream/v1/chat/completions")
    return [c async for c in sse_chunks(body, request)], body


async def test_chunks_up_to_done_and_the_rest_is_read() -> None:
    got, body = await chunks(
        [
            ": keep-alive",
            'data: {"choices": [{"delta": {"content": "Hi"}}]}',
            "",
            'data:{"choices": [{"delta": {"content": "!"}}]}',  # no space after the colon
            "",
            "data: [DONE]",
            "",
            'data: {"choices": [{"delta": {"content": "late"}}]}',
            "",
        ]
    )
    assert [c["choices"][0]["delta"]["content"] for c in got] == ["Hi", "!"]
    assert body.read == 9  # drained to the end: the connection can be reused


async def test_an_event_cut_off_at_the_end_still_counts() -> None:
    got, _ = await chunks(["event: chunk", 'data: {"usage": {"prompt_tokens": 3}}'])
    assert got == [{"usage": {"prompt_tokens": 3}}]


async def test_an_error_inside_the_stream_raises_api_error() -> None:
    with pytest.raises(openai.APIError, match="overloaded"):
        await chunks(['data: {"error": {"message": "overloaded", "type": "server_error"}}', ""])
