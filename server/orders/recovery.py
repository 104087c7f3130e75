"""Recovery: payments are never lost, even when the process dies at the wrong moment.

Two things can be left half done by a crash, a deploy or a kill:

* an order committed as paid whose fulfilment never ran (``fulfilled_at`` still empty): its file
  was not written, the shop not notified, the dashboard not told;
* a shop notification whose next attempt was waiting in the dead process.

:func:`sweep` finishes both. The app runs it when it starts and then every
:data:`RECOVERY_INTERVAL` seconds (:class:`Recovery`). It is safe on any number of workers at
once: a fulfilment is claimed by :func:`server.orders.fulfil.fulfil_paid`'s conditional UPDATE
and each notification attempt by its own, so two sweeps never fulfil or send the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from server import models
from server.db import Database
from server.events import EventBus
from server.ids import utcnow
from server.orders import notify
from server.orders import status as st
from server.orders.fulfil import announce_paid, fulfil_paid
from server.settings import Settings

log = logging.getLogger("shop_assist.orders")

RECOVERY_INTERVAL = 60.0
# A paid order younger than this may still be fulfilled by the request that paid it.
RECOVERY_MIN_AGE = 10.0
RECOVERY_BATCH = 100


@dataclass(frozen=True)
class SweepResult:
    fulfilled: list[str]  # orders this sweep fulfilled
    deliveries: int  # due notification attempts started


def stranded_orders(db: Database, before: datetime, limit: int = RECOVERY_BATCH) -> list[str]:
    """Ids of orders paid before ``before`` (or later moved on) that were never fulfilled."""
    paid_at = func.coalesce(col(models.Order.paid_at), col(models.Order.updated_at))
    with db.read() as s:
        rows = s.exec(
            select(models.Order.id)
            .where(
                col(models.Order.status).in_(sorted(st.PAID_STATUSES)),
                col(models.Order.fulfilled_at).is_(None),
                paid_at <= before,
            )
            .order_by(paid_at)
            .limit(limit)
        ).all()
        return list(rows)


async def recover_orders(
    settings: Settings, db: Database, bus: EventBus, *, now: datetime | None = None
) -> list[str]:
    """Fulfil paid orders that were left unfulfilled; returns the ids this call fulfilled."""
    now = now or utcnow()
    before = now - timedelta(seconds=RECOVERY_MIN_AGE)
    done_ids: list[str] = []
    for order_id in await run_in_threadpool(stranded_orders, db, before):
        try:
            done = await run_in_threadpool(fulfil_paid, settings, db, order_id)
        except Exception:
            # Disk full, a bad order row...: leave it for the next sweep, go on with the others.
            log.exception("recovery could not fulfil order", extra={"order_id": order_id})
            continue
        if done is None:
            continue  # another worker got there first
        log.warning("paid order was not fulfilled; recovered", extra={"order_id": order_id})
        await announce_paid(
            db,
            bus,
            done,
            source="recovery",
            allow_private_webhooks=settings.private_webhooks_allowed,
        )
        done_ids.append(order_id)
    return done_ids


async def sweep(
    settings: Settings, db: Database, bus: EventBus, *, now: datetime | None = None
) -> SweepResult:
    """Fulfil stranded paid orders, then start every notification attempt that is due.

    ``now`` is the clock (tests move it ahead instead of waiting). The attempts run in the
    background (:func:`server.orders.notify.wait_for_notifications` waits for them)."""
    now = now or utcnow()
    fulfilled = await recover_orders(settings, db, bus, now=now)
    due = await run_in_threadpool(notify.due_deliveries, db, now)
    for delivery_id in due:
        notify.spawn(
            notify.deliver(
                db, delivery_id, allow_private=settings.private_webhooks_allowed, now=now
            )
        )
    if due:
        log.info("retrying due shop notifications", extra={"count": len(due)})
    return SweepResult(fulfilled, len(due))


class Recovery:
    """The app's recovery: one sweep at start-up, then one every ``interval`` seconds."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        interval: float = RECOVERY_INTERVAL,
    ) -> None:
        self.settings, self.db, self.bus, self.interval = settings, db, bus, interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Sweep once (a crash before this start is repaired before requests are served), then
        keep sweeping in the background."""
        await self._sweep_logged()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self, timeout: float) -> None:
        """Stop sweeping; give notification attempts in flight up to ``timeout`` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await notify.drain(timeout)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._sweep_logged()

    async def _sweep_logged(self) -> None:
        try:
            await sweep(self.settings, self.db, self.bus)
        except Exception:
            # A database outage must not end the loop: the next sweep tries again.
            log.exception("recovery sweep failed")
