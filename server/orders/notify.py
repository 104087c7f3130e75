"""The shop's notification webhook: a signed POST of each paid order, retried until delivered.

Deliveries are kept in the database, so a restart loses none. Each attempt is one
``WebhookDelivery`` row (the delivery log). A row whose ``next_attempt_at`` is set and which has
no result yet is *pending*: it is created with the fulfilment (in the same transaction that sets
``fulfilled_at``), and after a failed attempt the next one is created with its due time. An
attempt is claimed first (a conditional UPDATE pushes ``next_attempt_at`` ahead by
``CLAIM_SECONDS``), so two workers never send the same attempt at once, and one that died
mid-attempt is retried once the claim runs out. Every attempt carries the same
``Shop-Assist-Delivery`` / ``Idempotency-Key`` header (the order id), so a receiver can
de-duplicate the rare repeat.

The POST goes through :func:`server.orders.webhook_client.webhook_client`, which connects only to
public addresses (resolved and vetted at send time, then pinned). An attempt refused for its
address is recorded like any failed attempt, with the reason as its error, and is not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from server import models
from server.db import Database
from server.ids import utcnow
from server.orders.create import order_to_json
from server.orders.webhook_client import UnsafeAddress, webhook_client

log = logging.getLogger("shop_assist.orders")

# Seconds to wait before each attempt; its length is the most attempts a delivery gets.
NOTIFY_BACKOFF: tuple[float, ...] = (0, 2, 10, 60, 300)
NOTIFY_TIMEOUT = 10.0
# A claimed attempt with no result after this long is presumed lost with its process.
CLAIM_SECONDS = NOTIFY_TIMEOUT + 20
SIGNATURE_HEADER = "Shop-Assist-Signature"
DELIVERY_HEADER = "Shop-Assist-Delivery"
DUE_BATCH = 100

_tasks: set[asyncio.Task[None]] = set()
_sleeping: set[asyncio.Task[None]] = set()
_draining: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def sign_notification(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``t=...,v1=hex(hmac_sha256(secret, "t.body"))``, the scheme Stripe uses."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def enqueue_delivery(session: Session, shop: models.Shop, order_id: str, now: datetime) -> int:
    """Add the first, pending attempt of the paid order's notification (caller commits)."""
    row = models.WebhookDelivery(
        shop_id=shop.id,
        order_id=order_id,
        url=shop.notify_webhook_url,
        attempt=1,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


@dataclass(frozen=True)
class _Attempt:
    delivery_id: int
    attempt: int
    order_id: str
    shop_id: str
    url: str
    secret: str
    body: bytes


def due_deliveries(db: Database, now: datetime, limit: int = DUE_BATCH) -> list[int]:
    """Ids of pending attempts whose time has come (query)."""
    with db.read() as s:
        due = col(models.WebhookDelivery.next_attempt_at)
        rows = s.exec(
            select(models.WebhookDelivery.id).where(due <= now).order_by(due).limit(limit)
        ).all()
        return [r for r in rows if r is not None]


def _claim(db: Database, delivery_id: int, now: datetime) -> _Attempt | None:
    """Take the pending attempt if it is due and nobody holds it; None otherwise."""
    from server.orders.fulfil import serialised_write

    with serialised_write(db) as s:
        due = col(models.WebhookDelivery.next_attempt_at)
        stmt = (
            update(models.WebhookDelivery)
            .where(col(models.WebhookDelivery.id) == delivery_id, due.is_not(None), due <= now)
            .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        )
        if s.connection().execute(stmt).rowcount != 1:
            return None
        row = s.get(models.WebhookDelivery, delivery_id, populate_existing=True)
        order = s.get(models.Order, row.order_id) if row else None
        shop = s.get(models.Shop, row.shop_id) if row else None
        if row is None or order is None or shop is None or not shop.notify_webhook_url:
            if row is not None:  # nothing to send to any more: close the attempt
                row.next_attempt_at = None
                row.error = "no notification URL"
                row.attempted_at = now
                s.add(row)
            return None
        body = json.dumps(
            {"type": "order.paid", "order": order_to_json(order)}, separators=(",", ":")
        ).encode()
        return _Attempt(
            row.id or delivery_id,
            row.attempt,
            order.id,
            shop.id,
            shop.notify_webhook_url,
            shop.notify_webhook_secret,
            body,
        )


def _record(
    db: Database,
    job: _Attempt,
    status_code: int | None,
    error: str | None,
    *,
    final: bool = False,
) -> tuple[int, float] | None:
    """Store the attempt's result; schedule the next attempt if one is due. Returns the next
    attempt's id and delay, or None when delivered or given up (``final``: give up now)."""
    from server.orders.fulfil import serialised_write

    now = utcnow()
    ok = status_code is not None and 200 <= status_code < 300
    # A 4xx other than timeout/rate limit will not get better by retrying.
    final = (
        final
        or ok
        or (status_code is not None and 400 <= status_code < 500 and status_code not in (408, 429))
    )
    with serialised_write(db) as s:
        row = s.get(models.WebhookDelivery, job.delivery_id, populate_existing=True)
        if row is None or row.next_attempt_at is None:
            return None  # another worker recorded this attempt after our claim ran out
        row.url, row.status_code, row.error = job.url, status_code, error
        row.attempted_at, row.next_attempt_at = now, None
        row.delivered_at = now if ok else None
        s.add(row)
        if final or row.attempt >= len(NOTIFY_BACKOFF):
            return None
        delay = float(NOTIFY_BACKOFF[row.attempt])
        nxt = models.WebhookDelivery(
            shop_id=row.shop_id,
            order_id=row.order_id,
            url=job.url,
            attempt=row.attempt + 1,
            created_at=now,
            next_attempt_at=now + timedelta(seconds=delay),
        )
        s.add(nxt)
        s.flush()
        assert nxt.id is not None
        return nxt.id, delay


async def _send(client: httpx.AsyncClient, job: _Attempt) -> tuple[int | None, str | None, bool]:
    """The response's status code, or None and the error; True when retrying cannot help."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ShopAssist-Webhook/1",
        "Shop-Assist-Event": "order.paid",
        # The same on every attempt of one order's notification: the receiver's de-duplication key.
        DELIVERY_HEADER: job.order_id,
        "Idempotency-Key": job.order_id,
        "Shop-Assist-Attempt": str(job.attempt),
    }
    if job.secret:
        headers[SIGNATURE_HEADER] = sign_notification(job.secret, job.body)
    try:
        resp = await client.post(job.url, content=job.body, headers=headers)
        return resp.status_code, None, False
    except UnsafeAddress as err:
        return None, f"refused: {err}"[:500], True
    except httpx.HTTPError as err:
        return None, f"{type(err).__name__}: {err}"[:500], False


async def deliver(
    db: Database,
    delivery_id: int,
    *,
    allow_private: bool = False,
    request_id: str = "",
    now: datetime | None = None,
) -> None:
    """Send the pending attempt ``delivery_id`` and, in this process, the retries that follow.

    Stops when delivered, given up, or when another worker holds the attempt. ``now`` (tests,
    the recovery sweep) is the clock for the first claim only. ``allow_private`` (development,
    ``Settings.private_webhooks_allowed``) lets the URL reach this machine or the local network.
    """
    current: int | None = delivery_id
    async with webhook_client(allow_private=allow_private, timeout=NOTIFY_TIMEOUT) as client:
        while current is not None:
            job = await run_in_threadpool(_claim, db, current, now or utcnow())
            if job is None:
                return
            now = None
            status_code, error, final = await _send(client, job)
            extra = {
                "request_id": request_id,
                "order_id": job.order_id,
                "shop_id": job.shop_id,
                "attempt": job.attempt,
            }
            if status_code is not None and 200 <= status_code < 300:
                log.info("shop notified", extra=extra)
            else:
                log.warning(
                    "shop notification failed",
                    extra={**extra, "status": status_code, "error": error},
                )
            following = await run_in_threadpool(_record, db, job, status_code, error, final=final)
            if following is None:
                return
            current, delay = following
            if delay:
                await _sleep(delay)


async def _sleep(delay: float) -> None:
    # A sleeping retry holds nothing: shutdown cancels it and the row waits for the next sweep.
    if asyncio.get_running_loop() in _draining:
        raise asyncio.CancelledError
    task = asyncio.current_task()
    if task is not None:
        _sleeping.add(task)  # type: ignore[arg-type]
    try:
        await asyncio.sleep(delay)
    finally:
        if task is not None:
            _sleeping.discard(task)  # type: ignore[arg-type]


def spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run a delivery in the background, keeping a reference (the loop holds tasks weakly)."""
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def wait_for_notifications(timeout: float = 10.0) -> None:
    """Wait for the deliveries running in this process (tests)."""
    pending = _running()
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def _running() -> list[asyncio.Task[None]]:
    # Only this loop's tasks: tests run apps on other loops in other threads at the same time.
    loop = asyncio.get_running_loop()
    return [t for t in _tasks if not t.done() and t.get_loop() is loop]


async def drain(timeout: float) -> None:
    """At shutdown: cancel retries that are only waiting, give attempts in flight ``timeout``
    seconds, then cancel the rest. Nothing is lost: unfinished attempts are in the database."""
    loop = asyncio.get_running_loop()
    _draining.add(loop)  # an attempt that ends now does not start waiting for its retry
    try:
        for task in [t for t in _sleeping if t.get_loop() is loop]:
            task.cancel()
        pending = _running()
        if pending and timeout > 0:
            await asyncio.wait(pending, timeout=timeout)
        leftover = _running()
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=1.0)
    finally:
        _draining.discard(loop)
