"""Reading a Chat Completions stream raw: chunks, the end, and an error inside the stream,
whatever the network's cut between pieces; a compressed body goes through the client's
decoding instead."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from server.chat.waiter import sse_chunks


class Body:
    """A response whose raw body arrives in ``size``-byte pieces."""

    def __init__(self, lines: list[str], size: int = 7, encoding: str = "") -> None:
        self.raw = "".join(line + "\n" for line in lines).encode()
        self.lines = lines
        self.size = size
        self.headers = {"content-encoding": encoding} if encoding else {}
        self.read = 0  # bytes (raw) or lines (decoded) handed out

    async def aiter_raw(self) -> Any:
        for at in range(0, len(self.raw), self.size):
            piece = self.raw[at : at + self.size]
            self.read += len(piece)
            yield piece

    async def aiter_lines(self) -> Any:
        for line in self.lines:
            self.read += 1
            yield line


async def chunks(body: Body) -> list[dict[str, Any]]:
    request = httpx.Request("POST", "http://upstream/v1/chat/completions")
    return [c async for c in sse_chunks(body, request)]


STREAM = [
    ": keep-alive",
    'data: {"choices": [{"delta": {"content": "Hi \\u00e9t\\u00e9"}}]}',
    "",
    'data:{"choices": [{"delta": {"content": "!"}}]}\r',  # no space after the colon; CRLF
    "\r",
    "data: [DONE]",
    "",
    'data: {"choices": [{"delta": {"content": "late"}}]}',
    "",
]


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
async def test_chunks_up_to_done_and_the_rest_is_read(size: int) -> None:
    body = Body(STREAM, size)
    got = await chunks(body)
    assert [c["choices"][0]["delta"]["content"] for c in got] == ["Hi été", "!"]
    assert body.read == len(body.raw)  # drained to the end: the connection can be reused


async def test_utf8_split_between_pieces_is_joined_before_decoding() -> None:
    body = Body(['data: {"choices": [{"delta": {"content": "café ☕"}}]}', ""], size=3)
    got = await chunks(body)
    assert got[0]["choices"][0]["delta"]["content"] == "café ☕"


async def test_an_event_cut_off_at_the_end_still_counts() -> None:
    body = Body(["event: chunk", 'data: {"usage": {"prompt_tokens": 3}}'])
    body.raw = body.raw.rstrip(b"\n")  # not even a line end
    assert await chunks(body) == [{"usage": {"prompt_tokens": 3}}]


async def test_an_error_inside_the_stream_raises_api_error() -> None:
    body = Body(['data: {"error": {"message": "overloaded", "type": "server_error"}}', ""])
    with pytest.raises(openai.APIError, match="overloaded"):
        await chunks(body)


async def test_a_compressed_body_is_read_through_the_clients_decoding() -> None:
    body = Body([line.rstrip("\r") for line in STREAM], encoding="gzip")
    body.raw = b"\x1f\x8b not readable as lines"
    got = await chunks(body)
    assert [c["choices"][0]["delta"]["content"] for c in got] == ["Hi été", "!"]
    assert body.read == len(STREAM)
