"""A lean HTTP/1.1 client for the chat benchmark: POST a JSON body, read the chunked
``text/event-stream`` answer, note when the first token arrives and whether the stream ended
properly. Hundreds of streams at 50 events a second each make the load generator itself a
large share of a small machine's CPU; this one does the least work per event (raw asyncio
streams, no per-line objects), so the servers measured get the CPU instead.

It understands both streams the benchmark reads: the app's (``event: delta`` ... ``event:
done``) and an OpenAI-compatible upstream's (``data: {..."content":"..."}`` ... ``data:
[DONE]``)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

FIRST_MARKERS = (b"event: delta", b'"content":"')
END_MARKERS = (b"event: done", b"data: [DONE]")
ERROR_MARKER = b"event: error"


@dataclass
class Result:
    status: int = 0
    first: float | None = None  # seconds from the request to the first token
    done: bool = False
    error: str = ""


def _first_token(data: bytes) -> bool:
    if FIRST_MARKERS[0] in data:
        return True
    at = data.find(FIRST_MARKERS[1])
    while at >= 0:
        # An upstream's opening chunk carries an empty content string: not a token.
        if data[at + 11 : at + 12] != b'"':
            return True
        at = data.find(FIRST_MARKERS[1], at + 11)
    return False


async def post_sse(url: str, body: dict[str, Any], timeout: float = 120.0) -> Result:
    """POST ``body`` to ``url`` and read the event stream to its end."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    result = Result()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            try:
                writer.write(head + payload)
                status_line = await reader.readline()
                result.status = int(status_line.split()[1])
                chunked = False
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line:
                        chunked = True
                if result.status != 200:
                    result.error = f"HTTP {result.status}: {(await reader.read(200))!r}"
                    return result
                tail = b""  # the end of the previous piece: a marker may straddle two
                async for data in _pieces(reader, chunked):
                    seen = tail + data
                    if result.first is None and _first_token(seen):
                        result.first = time.perf_counter() - start
                    if ERROR_MARKER in seen and not result.error:
                        result.error = seen[seen.find(ERROR_MARKER) :][:200].decode(
                            errors="replace"
                        )
                    if any(m in seen for m in END_MARKERS):
                        result.done = True
                    tail = seen[-16:]
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        result.error = result.error or f"{type(exc).__name__}: {exc}"
    return result


async def _pieces(reader: asyncio.StreamReader, chunked: bool) -> Any:
    """The body's bytes as they arrive (chunked transfer encoding removed)."""
    if not chunked:
        while data := await reader.read(65536):
            yield data
        return
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return
        yield await reader.readexactly(size + 2)
