"""The real app plus one endless stream, for the SIGTERM test (``uvicorn --factory``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.app import create_app
from server.settings import Settings
from server.shutdown import sse_response


async def ticker(request: Request) -> Response:
    async def events() -> AsyncIterator[dict[str, str]]:
        n = 0
        while True:
            n += 1
            yield {"event": "status", "id": str(n), "data": json.dumps({"n": n})}
            await asyncio.sleep(3600)

    return sse_response(request, events())


def build() -> Starlette:
    app = create_app(Settings.from_env())
    app.router.routes.append(Route("/test/ticker", ticker))
    return app
