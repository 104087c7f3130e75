"""HTTP plumbing shared by every feature: request ids, one structured log line per request,
security headers, JSON body reading and the client's IP."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import AppError, PayloadTooLarge
from server.ids import new_id

log = logging.getLogger("shop_assist.http")
# Paths that carry a secret: an emailed sign-in link works for anyone who reads it in a log.
SECRET_PATH = re.compile(r"^(/login/magic/)[^/]+")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``{"ts", "level", "logger", "msg", ...extra}``."""

    RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self.RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "info") -> None:
    root = logging.getLogger("shop_assist")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


class RequestIdMiddleware:
    """Gives each request an id (``X-Request-ID``, kept when the client sent a sane one) and
    logs one line when the response starts: method, path (no query string: it can carry
    tokens), status, duration. Pure ASGI so streaming responses are not buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = (
            incoming
            if incoming.isascii()
            and 8 <= len(incoming) <= 64
            and incoming.replace("-", "").replace("_", "").isalnum()
            else new_id("req", 12)
        )
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
                log.info(
                    "request",
                    extra={
                        "request_id": rid,
                        "method": scope["method"],
                        "path": SECRET_PATH.sub(r"\1[redacted]", scope["path"]),
                        "status": message["status"],
                        "ms": round((time.perf_counter() - start) * 1000, 1),
                    },
                )
            await send(message)

        await self.app(scope, receive, send_wrapper)


# The largest body any route takes: a 5 MB catalog upload plus its multipart framing.
MAX_REQUEST_BYTES = 5 * 2**20 + 256 * 2**10


class BodyLimitMiddleware:
    """Caps every request body at ``max_bytes``: 413 at once for a larger Content-Length, and a
    413 as soon as a chunked body passes the cap. Without it a form parsed before sign-in
    (``/login``'s CSRF check) would read any size into memory or spool it to disk."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"Request body is larger than {self.max_bytes} bytes."
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            body = json.dumps({"error": "PayloadTooLarge", "detail": too_large}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(too_large)  # the app's AppError handler answers 413
            return message

        await self.app(scope, limited, send)


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def client_ip(request: Request) -> str:
    """The peer address. Behind a proxy, uvicorn's ``--proxy-headers`` sets it from
    X-Forwarded-For for trusted proxies only, so a client cannot spoof it here."""
    return request.client.host if request.client else ""


async def read_json(request: Request, *, max_bytes: int = 64_000) -> dict[str, Any]:
    """Read a JSON object body with a size cap; clear errors for anything else."""
    too_large = PayloadTooLarge(f"Request body is larger than {max_bytes} bytes.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    # Read in chunks and stop at the cap: a chunked upload must not fill the memory first.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # bad JSON or UTF-8, a 4300-digit number, deep nesting
        raise AppError("Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise AppError("Request body must be a JSON object.")
    try:  # JSON may spell a lone surrogate ("\\ud800"), which no database or hash can encode
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise AppError("Request body is not valid UTF-8 text.") from None
    return data
