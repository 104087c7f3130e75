"""A fake OpenAI-compatible server on loopback, speaking the real Chat Completions wire format.

``POST /v1/chat/completions`` answers from a queue of scripted replies (then a default text
reply of ``tokens`` words), streamed as ``text/event-stream`` chunks exactly like OpenAI's
(``data: {chat.completion.chunk}`` lines, ``data: [DONE]``, a usage chunk with empty ``choices``
when ``stream_options.include_usage`` is set) or as one ``chat.completion`` object when the
request does not stream. Every request body is recorded for assertions.

In tests::

    fake = FakeOpenAI().start()               # or the ``fake_openai`` fixture
    fake.add_text("Hello there", delay=0.01)
    fake.add_tool_calls([ToolCall("add_to_cart", {"product_id": "latte", "quantity": 1})])
    fake.add_error(429, retry_after=1)
    settings.with_(assistant="openai", openai_base_url=fake.base_url, openai_api_key="sk-test")
    ...
    fake.requests[0]["messages"]               # what the model was sent

Standalone (benchmarks)::

    python -m tests.fakes.fake_openai --port 9100 --tokens 50 --delay 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class ToolCall:
    """One scripted tool call; ``arguments`` is a dict (sent as JSON) or a raw string."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = ""

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class Reply:
    """A scripted response. ``text`` is split into ``chunks`` (or word tokens); ``tool_calls``
    arguments are split into ``arg_chunk`` character pieces across chunks; ``status`` >= 400
    answers with an OpenAI-style error body instead. ``delay`` is slept before every chunk,
    ``first_delay`` before the first byte; ``abort_after`` cuts the stream after that many
    content chunks (no ``[DONE]``), as a dropped upstream connection would."""

    text: str | None = None
    chunks: list[str] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    arg_chunk: int = 8
    status: int = 200
    error_message: str = ""
    error_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float | None = None
    first_delay: float = 0.0
    abort_after: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0

    def content_pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        if not self.text:
            return []
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


class UpstreamDropped(Exception):
    """Raised inside the stream to cut the connection without a clean end."""


def default_text(tokens: int) -> str:
    """The default reply: ``tokens`` short words (each streamed as one chunk)."""
    return " ".join(f"word{i}" for i in range(tokens))


class FakeOpenAI:
    """The fake server. ``start()`` runs uvicorn in a thread on a free loopback port."""

    def __init__(self, *, tokens: int = 5, delay: float = 0.0, port: int = 0) -> None:
        self.tokens = tokens
        self.delay = delay
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- scripting -------------------------------------------------------------------------
    def add(self, reply: Reply) -> FakeOpenAI:
        with self._lock:
            self._script.append(reply)
        return self

    def add_text(self, text: str, **kwargs: Any) -> FakeOpenAI:
        return self.add(Reply(text=text, **kwargs))

    def add_tool_calls(
        self, calls: Iterable[ToolCall], *, text: str | None = None, **kwargs: Any
    ) -> FakeOpenAI:
        return self.add(Reply(text=text, tool_calls=list(calls), **kwargs))

    def add_error(
        self,
        status: int,
        message: str = "",
        *,
        retry_after: float | None = None,
        error_type: str = "",
    ) -> FakeOpenAI:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        return self.add(
            Reply(status=status, error_message=message, headers=headers, error_type=error_type)
        )

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.request_headers.clear()

    def _next(self) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return Reply(text=default_text(self.tokens))

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The value for ``OPENAI_BASE_URL``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        if not self.port:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------------------
    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def _completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(dict(request.headers))
        reply = self._next()
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        if reply.status >= 400:
            return _error(reply.status, reply.error_message, reply.error_type, reply.headers)
        model = str(body.get("model") or "fake-model")
        delay = self.delay if reply.delay is None else reply.delay
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(reply, model, delay, include_usage, body),
                media_type="text/event-stream",
                headers=reply.headers,
            )
        if delay:
            await asyncio.sleep(delay * max(1, len(reply.content_pieces())))
        return JSONResponse(_completion(reply, model, body), headers=reply.headers)

    async def _stream(
        self, reply: Reply, model: str, delay: float, include_usage: bool, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

        yield chunk(
            {
                "role": "assistant",
                "content": "" if not reply.tool_calls or reply.text else None,
                "refusal": None,
            }
        )
        for sent, piece in enumerate(reply.content_pieces()):
            if reply.abort_after is not None and sent >= reply.abort_after:
                # Drop the connection mid-body (no terminating chunk), as a dying upstream does.
                raise UpstreamDropped
            if delay:
                await asyncio.sleep(delay)
            yield chunk({"content": piece})
        for index, call in enumerate(reply.tool_calls):
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            if delay:
                await asyncio.sleep(delay)
            # OpenAI sends id, type and name first with empty arguments, then argument pieces.
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            args = call.arguments_json()
            step = max(1, reply.arg_chunk)
            for start in range(0, len(args), step):
                if delay:
                    await asyncio.sleep(delay)
                yield chunk(
                    {
                        "tool_calls": [
                            {"index": index, "function": {"arguments": args[start : start + step]}}
                        ]
                    }
                )
        yield chunk({}, reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"))
        if include_usage:
            usage = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": _usage(reply, body),
            }
            yield b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"


def _usage(reply: Reply, body: dict[str, Any]) -> dict[str, int]:
    completion = len(reply.content_pieces()) + sum(
        1 + len(c.arguments_json()) // 4 for c in reply.tool_calls
    )
    prompt = reply.prompt_tokens or max(1, len(json.dumps(body.get("messages", []))) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(reply: Reply, model: str, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for call in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason
                or ("tool_calls" if reply.tool_calls else "stop"),
            }
        ],
        "usage": _usage(reply, body),
    }


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def _error(
    status: int, message: str, error_type: str, headers: dict[str, str] | None = None
) -> Response:
    default_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    body = {
        "error": {
            "message": message or f"Fake upstream error {status}.",
            "type": error_type or default_type,
            "param": None,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers or {})


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone (benchmarks run it in its own process)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tokens", type=int, default=50, help="words per default reply")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each chunk")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(tokens=args.tokens, delay=args.delay, port=args.port)
    uvicorn.run(
        fake.app, host=args.host, port=args.port, log_level="warning", lifespan="off", backlog=4096
    )


if __name__ == "__main__":
    main()
