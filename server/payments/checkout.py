"""Opening a checkout for an order (a command), without holding a transaction across Stripe.

1. A short write transaction checks the thread token, re-prices a client-sent order from the
   catalog, and either finds a stored, still-open session for this version of the order (a
   double click: nothing new is made) or reserves the next one: its idempotency key and expiry.
2. Outside any transaction: create the session.
3. A short transaction lists it as issued for the order (only listed sessions can pay it) and
   reads the order's earlier sessions that may still be open.
4. Outside any transaction: expire each of those at Stripe, on the account it was opened on.
   If Stripe cannot close one, the new session is not handed out (502); it stays listed, so the
   next attempt (the same session again, or a new one) closes the old ones first.
5. A last short transaction makes the session the order's current one and hands it out.

Only the newest reservation hands out its session: one that a newer checkout replaced while
Stripe made it (another tab changed the cart) is expired and answered 409, as is one for an
order cancelled or paid meanwhile. So the order's current session is the only one open at
Stripe once it is handed out; a payment on an older one that slips through (the customer paid
as the cart changed) is flagged by the webhook when its amount does not match.

The idempotency key and ``expires_at`` are fixed in step 1, so two clicks racing through step 2
send Stripe identical requests and get the same session back. A new session (not a double click)
is counted first, per order and per client, with the shared rate limiter: a client changing the
cart in a loop would otherwise make Stripe calls per request without end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool

from server import models
from server.catalog.money import format_amount
from server.catalog.service import load_menu
from server.db import Database
from server.errors import Conflict, NotFound, RateLimited, Unprocessable, UpstreamError
from server.ids import hash_token, iso, sign, tokens_equal, utcnow
from server.orders import status as st
from server.orders.cart import option_labels
from server.orders.create import OrderDraftError, price_items
from server.orders.fulfil import StatusChange, change_status, lock_order, serialised_write
from server.payments.gateway import Payments, gateway_for_shop
from server.payments.sessions import OpenCheckout, expire_checkouts, open_checkouts, record_issued
from server.ratelimit import RateLimiter
from server.settings import Settings

log = logging.getLogger("shop_assist.payments")

CHECKOUT_TTL = timedelta(minutes=30)
# Stripe refuses an ``expires_at`` less than 30 minutes after it receives the request, so the
# reservation carries a minute of slack and is reused only while that slack lasts.
EXPIRY_SLACK = timedelta(seconds=60)
REUSE_MARGIN = timedelta(seconds=5)
# The Cashier's thread is a clone of the Waiter's; either one's token opens the order.
MAX_THREAD_ANCESTORS = 4
# A stored session this close to its end is replaced rather than handed out again.
MIN_REMAINING = timedelta(minutes=2)
# New checkout sessions allowed per order and per client (IP address) in a window. A customer
# who changes the cart a few times stays far below; several customers behind one café Wi-Fi too.
SESSIONS_PER_ORDER = 6  # per SESSION_WINDOW_SECONDS; per client: CHECKOUT_RATE_PER_IP
SESSION_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class CheckoutPlan:
    reuse: bool
    attempt: int
    expires_at: datetime
    new_session: bool = False  # a new reservation: a session Stripe has not made yet


class _NewSessionNeeded(Exception):
    """Raised inside :func:`_reserve` (rolling it back) when it would open a new session that
    has not been counted against the limits yet."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


def order_token(settings: Settings, order_id: str) -> str:
    """The customer's bearer token for an order's status, events and return page."""
    return sign(settings.secret_key, "order", order_id)


def check_order_token(settings: Settings, order_id: str, token: str | None) -> None:
    if not token or not tokens_equal(token, order_token(settings, order_id)):
        raise NotFound("No such order.")


def idempotency_key(order: models.Order, attempt: int) -> str:
    """Deterministic per order version and attempt: a double click gets one session."""
    return f"checkout-{order.id}-v{order.version}-a{attempt}"


def plan_checkout(order: models.Order, now: datetime) -> CheckoutPlan:
    """Pure: reuse the stored session, join a reservation in progress, or reserve a new one."""
    same_version = order.checkout_version == order.version
    expires = order.checkout_expires_at
    if expires is not None and expires.tzinfo is None:  # SQLite gives naive UTC back
        expires = expires.replace(tzinfo=UTC)
    if same_version and expires is not None:
        if order.checkout_session_id and order.checkout_url and expires - now > MIN_REMAINING:
            return CheckoutPlan(True, order.checkout_attempt, expires)
        if not order.checkout_session_id and expires - now >= CHECKOUT_TTL + REUSE_MARGIN:
            return CheckoutPlan(False, order.checkout_attempt, expires)
    # Whatever session exists is replaced; the checkout expires it before handing out the next.
    attempt = order.checkout_attempt + 1 if same_version else 0
    fresh = (now + CHECKOUT_TTL + EXPIRY_SLACK).replace(microsecond=0)
    return CheckoutPlan(False, attempt, fresh, new_session=True)


def stripe_line_items(order: models.Order) -> list[dict[str, Any]]:
    """Checkout line items from the server-side order lines (options in the unit price, and
    named in the product name)."""
    items: list[dict[str, Any]] = []
    for line in order.items:
        chosen = ((o["group"], o["choice"]) for o in line.get("options") or [])
        choices = ", ".join(option_labels(chosen))
        name = line["name"] + (f" ({choices})" if choices else "")
        product: dict[str, Any] = {"name": name[:250]}
        if line.get("note"):
            product["description"] = str(line["note"])[:250]
        items.append(
            {
                "quantity": int(line["quantity"]),
                "price_data": {
                    "currency": order.currency,
                    "unit_amount": int(line["unit_price"]),
                    "product_data": product,
                },
            }
        )
    for label, amount in (("Tax", order.tax), ("Tip", order.tip)):
        if amount:
            items.append(
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": order.currency,
                        "unit_amount": amount,
                        "product_data": {"name": label},
                    },
                }
            )
    return items


def _authorise(s: Any, order: models.Order, thread_token: Any) -> None:
    """The order's thread (or the thread it was cloned from) must hold ``thread_token``."""
    if not isinstance(thread_token, str) or not thread_token or not order.thread_id:
        raise NotFound("No such order.")
    wanted = hash_token(thread_token)
    thread = s.get(models.Thread, order.thread_id)
    for _ in range(MAX_THREAD_ANCESTORS):
        if thread is None:
            break
        if tokens_equal(thread.token_hash, wanted):
            return
        thread = s.get(models.Thread, thread.parent_id) if thread.parent_id else None
    raise NotFound("No such order.")


def _reprice(s: Any, order: models.Order, items: Any) -> None:
    """A client-sent order: read only product ids, quantities, options and notes, price them
    from the order's catalog version, and bump the order's version if the lines changed."""
    menu = load_menu(s, order.shop_id, order.catalog_version)
    if menu is None:
        raise Conflict("The catalog of this order is no longer available.")
    wanted = [
        {k: item.get(k) for k in ("product_id", "quantity", "options", "note")}
        if isinstance(item, dict)
        else item
        for item in items
    ]
    try:
        lines = price_items(menu, wanted)
    except OrderDraftError as err:
        raise Unprocessable("The order cannot be priced.", problems=err.problems) from None
    new_items = [{**line.to_json(), "line_id": f"l{i}"} for i, line in enumerate(lines, start=1)]
    if new_items == order.items:
        return
    order.items = new_items
    order.subtotal = sum(line.line_total for line in lines)
    order.total = order.subtotal + order.tax + order.tip
    order.version += 1
    order.updated_at = utcnow()
    s.add(order)


def _reserve(
    db: Database, shop_id: str, body: dict[str, Any], now: datetime, counted: bool
) -> tuple[models.Order, models.Shop, CheckoutPlan, list[StatusChange]]:
    with serialised_write(db) as s:
        order_id = body.get("order_id")
        order = lock_order(s, order_id) if isinstance(order_id, str) else None
        if order is None or order.shop_id != shop_id:
            raise NotFound("No such order.")
        _authorise(s, order, body.get("thread_token"))
        shop = s.get(models.Shop, shop_id)
        if shop is None:
            raise NotFound("No such order.")
        if order.status not in st.PAYABLE_STATUSES:
            raise Conflict(
                f"This order is {order.status.replace('_', ' ')}; it cannot be paid again.",
                status=order.status,
            )
        if isinstance(body.get("items"), list):
            _reprice(s, order, body["items"])
        if order.total <= 0:
            raise Unprocessable("The order total must be more than zero.")
        plan = plan_checkout(order, now)
        if plan.new_session and not counted:
            raise _NewSessionNeeded(order.id)
        changes: list[StatusChange] = []
        if order.status != st.AWAITING_PAYMENT:  # trying again after a failed or expired checkout
            change = change_status(s, order, st.AWAITING_PAYMENT, source="checkout")
            changes = [change] if change else []
        if not plan.reuse:
            order.checkout_version = order.version
            order.checkout_attempt = plan.attempt
            order.checkout_expires_at = plan.expires_at
            order.checkout_session_id = None
            order.checkout_url = None
            s.add(order)
        return order, shop, plan, changes


@dataclass(frozen=True)
class _Made:
    """Where the order stands once Stripe made a session for a reservation."""

    status: str  # not payable: cancelled (or paid) while Stripe made it
    replaced: bool  # a newer checkout was reserved meanwhile
    earlier: list[OpenCheckout]  # the order's other sessions that may still be open


def _current(order: models.Order, version: int, attempt: int) -> bool:
    return order.checkout_version == version and order.checkout_attempt == attempt


def _record(
    db: Database,
    order_id: str,
    version: int,
    attempt: int,
    session_id: str,
    gateway: str,
    account: str,
    now: datetime,
) -> _Made:
    """List the session as issued for the order (so it is closed later whatever happens next)
    and read the order's earlier sessions that may still be open. A session listed after this
    one belongs to a newer reservation, so it is never among them."""
    with serialised_write(db) as s:
        order = lock_order(s, order_id)
        if order is None:
            raise NotFound("No such order.")
        record_issued(s, order_id, session_id, gateway, account)
        replaced = not _current(order, version, attempt)
        if order.status not in st.PAYABLE_STATUSES or replaced:
            return _Made(order.status, replaced, [])
        return _Made(order.status, False, open_checkouts(s, order, now, keep=session_id))


def _store(
    db: Database, order_id: str, version: int, attempt: int, session: Any, gateway: str
) -> _Made:
    """Make the session the order's current one, unless the order was cancelled (or paid) or a
    newer checkout was reserved while the earlier sessions were being closed."""
    with serialised_write(db) as s:
        order = lock_order(s, order_id)
        if order is None:
            raise NotFound("No such order.")
        replaced = not _current(order, version, attempt)
        if order.status in st.PAYABLE_STATUSES and not replaced:
            order.checkout_session_id = session.session_id
            order.checkout_url = session.url
            order.checkout_expires_at = session.expires_at
            order.payment_mode = gateway
            s.add(order)
        return _Made(order.status, replaced, [])


async def count_new_session(
    limiter: RateLimiter, order_id: str, client: str, per_client: int
) -> None:
    """Count one new checkout session for the order and the client; raises
    :class:`RateLimited` (429 with ``Retry-After``) past either limit. Shared by every worker
    when the limiter runs on Redis."""
    limits = [(f"checkout:order:{order_id}", SESSIONS_PER_ORDER, "for this order")]
    if client:
        limits.append((f"checkout:client:{client}", per_client, "from this address"))
    for key, limit, where in limits:
        wait = await limiter.hit(key, limit, SESSION_WINDOW_SECONDS)
        if wait is not None:
            raise RateLimited(f"Too many new checkouts {where}; try again in {wait} s.", wait)


async def start_checkout(
    settings: Settings,
    db: Database,
    payments: Payments,
    shop_id: str,
    body: dict[str, Any],
    *,
    limiter: RateLimiter,
    client: str = "",
    request_id: str = "",
) -> tuple[dict[str, Any], list[StatusChange]]:
    """``POST /api/order/{shop_id}``: the checkout URL for an order, made at most once per
    version of the order. Returns the response JSON and any status change to publish.

    A double click gets the stored session back and counts nothing; a new session (first
    checkout, changed cart, ended session) is counted per order and per ``client`` first, and
    past the limit nothing changes: the order keeps its cart and its open session."""
    try:
        reserved = await run_in_threadpool(_reserve, db, shop_id, body, utcnow(), False)
    except _NewSessionNeeded as needed:
        await count_new_session(limiter, needed.order_id, client, settings.checkout_rate_per_ip)
        reserved = await run_in_threadpool(_reserve, db, shop_id, body, utcnow(), True)
    order, shop, plan, changes = reserved
    token = order_token(settings, order.id)
    extra = {"request_id": request_id, "order_id": order.id, "version": order.version}
    if plan.reuse:
        log.info("checkout reused", extra=extra)
        return _response(order.id, order.checkout_url or "", token, plan.expires_at), changes
    gateway = gateway_for_shop(payments, shop)
    account = shop.stripe_account_id or None
    base = settings.public_base_url
    query = urlencode({"order_id": order.id, "token": token})
    session = await gateway.create_checkout(
        order,
        shop,
        stripe_line_items(order),
        idempotency_key=idempotency_key(order, plan.attempt),
        # Stripe fills in {CHECKOUT_SESSION_ID}; it must stay unescaped.
        success_url=f"{base}/checkout/return?session_id={{CHECKOUT_SESSION_ID}}&{query}",
        cancel_url=f"{base}/checkout/return?cancelled=1&{query}",
        expires_at=plan.expires_at,
    )
    stored_account = (account or "") if gateway.name == "stripe" else ""
    reservation = (db, order.id, order.version, plan.attempt)
    made = await run_in_threadpool(
        _record, *reservation, session.session_id, gateway.name, stored_account, utcnow()
    )
    if made.status in st.PAYABLE_STATUSES and not made.replaced:
        # Close every earlier session (an older cart's, or one made but never handed out)
        # before this one is handed out; each on the account it was opened on.
        if await expire_checkouts(payments, made.earlier, log_extra=extra):
            raise UpstreamError(
                "The previous checkout of this order could not be closed; please try again."
            )
        if made.earlier:
            log.info("earlier checkouts expired", extra={**extra, "expired": len(made.earlier)})
        made = await run_in_threadpool(_store, *reservation, session, gateway.name)
    if made.status not in st.PAYABLE_STATUSES or made.replaced:
        # Cancelled (or paid), or replaced by a newer checkout, while Stripe made the session:
        # close it rather than hand it out.
        try:
            await gateway.expire(session.session_id, account)
        except UpstreamError:
            log.warning("could not expire a checkout that was not handed out", extra=extra)
        if made.status not in st.PAYABLE_STATUSES:
            raise Conflict(
                f"This order is {made.status.replace('_', ' ')}; it cannot be paid again.",
                status=made.status,
            )
        raise Conflict(
            "The order changed while this checkout was being opened; "
            "open the checkout again to pay the order as it is now.",
            status=made.status,
        )
    log.info(
        "checkout created",
        extra={
            **extra,
            "gateway": gateway.name,
            "total": format_amount(order.total, order.currency),
        },
    )
    return _response(order.id, session.url, token, session.expires_at), changes


def _response(order_id: str, url: str, token: str, expires_at: datetime) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "checkout_url": url,
        "order_token": token,
        "expires_at": iso(expires_at),
    }
