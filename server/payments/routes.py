"""Payment routes: the Stripe webhook, the checkout return page and the demo checkout.

``POST /api/stripe/webhook`` · ``GET /checkout/return`` · ``GET|POST /pay/demo/{order_id}``
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server import models
from server.catalog.money import format_amount
from server.db import Database
from server.errors import AppError, NotFound, PayloadTooLarge, UpstreamError
from server.http import request_id
from server.ids import tokens_equal, utcnow
from server.orders import status as st
from server.orders.fulfil import after_commit, publish_flagged, serialised_write
from server.payments.checkout import order_token
from server.payments.gateway import gateway_for_order, is_live_key
from server.payments.sessions import IssuedSession, issued_session
from server.payments.webhook import EventResult, Origin, record_event, settle_session

log = logging.getLogger("shop_assist.payments")

MAX_WEBHOOK_BYTES = 512 * 1024


async def stripe_webhook(request: Request) -> Response:
    """Verify, store once, apply. Any error after verification rolls back and answers 500 so
    Stripe delivers the event again."""
    state = request.app.state
    raw = await request.body()
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge("Webhook body too large.")
    rid = request_id(request)
    try:
        event = await state.payments.parse_event(raw, request.headers)
    except AppError as err:
        # A wrong STRIPE_WEBHOOK_SECRET shows up here first; the reason names no secret.
        log.warning("webhook refused", extra={"request_id": rid, "reason": err.message})
        raise
    extra = {"request_id": rid, "event_id": event["id"], "event_type": event["type"]}
    try:
        result: EventResult = await run_in_threadpool(
            record_event, state.db, event, live_key=is_live_key(state.settings.stripe_secret_key)
        )
    except Exception:
        log.exception("webhook handling failed; rolled back", extra=extra)
        return JSONResponse(
            {
                "error": "WebhookFailed",
                "detail": "The event could not be handled; it will be retried.",
            },
            status_code=500,
        )
    log.info("webhook", extra={**extra, "order_id": result.order_id, "outcome": result.outcome})
    if result.changes or result.flagged:
        try:
            await _publish(request, result)
        except Exception:
            # The payment is committed; a redelivery would be a duplicate, so answering 500 would
            # not help. The order stays paid with ``fulfilled_at`` empty, and the recovery sweep
            # (server/orders/recovery.py) fulfils it.
            log.exception(
                "fulfilment failed after commit", extra={**extra, "order_id": result.order_id}
            )
    return JSONResponse(
        {"received": True, "duplicate": result.duplicate, "outcome": result.outcome}
    )


async def _publish(request: Request, result: EventResult) -> None:
    """After the commit: fulfil or announce status changes; show a new flag to the owner."""
    state = request.app.state
    await after_commit(
        state.settings, state.db, state.bus, result.changes, request_id=request_id(request)
    )
    if result.flagged and result.order_id and not result.changes:
        await publish_flagged(state.db, state.bus, result.order_id)


def _load(db: Database, order_id: str) -> tuple[models.Order, models.Shop] | None:
    with db.read() as s:
        order = s.get(models.Order, order_id)
        shop = s.get(models.Shop, order.shop_id) if order else None
        s.expunge_all()  # detached before the read scope's rollback would expire them
        return (order, shop) if order and shop else None


def _issued(db: Database, order_id: str, session_id: str) -> IssuedSession | None:
    with db.read() as s:
        order = s.get(models.Order, order_id)
        shop = s.get(models.Shop, order.shop_id) if order else None
        return issued_session(s, order, shop, session_id) if order and shop else None


def _settle(db: Database, obj: dict[str, Any], origin: Origin) -> EventResult:
    with serialised_write(db) as s:
        return settle_session(s, obj, origin)


async def _authorised(
    request: Request, order_id: str | None, token: str | None
) -> tuple[models.Order, models.Shop]:
    settings = request.app.state.settings
    if not order_id or not token or not tokens_equal(token, order_token(settings, order_id)):
        raise NotFound("No such order.")
    found = await run_in_threadpool(_load, request.app.state.db, order_id)
    if found is None:
        raise NotFound("No such order.")
    return found


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """A page whose only scripts and styles carry this response's nonce."""
    nonce = secrets.token_urlsafe(16)
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    return request.app.state.templates.TemplateResponse(
        request, name, {**context, "nonce": nonce}, status_code=status_code, headers=headers
    )


def _order_view(order: models.Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "number": order.number,
        "status": order.status,
        "lines": [
            {
                **line,
                "choices": ", ".join(o["choice"] for o in line.get("options") or []),
                "total_text": format_amount(line["line_total"], order.currency),
            }
            for line in order.items
        ],
        "total_text": format_amount(order.total, order.currency),
    }


async def checkout_return(request: Request) -> Response:
    """The popup's landing page: confirm with the gateway, fulfil if the webhook has not yet,
    tell the opener, close. Without an opener it is the confirmation page itself."""
    state = request.app.state
    q = request.query_params
    try:
        order, shop = await _authorised(request, q.get("order_id"), q.get("token"))
    except NotFound:
        return _page(request, "checkout_return.html", {"missing": True}, status_code=404)
    cancelled = q.get("cancelled") == "1"
    session_id = q.get("session_id") or ""
    gateway = gateway_for_order(state.payments, order)
    if not cancelled and session_id and gateway.name == "stripe" and not st.is_paid(order.status):
        # Only a session this server opened for this order, read from the account it was
        # opened on: the query string is the customer's to write.
        issued = await run_in_threadpool(_issued, state.db, order.id, session_id)
        obj = None
        if issued is not None and issued.gateway == "stripe":
            # On failure the webhook will still arrive; the page shows "confirming".
            with contextlib.suppress(UpstreamError):
                obj = await gateway.retrieve(session_id, issued.account)
        if (
            issued is not None
            and obj
            and obj.get("id") == session_id
            and (obj.get("metadata") or {}).get("order_id") == order.id
        ):
            origin = Origin(
                source="return",
                account=issued.account,
                livemode=obj.get("livemode") is True,
                live_key=is_live_key(state.settings.stripe_secret_key),
            )
            result = await run_in_threadpool(_settle, state.db, obj, origin)
            log.info(
                "return page checked session",
                extra={
                    "request_id": request_id(request),
                    "order_id": order.id,
                    "outcome": result.outcome,
                },
            )
            await _publish(request, result)
        order, shop = await _authorised(request, order.id, q.get("token"))
    if st.is_paid(order.status):
        kind = "order_paid"
    elif cancelled:
        kind = "order_cancelled"
    elif order.status in (st.PAYMENT_FAILED, st.EXPIRED, st.CANCELLED, st.REFUNDED):
        kind = "order_failed"
    else:
        kind = "order_pending"
    message = {"type": f"shop-assist:{kind}", "order_id": order.id, "status": order.status}
    return _page(
        request,
        "checkout_return.html",
        {
            "kind": kind,
            "order": _order_view(order),
            "shop_name": shop.name,
            "message": message,
            "target_origin": state.settings.public_base_url,
            "status_url": f"/api/order/status/{order.id}?" + urlencode({"token": q.get("token")}),
        },
    )


async def demo_checkout(request: Request) -> Response:
    """``GET`` shows the demo checkout; ``POST`` pays (or cancels) it through the webhook path."""
    state = request.app.state
    order_id = request.path_params["order_id"]
    form = await request.form() if request.method == "POST" else None
    token = str(form.get("token") or "") if form is not None else request.query_params.get("token")
    order, shop = await _authorised(request, order_id, token)
    if (
        order.payment_mode != "demo"
        or gateway_for_order(state.payments, order).name != "demo"
        or not order.checkout_session_id
    ):
        raise NotFound("There is no demo checkout for this order.")
    back = urlencode({"order_id": order.id, "token": token})
    expires = order.checkout_expires_at
    # Like a Stripe session, a demo checkout ends after its 30 minutes; the chat opens a new one.
    expired = (
        expires is not None
        and (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) <= utcnow()
    )
    if form is None:
        return _page(
            request,
            "pay_demo.html",
            {
                "order": _order_view(order),
                "shop_name": shop.name,
                "token": token,
                "payable": order.status in st.PAYABLE_STATUSES and not expired,
                "expired": expired and order.status in st.PAYABLE_STATUSES,
                "return_url": f"/checkout/return?{back}",
            },
        )
    if form.get("action") == "cancel":
        return RedirectResponse(f"/checkout/return?cancelled=1&{back}", status_code=303)
    if order.status not in st.PAYABLE_STATUSES and not st.is_paid(order.status):
        raise AppError(f"This order is {order.status.replace('_', ' ')}; it cannot be paid.", 409)
    if expired and not st.is_paid(order.status):
        raise AppError(
            "This demo checkout has expired; start the payment again from the chat.", 409
        )
    session_id = order.checkout_session_id
    event = {
        "id": f"demo_evt_{session_id}",
        "type": "checkout.session.completed",
        "livemode": False,
        "data": {
            "object": {
                "id": session_id,
                "object": "checkout.session",
                "status": "complete",
                "payment_status": "paid",
                "amount_total": order.total,
                "currency": order.currency,
                "client_reference_id": order.id,
                "metadata": {"order_id": order.id, "shop_id": shop.id},
                "payment_intent": None,
            }
        },
    }
    result = await run_in_threadpool(
        record_event, state.db, event, live_key=is_live_key(state.settings.stripe_secret_key)
    )
    log.info(
        "demo payment",
        extra={"request_id": request_id(request), "order_id": order.id, "outcome": result.outcome},
    )
    await _publish(request, result)
    return RedirectResponse(f"/checkout/return?session_id={session_id}&{back}", status_code=303)


routes: list[BaseRoute] = [
    Route("/api/stripe/webhook", stripe_webhook, methods=["POST"]),
    Route("/checkout/return", checkout_return, methods=["GET"]),
    Route("/pay/demo/{order_id}", demo_checkout, methods=["GET", "POST"]),
]
