"""Test doubles for the widget's browser tests.

``ScriptedChat`` answers the chat and order endpoints with scripted event streams, so the chat
app's rendering, states and payment popup are tested on exact input. ``host_site`` is the
third-party page on another origin: a strict CSP and a hostile stylesheet around the one-line
script tag.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Event = tuple[str, dict[str, Any]]

HOSTILE_CSS = """
/* global reset with !important, the way careless themes do it */
*, *::before, *::after { margin: 0 !important; padding: 0 !important; border: 0 !important;
  box-sizing: content-box !important; font-size: 31px !important; line-height: 3 !important;
  color: red !important; letter-spacing: 4px !important; text-transform: uppercase !important; }
button { background: yellow !important; width: 100% !important; height: 120px !important;
  position: static !important; display: block !important; border-radius: 0 !important; }
div, span { display: block !important; position: relative !important; z-index: 1 !important; }
iframe { width: 10px !important; height: 10px !important; opacity: .1 !important; }
svg { width: 300px !important; height: 300px !important; fill: green !important; }
[hidden] { display: block !important; }
/* a Bootstrap-like sheet */
:root { --bs-primary: #0d6efd; --bs-body-font-size: 1rem; }
.btn { display: inline-block; padding: .375rem .75rem; border: 1px solid transparent; }
.fixed-bottom { position: fixed; right: 0; bottom: 0; left: 0; z-index: 1030; }
.container { max-width: 960px; margin: 0 auto; }
"""

HOST_JS = """
window.ShopAssist = window.ShopAssist || [];
window.ShopAssist.push(['on', 'order_paid', function (e) {
  document.body.setAttribute('data-paid', e.order_id);
  document.body.setAttribute('data-paid-number', String(e.number));
}]);
"""


def host_page(server_url: str, shop_id: str, attrs: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Third-party bakery</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="stylesheet" href="/hostile.css"></head>
<body><div class="container"><h1>Bakery on another origin</h1>
<a href="#top" id="first-link">Our story</a>
<p>Fresh bread every morning.</p></div>
<footer class="fixed-bottom">cookie banner</footer>
<script src="/host.js"></script>
<script src="{server_url}/widget.js" data-shop="{shop_id}" {attrs} async></script>
</body></html>"""


def host_site(server_url: str, shop_id: str, attrs: str = "") -> Starlette:
    """The owner's own website: serves the page only under a strict CSP that names our host."""
    csp = (
        f"default-src 'self'; script-src 'self' {server_url}; frame-src {server_url}; "
        "style-src 'self'; img-src 'self'; connect-src 'self'"
    )

    async def index(request: Request) -> Response:
        page = host_page(server_url, shop_id, request.query_params.get("attrs", attrs))
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})

    async def css(request: Request) -> Response:
        return Response(HOSTILE_CSS, media_type="text/css")

    async def js(request: Request) -> Response:
        return Response(HOST_JS, media_type="text/javascript")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/hostile.css", css),
            Route("/host.js", js),
            Route("/favicon.ico", favicon),
        ]
    )


def sse(events: list[Event], start: int = 1) -> bytes:
    """Events as sse-starlette writes them (CRLF line ends), with ids from ``start``."""
    out = b""
    for n, (name, data) in enumerate(events, start):
        out += f"id: {n}\r\nevent: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode()
    return out


@dataclass
class ScriptedChat:
    """Scripted answers for ``POST /api/chat``, ``POST /api/order`` and the order status.

    Each chat POST pops the next entry of ``replies``: a list of events, or an int status code
    (with ``retry_after`` for 429)."""

    replies: list[list[Event] | int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    order_status: str = "awaiting_payment"
    retry_after: int = 7
    gate: threading.Event | None = None  # when set up, the last event waits for it
    replay: list[Event] = field(default_factory=list)  # what the events endpoint sends
    replays: list[dict[str, str]] = field(default_factory=list)  # how it was asked
    thread: dict[str, Any] | None = None  # what the thread endpoint answers

    async def chat(self, request: Request) -> Response:
        self.requests.append(await request.json())
        reply = self.replies.pop(0) if self.replies else [("done", {"message_id": 0})]
        if isinstance(reply, int):
            headers = {"Retry-After": str(self.retry_after)} if reply == 429 else {}
            return JSONResponse(
                {"error": "Fake", "detail": "scripted failure", "retry_after": self.retry_after},
                status_code=reply,
                headers=headers,
            )
        events = reply

        async def body() -> AsyncIterator[bytes]:
            for n, event in enumerate(events, 1):
                while self.gate is not None and n == len(events) and not self.gate.is_set():
                    await asyncio.sleep(0.02)
                yield sse([event], n)
                await asyncio.sleep(0.01)  # arrive in pieces, as a model streams

        return StreamingResponse(body(), media_type="text/event-stream")

    async def events(self, request: Request) -> Response:
        after = int(request.query_params.get("after", "0"))
        self.replays.append(
            {
                "after": str(after),
                "token": request.headers.get("x-thread-token", ""),
                "thread_id": request.path_params["thread_id"],
            }
        )
        return Response(sse(self.replay, after + 1), media_type="text/event-stream")

    async def thread_view(self, request: Request) -> Response:
        if self.thread is None or request.headers.get("x-thread-token") != "tok_1":
            return JSONResponse({"error": "NotFound", "detail": "No such conversation."}, 404)
        return JSONResponse(self.thread)

    async def create_payment(self, request: Request) -> Response:
        data = await request.json()
        return JSONResponse(
            {
                "order_id": data["order_id"],
                "checkout_url": f"/fake-pay/{data['order_id']}",
                "order_token": "ordtok",
                "expires_at": "2030-01-01T00:00:00Z",
            }
        )

    async def status(self, request: Request) -> Response:
        return JSONResponse(
            {"order_id": request.path_params["order_id"], "status": self.order_status}
        )

    async def pay_page(self, request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>Fake checkout</title><p>Pay here</p>")

    def install(self, app: Starlette) -> None:
        """Put the scripted endpoints in front of the app's real ones."""
        app.router.routes[0:0] = [
            Route("/api/chat/{shop_id}", self.chat, methods=["POST"]),
            Route("/api/chat/{shop_id}/threads/{thread_id}", self.thread_view),
            Route("/api/chat/{shop_id}/threads/{thread_id}/events", self.events),
            Route("/api/order/{shop_id}", self.create_payment, methods=["POST"]),
            Route("/api/order/status/{order_id}", self.status),
            Route("/fake-pay/{order_id}", self.pay_page),
        ]
