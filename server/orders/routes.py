"""Customer order routes: open a checkout, read the status, follow it live.

``POST /api/order/{shop_id}`` · ``GET /api/order/status/{order_id}?token=`` ·
``GET /api/order/{order_id}/events?token=`` (Server-Sent Events)
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from server import models
from server.db import Database
from server.errors import NotFound
from server.http import client_ip, read_json, request_id
from server.orders.create import order_to_json
from server.orders.fulfil import after_commit
from server.payments.checkout import check_order_token, start_checkout
from server.shutdown import sse_response

log = logging.getLogger("shop_assist.orders")


def read_order_json(db: Database, order_id: str) -> dict[str, Any] | None:
    """Query: the order JSON, or ``None``."""
    with db.read() as s:
        order = s.get(models.Order, order_id)
        return order_to_json(order) if order else None


async def create_checkout(request: Request) -> JSONResponse:
    state = request.app.state
    body = await read_json(request)
    result, changes = await start_checkout(
        state.settings,
        state.db,
        state.payments,
        request.path_params["shop_id"],
        body,
        limiter=state.limiter,
        client=client_ip(request),
        request_id=request_id(request),
    )
    if changes:
        await after_commit(
            state.settings, state.db, state.bus, changes, request_id=request_id(request)
        )
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


async def _authorised_order(request: Request) -> dict[str, Any]:
    order_id = request.path_params["order_id"]
    check_order_token(request.app.state.settings, order_id, request.query_params.get("token"))
    order = await run_in_threadpool(read_order_json, request.app.state.db, order_id)
    if order is None:
        raise NotFound("No such order.")
    return order


async def order_status(request: Request) -> JSONResponse:
    order = await _authorised_order(request)
    return JSONResponse(order, headers={"Cache-Control": "no-store"})


async def order_events(request: Request) -> EventSourceResponse:
    """The current status first, then every change. A bus message only wakes the stream; the
    database is re-read each time (and on every ping interval), so a lost message costs latency."""
    first = await _authorised_order(request)
    state = request.app.state
    order_id = first["order_id"]
    interval = state.settings.sse_ping_seconds

    async def stream() -> AsyncIterator[dict[str, Any]]:
        async with state.bus.subscribe(f"order:{order_id}") as sub:
            last: dict[str, Any] | None = None
            seq = 0
            while True:
                current = await run_in_threadpool(read_order_json, state.db, order_id)
                if current is None:
                    return
                if current != last:
                    seq += 1
                    last = current
                    yield {"event": "status", "id": str(seq), "data": json.dumps(current)}
                await sub.get(timeout=interval)

    return sse_response(request, stream(), headers={"Cache-Control": "no-store"})


routes: list[BaseRoute] = [
    Route("/api/order/status/{order_id}", order_status, methods=["GET"]),
    Route("/api/order/{order_id}/events", order_events, methods=["GET"]),
    Route("/api/order/{shop_id}", create_checkout, methods=["POST"]),
]
