"""Dashboard pages: shops, shop settings, the share panel and table card, and the orders
pages (the menu pages are in ``catalog_pages``). Every page resolves its shop through the
signed-in owner (``owned_shop``), so another owner's id is a 404."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from server.catalog.money import currency_problem
from server.errors import AppError, NotFound, Unprocessable
from server.models import OrderStatusChange, Owner, Shop
from server.owners.api import apply_owner_status
from server.owners.auth import reading
from server.owners.catalog_pages import live_products
from server.owners.orders import (
    PAID_VIEW,
    OrderFilter,
    list_orders,
    order_notifications,
    owner_order_json,
    owner_orders_json,
)
from server.owners.pages import owner_page, redirect, render, secure
from server.owners.service import owned_order, owned_shop, owner_shops
from server.owners.shop_form import DAY_NAMES, DAYS, parse_shop_settings, settings_form_values
from server.shops.service import create_shop, shop_links

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD_TTL_SECONDS = 3600
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def _links(request: Request, shop: Shop) -> dict[str, Any]:
    settings = request.app.state.settings
    links = dict(shop_links(settings, shop))
    host = settings.public_base_url
    links.setdefault("csp_lines", [f"script-src {host}", f"frame-src {host}"])
    return links


async def _fields(request: Request) -> dict[str, Any]:
    form = await request.form()
    out: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    out["fulfillment_modes"] = [v for v in form.getlist("fulfillment_modes") if isinstance(v, str)]
    return out


# ---------------------------------------------------------------- shops


@owner_page
async def home(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        shops = owner_shops(s, owner.id)
    return render(request, "dashboard/home.html", {"shops": shops})


@owner_page
async def shop_create(request: Request, owner: Owner) -> Response:
    fields = await _fields(request)
    name = str(fields.get("name", "")).strip()
    currency = str(fields.get("currency", "usd")).strip().lower() or "usd"
    try:
        with request.app.state.db.write() as s:
            shop_id = create_shop(s, name=name, currency=currency, owner_id=owner.id).id
    except Unprocessable as exc:  # the name or the currency, in sentences naming them
        error = exc.message
        if exc.extra.get("field") == "name" and (problem := currency_problem(currency)):
            error = f"{error} {problem}"
        with reading(request.app.state.db) as s:
            shops = owner_shops(s, owner.id)
        ctx = {"shops": shops, "error": error, "name": name, "currency": currency}
        return render(request, "dashboard/home.html", ctx, 422)
    return redirect(f"/dashboard/shops/{shop_id}/catalog")


@owner_page
async def shop_overview(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, request.path_params["shop_id"])
        recent, _ = list_orders(s, shop.id, OrderFilter(statuses=PAID_VIEW, limit=5))
        products = len(live_products(s, shop))
    return render(
        request,
        "dashboard/shop.html",
        {"shop": shop, "links": _links(request, shop), "recent": recent, "product_count": products},
    )


@owner_page
async def shop_settings_page(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, request.path_params["shop_id"])
    ctx = {
        "shop": shop,
        "values": settings_form_values(shop),
        "errors": {},
        "days": DAYS,
        "day_names": DAY_NAMES,
        "saved": request.query_params.get("saved"),
    }
    return render(request, "dashboard/settings.html", ctx)


@owner_page
async def shop_settings_submit(request: Request, owner: Owner) -> Response:
    fields = await _fields(request)
    with request.app.state.db.write() as s:
        shop = owned_shop(s, owner.id, request.path_params["shop_id"])
        changes, errors = parse_shop_settings(
            fields,
            currency_locked=shop.live_catalog_version is not None,
            allow_private_urls=request.app.state.settings.private_webhooks_allowed,
        )
        if not errors:
            if changes["notify_webhook_url"] and not changes["notify_webhook_secret"]:
                changes["notify_webhook_secret"] = "whsec_" + secrets.token_urlsafe(24)
            for key, value in changes.items():
                setattr(shop, key, value)
            s.add(shop)
    if errors:
        values = {
            **settings_form_values(shop),
            **{k: v for k, v in fields.items() if k != "csrf_token"},
        }
        ctx = {
            "shop": shop,
            "values": values,
            "errors": errors,
            "days": DAYS,
            "day_names": DAY_NAMES,
        }
        return render(request, "dashboard/settings.html", ctx, 422)
    return redirect(f"/dashboard/shops/{shop.id}/settings?saved=1")


# ---------------------------------------------------------------- share panel


@owner_page
async def share_card(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, request.path_params["shop_id"])
    return render(request, "dashboard/card.html", {"shop": shop, "links": _links(request, shop)})


# ---------------------------------------------------------------- orders


@owner_page
async def orders_page(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, request.path_params["shop_id"])
        statuses = () if request.query_params.get("all") else PAID_VIEW
        orders, next_cursor = list_orders(s, shop.id, OrderFilter(statuses=statuses, limit=50))
        rows = owner_orders_json(s, orders)
    ctx = {
        "shop": shop,
        "orders": rows,
        "more": next_cursor is not None,
        "statuses": statuses,
        "all": bool(request.query_params.get("all")),
    }
    return render(request, "dashboard/orders.html", ctx)


@owner_page
async def order_detail(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        order, shop = owned_order(
            s, owner.id, request.path_params["order_id"], request.path_params["shop_id"]
        )
        history = s.exec(
            select(OrderStatusChange)
            .where(OrderStatusChange.order_id == order.id)
            .order_by(col(OrderStatusChange.id))
        ).all()
        data = owner_order_json(order)
        # None for an order never notified (its shop has no notification URL): nothing shown.
        notifications = order_notifications(s, order.id)
    ctx = {
        "shop": shop,
        "order": data,
        "history": history,
        "notifications": notifications,
        "error": request.query_params.get("error"),
    }
    return render(request, "dashboard/order.html", ctx)


@owner_page
async def order_status_submit(request: Request, owner: Owner) -> Response:
    shop_id, order_id = request.path_params["shop_id"], request.path_params["order_id"]
    target = str((await request.form()).get("status", ""))
    try:
        await apply_owner_status(request, owner, order_id, target, shop_id)
    except NotFound:
        raise
    except AppError as exc:
        with reading(request.app.state.db) as s:
            order, shop = owned_order(s, owner.id, order_id, shop_id)
            data = owner_order_json(order)
            notifications = order_notifications(s, order.id)
        ctx = {
            "shop": shop,
            "order": data,
            "history": [],
            "notifications": notifications,
            "error": exc.message,
        }
        return render(request, "dashboard/order.html", ctx, exc.status_code)
    return redirect(f"/dashboard/shops/{shop_id}/orders/{order_id}")


# ---------------------------------------------------------------- static files


async def static_file(request: Request) -> Response:
    name = request.url.path.rsplit("/", 1)[-1]
    media = "text/javascript" if name.endswith(".js") else "text/css"
    response = FileResponse(STATIC_DIR / name, media_type=media)
    response.headers["Cache-Control"] = "no-cache"
    return secure(response)
