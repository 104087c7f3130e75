"""Status changes and fulfilment of paid orders, exactly once.

Exactly once means: the move to ``paid`` happens in one transaction (the order row is locked and
the state machine refuses a second move), and only the caller whose transaction made that move
runs :func:`after_commit`, which writes the order file, notifies the shop and publishes events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from server import models
from server.db import Database
from server.events import EventBus
from server.ids import utcnow
from server.orders import status as st
from server.orders.create import order_to_json
from server.settings import Settings

log = logging.getLogger("shop_assist.orders")

# Seconds to wait before each attempt of the shop's notification webhook.
NOTIFY_BACKOFF: tuple[float, ...] = (0, 2, 10, 60, 300)
NOTIFY_TIMEOUT = 10.0
SIGNATURE_HEADER = "Shop-Assist-Signature"

_background: set[asyncio.Task[None]] = set()
_write_locks: weakref.WeakKeyDictionary[Database, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


@contextlib.contextmanager
def serialised_write(db: Database) -> Iterator[Session]:
    """``db.write()``, taken one at a time per process on SQLite.

    SQLite admits one writer anyway; threads queueing on a lock are handed over at once, while
    SQLite's own busy handler sleeps between retries (up to 100 ms each), which in a burst of
    webhooks made the slowest deliveries wait far longer than the work takes.
    """
    if not db.is_sqlite:
        with db.write() as s:
            yield s
        return
    with _locks_guard:
        lock = _write_locks.setdefault(db, threading.RLock())
    with lock, db.write() as s:
        yield s


@dataclass(frozen=True)
class StatusChange:
    order_id: str
    shop_id: str
    from_status: str
    to_status: str
    source: str


def lock_order(session: Session, order_id: str) -> models.Order | None:
    """Load the order for an update (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
    already serialises writers)."""
    stmt = (
        select(models.Order)
        .where(models.Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(stmt).first()


def change_status(
    session: Session, order: models.Order, target: str, *, source: str
) -> StatusChange | None:
    """Move ``order`` to ``target`` if the state machine allows it; record the change.

    Returns ``None`` (and changes nothing) for a move that is not allowed, including staying put:
    that is what makes a repeated "mark paid" harmless.
    """
    if not st.can_move(order.status, target):
        return None
    now = utcnow()
    change = StatusChange(order.id, order.shop_id, order.status, target, source[:60])
    order.status = target
    order.updated_at = now
    if target == st.PAID and order.paid_at is None:
        order.paid_at = now
    session.add(order)
    session.add(
        models.OrderStatusChange(
            order_id=order.id,
            from_status=change.from_status,
            to_status=target,
            source=change.source,
        )
    )
    return change


def flag_order(session: Session, order: models.Order, reason: str) -> None:
    """Mark the order for the owner's attention (a payment that does not match, ...)."""
    order.flagged = True
    order.flag_reason = reason if not order.flag_reason else f"{order.flag_reason}; {reason}"[:2000]
    order.updated_at = utcnow()
    session.add(order)


def write_order_file(orders_dir: str, order_json: dict[str, Any]) -> Path:
    """``ORDERS_DIR/{shop_id}/{order_id}.json``, written atomically (tmp file + rename)."""
    folder = Path(orders_dir) / order_json["shop_id"]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{order_json['order_id']}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(order_json, fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def sign_notification(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``t=...,v1=hex(hmac_sha256(secret, "t.body"))``, the scheme Stripe uses."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


async def after_commit(
    settings: Settings,
    db: Database,
    bus: EventBus,
    changes: list[StatusChange],
    *,
    request_id: str = "",
) -> None:
    """Run the effects of committed status changes: fulfil a new ``paid``, publish the rest.

    Call only with changes your own transaction made (that is the "exactly once")."""
    for change in changes:
        found = await run_in_threadpool(_effects, settings, db, change)
        if found is None:
            continue
        order_json, shop, order_row = found
        extra = {"request_id": request_id, "order_id": change.order_id, "status": change.to_status}
        if change.to_status == st.PAID:
            log.info("order paid and fulfilled", extra={**extra, "source": change.source})
            message = {"type": "order_paid", "order": order_json}
            if shop.notify_webhook_url:
                _spawn(_notify(db, shop, order_json, request_id))
        else:
            log.info("order status changed", extra={**extra, "from": change.from_status})
            message = {"type": "order_status", "order": order_json}
        await bus.publish(f"order:{change.order_id}", message)
        await bus.publish(
            f"shop:{change.shop_id}", {**message, "order": owner_fields(order_json, order_row)}
        )


async def publish_flagged(db: Database, bus: EventBus, order_id: str) -> None:
    """Tell the owner's live view that an order was flagged (its status did not change)."""
    order, _ = await run_in_threadpool(_load, db, order_id)
    if order is not None:
        order_json = owner_fields(order_to_json(order), order)
        await bus.publish(f"shop:{order.shop_id}", {"type": "order_status", "order": order_json})


def owner_fields(order_json: dict[str, Any], order: Any) -> dict[str, Any]:
    """The order JSON plus what only the owner's channel carries: the flag and the amount paid."""
    return {
        **order_json,
        "flagged": order.flagged,
        "flag_reason": order.flag_reason,
        "amount_paid": order.amount_paid,
    }


def _effects(
    settings: Settings, db: Database, change: StatusChange
) -> tuple[dict[str, Any], models.Shop, models.Order] | None:
    """The blocking part, in one worker thread: read the order; for a new ``paid``, write its
    file and then record that it was fulfilled."""
    order, shop = _load(db, change.order_id)
    if order is None or shop is None:
        return None
    order_json = order_to_json(order)
    if change.to_status == st.PAID:
        write_order_file(settings.orders_dir, order_json)
        _mark_fulfilled(db, order.id)
    return order_json, shop, order


def _load(db: Database, order_id: str) -> tuple[models.Order | None, models.Shop | None]:
    with db.read() as s:
        order = s.get(models.Order, order_id)
        shop = s.get(models.Shop, order.shop_id) if order else None
        s.expunge_all()  # detached before the read scope's rollback would expire them
        return order, shop


def _mark_fulfilled(db: Database, order_id: str) -> None:
    with serialised_write(db) as s:
        order = s.get(models.Order, order_id)
        if order is not None and order.fulfilled_at is None:
            order.fulfilled_at = utcnow()
            s.add(order)


def _spawn(coro: Any) -> None:
    # Keep a reference: the loop holds tasks weakly and would let a pending one be collected.
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def wait_for_notifications(timeout: float = 10.0) -> None:
    """Wait for pending shop notifications (tests and graceful shutdown)."""
    pending = [t for t in _background if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


async def _notify(
    db: Database, shop: models.Shop, order_json: dict[str, Any], request_id: str
) -> None:
    """POST the paid order to the shop's webhook, signed, retried with backoff, logged."""
    body = json.dumps({"type": "order.paid", "order": order_json}, separators=(",", ":")).encode()
    url = shop.notify_webhook_url
    extra = {"request_id": request_id, "order_id": order_json["order_id"], "shop_id": shop.id}
    async with httpx.AsyncClient(timeout=NOTIFY_TIMEOUT, follow_redirects=False) as client:
        for attempt, delay in enumerate(NOTIFY_BACKOFF, start=1):
            if delay:
                await asyncio.sleep(delay)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "ShopAssist-Webhook/1",
                "Shop-Assist-Event": "order.paid",
                "Shop-Assist-Delivery": f"{order_json['order_id']}",
            }
            if shop.notify_webhook_secret:
                headers[SIGNATURE_HEADER] = sign_notification(shop.notify_webhook_secret, body)
            status_code: int | None = None
            error: str | None = None
            try:
                resp = await client.post(url, content=body, headers=headers)
                status_code = resp.status_code
            except httpx.HTTPError as err:
                error = f"{type(err).__name__}: {err}"[:500]
            ok = status_code is not None and 200 <= status_code < 300
            await run_in_threadpool(
                _log_delivery,
                db,
                shop,
                order_json["order_id"],
                url,
                attempt,
                status_code,
                error,
                ok,
            )
            if ok:
                log.info("shop notified", extra={**extra, "attempt": attempt})
                return
            log.warning(
                "shop notification failed",
                extra={**extra, "attempt": attempt, "status": status_code, "error": error},
            )
            # A 4xx other than timeout/rate limit will not get better by retrying.
            if (
                status_code is not None
                and 400 <= status_code < 500
                and status_code not in (408, 429)
            ):
                return


def _log_delivery(
    db: Database,
    shop: models.Shop,
    order_id: str,
    url: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
    ok: bool,
) -> None:
    with serialised_write(db) as s:
        s.add(
            models.WebhookDelivery(
                shop_id=shop.id,
                order_id=order_id,
                url=url,
                attempt=attempt,
                status_code=status_code,
                error=error,
                delivered_at=utcnow() if ok else None,
            )
        )
