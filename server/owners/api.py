"""Owner API (API token or session + CSRF) and the dashboard's live order stream and export.

``GET /api/shops/{shop_id}/orders``  filters ``status``, ``since``, ``q``; ``limit`` + ``cursor``
``GET /api/orders/{order_id}``        one order as the owner sees it
``PATCH /api/orders/{order_id}``      ``{"status": "preparing"|"ready"|"completed"|"cancelled"}``
``GET /dashboard/shops/{shop_id}/events``     SSE: ``order_paid`` / ``order_status`` events
``GET /dashboard/shops/{shop_id}/orders.csv`` every order, formula-safe CSV
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import Unprocessable
from server.http import read_json, request_id
from server.models import Order, Owner
from server.orders.fulfil import after_commit, lock_order
from server.orders.status import CANCELLED
from server.owners.auth import reading
from server.owners.orders import (
    MAX_PAGE,
    OrderFilter,
    list_orders,
    move_order,
    orders_csv,
    owner_orders_json,
    parse_order_filter,
)
from server.owners.pages import owner_api, owner_page
from server.owners.service import owned_order, owned_shop
from server.payments.sessions import close_checkouts_soon
from server.shutdown import sse_response


async def apply_owner_status(
    request: Request, owner: Owner, order_id: str, target: str, shop_id: str | None = None
) -> dict[str, Any]:
    """Move one of the owner's orders; publish the change once it is committed.

    A cancelled order is announced first; its open checkouts are then expired at Stripe in the
    background (a few seconds per call, errors logged), so the owner's request never waits on
    Stripe and the customer can no longer pay. The cancellation stands even when Stripe cannot
    be reached; a payment that still arrives is flagged for a refund (see
    ``server.payments.webhook``)."""
    app = request.app.state
    with app.db.write() as s:
        owned_order(s, owner.id, order_id, shop_id)
        order = lock_order(s, order_id)
        assert order is not None
        change = move_order(s, order, target, actor=owner.id)
        [data] = owner_orders_json(s, [order])
    if change is not None:
        rid = request_id(request)
        try:
            await after_commit(app.settings, app.db, app.bus, [change], request_id=rid)
        finally:
            if change.to_status == CANCELLED:
                close_checkouts_soon(app.db, app.payments, order_id, request_id=rid)
    return data


@owner_api
async def shop_orders(request: Request, owner: Owner) -> Response:
    f = parse_order_filter(request.query_params)
    with reading(request.app.state.db) as s:
        owned_shop(s, owner.id, request.path_params["shop_id"])
        orders, next_cursor = list_orders(s, request.path_params["shop_id"], f)
        body = {"orders": owner_orders_json(s, orders), "next_cursor": next_cursor}
    return JSONResponse(body)


@owner_api
async def get_order(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        order, _ = owned_order(s, owner.id, request.path_params["order_id"])
        [data] = owner_orders_json(s, [order])
        return JSONResponse(data)


@owner_api
async def patch_order(request: Request, owner: Owner) -> Response:
    body = await read_json(request)
    target = body.get("status")
    if not isinstance(target, str):
        raise Unprocessable('Send {"status": "preparing" | "ready" | "completed" | "cancelled"}.')
    return JSONResponse(
        await apply_owner_status(request, owner, request.path_params["order_id"], target)
    )


@owner_page
async def orders_export(request: Request, owner: Owner) -> Response:
    shop_id = request.path_params["shop_id"]
    rows: list[Order] = []
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, shop_id)
        f = OrderFilter(limit=MAX_PAGE)
        while True:  # page through so a big shop never loads one giant result at once
            page, cursor = list_orders(s, shop_id, f)
            rows.extend(page)
            if cursor is None:
                break
            f = parse_order_filter({"limit": str(MAX_PAGE), "cursor": cursor})
        text = orders_csv(rows)
    filename = f"orders-{shop.slug}.csv"
    return Response(
        "\ufeff" + text,  # a BOM so spreadsheet programs read UTF-8 names correctly
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@owner_page
async def shop_events(request: Request, owner: Owner) -> Response:
    """Live order events of one shop. The page re-reads the list on every (re)connect, so an
    event missed while disconnected costs nothing."""
    shop_id = request.path_params["shop_id"]
    with reading(request.app.state.db) as s:
        owned_shop(s, owner.id, shop_id)
    bus = request.app.state.bus

    async def stream() -> AsyncIterator[dict[str, Any]]:
        async with bus.subscribe(f"shop:{shop_id}") as sub:
            yield {"event": "ready", "data": json.dumps({"shop_id": shop_id})}
            gaps = sub.reconnects
            while True:
                message = await sub.get(timeout=30)
                if sub.reconnects != gaps:  # the bus lost messages: the page re-reads the list
                    gaps = sub.reconnects
                    yield {"event": "resync", "data": "{}"}
                if message is None:
                    continue
                kind = message.get("type")
                if kind in ("order_paid", "order_status") and isinstance(
                    message.get("order"), dict
                ):
                    yield {"event": kind, "data": json.dumps(message["order"])}

    # Ends with a retryable event on shutdown, so the page reconnects to a live worker.
    return sse_response(
        request, stream(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
