"""Status changes and fulfilment of paid orders, exactly once.

Exactly once means: the move to ``paid`` happens in one transaction (the order row is locked and
the state machine refuses a second move), and only the caller whose transaction made that move
runs :func:`after_commit`. Its fulfilment (the order file, the shop's notification, live events)
is claimed once more through ``fulfilled_at`` by :func:`fulfil_paid`, which the recovery sweep
(``server/orders/recovery.py``) also uses for a paid order whose process died before fulfilling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from server import models
from server.db import Database
from server.events import EventBus
from server.ids import utcnow
from server.orders import notify
from server.orders import status as st
from server.orders.create import order_to_json
from server.settings import Settings

log = logging.getLogger("shop_assist.orders")

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


@dataclass(frozen=True)
class Fulfilment:
    """A paid order this caller fulfilled: its JSON, its shop, and its pending notification."""

    order_json: dict[str, Any]
    shop: models.Shop
    order: models.Order
    delivery_id: int | None


def fulfil_paid(
    settings: Settings, db: Database, order_id: str, *, now: datetime | None = None
) -> Fulfilment | None:
    """Write the paid order's file, then claim its fulfilment (sync: run it in a thread).

    The claim is one conditional UPDATE that sets ``fulfilled_at`` only while it is still empty;
    in the same transaction the shop's notification is queued. So however many callers race
    (the webhook, the return page, a recovery sweep on another worker), exactly one gets a
    :class:`Fulfilment` and notifies; the others get ``None``. The file is written before the
    claim (atomically, the same content), so a crash in between only means it is written again.
    """
    order, shop = _load(db, order_id)
    if order is None or shop is None or order.fulfilled_at is not None:
        return None
    order_json = order_to_json(order)
    write_order_file(settings.orders_dir, order_json)
    stamp = now or utcnow()
    with serialised_write(db) as s:
        claim = (
            update(models.Order)
            .where(col(models.Order.id) == order_id, col(models.Order.fulfilled_at).is_(None))
            .values(fulfilled_at=stamp)
        )
        if s.connection().execute(claim).rowcount != 1:
            return None
        delivery_id = (
            notify.enqueue_delivery(s, shop, order_id, stamp) if shop.notify_webhook_url else None
        )
    order.fulfilled_at = stamp
    return Fulfilment(order_json, shop, order, delivery_id)


async def announce_paid(
    db: Database,
    bus: EventBus,
    done: Fulfilment,
    *,
    source: str,
    request_id: str = "",
    allow_private_webhooks: bool = False,
) -> None:
    """After a successful claim: start the shop's notification and tell the live streams.

    ``allow_private_webhooks`` is ``Settings.private_webhooks_allowed`` (development only)."""
    order_id = done.order_json["order_id"]
    log.info(
        "order paid and fulfilled",
        extra={"request_id": request_id, "order_id": order_id, "source": source},
    )
    if done.delivery_id is not None:
        notify.spawn(
            notify.deliver(
                db,
                done.delivery_id,
                allow_private=allow_private_webhooks,
                request_id=request_id,
            )
        )
    message = {"type": "order_paid", "order": done.order_json}
    await bus.publish(f"order:{order_id}", message)
    await bus.publish(
        f"shop:{done.shop.id}", {**message, "order": owner_fields(done.order_json, done.order)}
    )


async def after_commit(
    settings: Settings,
    db: Database,
    bus: EventBus,
    changes: list[StatusChange],
    *,
    request_id: str = "",
) -> None:
    """Run the effects of committed status changes: fulfil a new ``paid``, publish the rest.

    Call only with changes your own transaction made. A ``paid`` whose fulfilment someone else
    already claimed (a recovery sweep) is left to them."""
    for change in changes:
        if change.to_status == st.PAID:
            done = await run_in_threadpool(fulfil_paid, settings, db, change.order_id)
            if done is not None:
                await announce_paid(
                    db,
                    bus,
                    done,
                    source=change.source,
                    request_id=request_id,
                    allow_private_webhooks=settings.private_webhooks_allowed,
                )
            continue
        order, shop = await run_in_threadpool(_load, db, change.order_id)
        if order is None or shop is None:
            continue
        order_json = order_to_json(order)
        log.info(
            "order status changed",
            extra={
                "request_id": request_id,
                "order_id": change.order_id,
                "status": change.to_status,
                "from": change.from_status,
            },
        )
        message = {"type": "order_status", "order": order_json}
        await bus.publish(f"order:{change.order_id}", message)
        await bus.publish(
            f"shop:{change.shop_id}", {**message, "order": owner_fields(order_json, order)}
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


def _load(db: Database, order_id: str) -> tuple[models.Order | None, models.Shop | None]:
    with db.read() as s:
        order = s.get(models.Order, order_id)
        shop = s.get(models.Shop, order.shop_id) if order else None
        s.expunge_all()  # detached before the read scope's rollback would expire them
        return order, shop
