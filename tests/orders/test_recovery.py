"""Recovery: a paid order left unfulfilled by a dead process is fulfilled once, and a shop
notification that was still owed is sent after a restart."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server import models
from server.app import create_app
from server.db import Database
from server.ids import utcnow
from server.orders import fulfil, notify
from server.orders.fulfil import after_commit, change_status, lock_order
from server.orders.recovery import RECOVERY_MIN_AGE, recover_orders, sweep
from server.settings import Settings
from tests.orders.test_fulfil import Receiver, deliveries, pay
from tests.payments.conftest import RecordingBus
from tests.payments.factory import get_order, make_order, make_shop


def crash_after_payment(db: Database, order_id: str, ago: float = 60.0) -> None:
    """The order is committed as paid ``ago`` seconds back and then the process died: nothing
    after the commit (file, notification, events) ran."""
    with db.write() as s:
        order = lock_order(s, order_id)
        assert order is not None
        assert change_status(s, order, "paid", source="test") is not None
        order.paid_at = utcnow() - timedelta(seconds=ago)
        s.add(order)


class CountingWrites:
    """Counts order-file writes; with ``barrier`` every writer waits for the others first,
    so racing fulfilments all get past their first check before any claims."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, barrier: int = 0) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(barrier, timeout=10) if barrier else None
        self.real = fulfil.write_order_file
        monkeypatch.setattr(fulfil, "write_order_file", self)

    def __call__(self, orders_dir: str, order_json: dict[str, Any]) -> Path:
        with self.lock:
            self.count += 1
        if self.barrier is not None:
            self.barrier.wait()
        return self.real(orders_dir, order_json)


def order_file(settings: Settings, shop: models.Shop, order_id: str) -> dict[str, Any]:
    path = Path(settings.orders_dir) / shop.id / f"{order_id}.json"
    return dict(json.loads(path.read_text()))


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def test_startup_fulfils_a_paid_order_the_dead_process_left(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver([200])
    shop = make_shop(db, notify_webhook_url=live_server(receiver.app).url + "/hook")
    order, _ = make_order(db, shop)
    crash_after_payment(db, order.id)
    writes = CountingWrites(monkeypatch)
    bus = RecordingBus()

    for _restart in range(2):  # the second start finds nothing left to do
        with TestClient(create_app(settings, db=db, bus=bus)) as client:
            assert writes.count == 1  # done before the first request is served
            client.portal.call(notify.wait_for_notifications)

    assert order_file(settings, shop, order.id)["status"] == "paid"
    assert get_order(db, order.id).fulfilled_at is not None
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert headers["idempotency-key"] == headers["shop-assist-delivery"] == order.id
    assert json.loads(body)["order"]["order_id"] == order.id
    assert deliveries(db, order.id) == [(1, 200, True)]
    assert bus.count(f"shop:{shop.id}", "order_paid") == 1
    assert bus.count(f"order:{order.id}", "order_paid") == 1


async def test_two_workers_recovering_at_once_fulfil_once(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = make_shop(db, notify_webhook_url="http://127.0.0.1:9/never")
    order, _ = make_order(db, shop)
    crash_after_payment(db, order.id)
    writes = CountingWrites(monkeypatch, barrier=2)
    monkeypatch.setattr(notify, "spawn", lambda coro: coro.close())  # no sending here
    other_worker = Database(settings.database_url)
    bus = RecordingBus()
    try:
        results = await asyncio.gather(
            recover_orders(settings, db, bus), recover_orders(settings, other_worker, bus)
        )
    finally:
        other_worker.dispose()

    assert writes.count == 2  # both got as far as the (idempotent) file write ...
    assert sorted(len(r) for r in results) == [0, 1]  # ... but one claimed the fulfilment
    assert bus.count(f"shop:{shop.id}", "order_paid") == 1
    assert deliveries(db, order.id) == [(1, None, False)]  # one notification queued
    assert order_file(settings, shop, order.id)["order_id"] == order.id


async def test_failed_notification_survives_exit_and_the_sweep_delivers_it(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 3600, 3600))
    receiver = Receiver([500, 200])
    shop = make_shop(db, notify_webhook_url=live_server(receiver.app).url + "/hook")
    order, _ = make_order(db, shop)

    async def process_exits(delay: float) -> None:  # while the retry waits its hour
        raise asyncio.CancelledError

    monkeypatch.setattr(notify, "_sleep", process_exits)
    await after_commit(settings, db, RecordingBus(), pay(db, order.id))
    await notify.wait_for_notifications()

    assert deliveries(db, order.id) == [(1, 500, False), (2, None, False)]
    assert (await sweep(settings, db, RecordingBus())).deliveries == 0  # not due yet
    result = await sweep(settings, db, RecordingBus(), now=later(3601))
    await notify.wait_for_notifications()

    assert result.deliveries == 1 and result.fulfilled == []
    assert deliveries(db, order.id) == [(1, 500, False), (2, 200, True)]
    keys = [h["idempotency-key"] for h, _ in receiver.requests]
    assert keys == [order.id, order.id]
    assert [h["shop-assist-attempt"] for h, _ in receiver.requests] == ["1", "2"]
    assert (await sweep(settings, db, RecordingBus(), now=later(7200))).deliveries == 0


async def test_shutdown_does_not_wait_for_a_retry_and_leaves_it_pending(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 3600))
    receiver = Receiver([503])
    shop = make_shop(db, notify_webhook_url=live_server(receiver.app).url + "/hook")
    order, _ = make_order(db, shop)
    await after_commit(settings, db, RecordingBus(), pay(db, order.id))
    await notify.drain(30)  # returns once the first attempt is stored, not after an hour

    assert deliveries(db, order.id) == [(1, 503, False), (2, None, False)]
    assert notify._running() == []


async def test_an_attempt_held_by_a_dead_worker_is_sent_once_its_claim_runs_out(
    settings: Settings, db: Database, live_server: Any
) -> None:
    receiver = Receiver([200])
    shop = make_shop(db, notify_webhook_url=live_server(receiver.app).url + "/hook")
    order, _ = make_order(db, shop)
    with db.write() as s:
        delivery_id = notify.enqueue_delivery(s, shop, order.id, utcnow())
    claimed_at = utcnow()
    assert notify._claim(db, delivery_id, claimed_at) is not None  # ... and then it died

    during = claimed_at + timedelta(seconds=notify.CLAIM_SECONDS - 1)
    assert (await sweep(settings, db, RecordingBus(), now=during)).deliveries == 0
    after = claimed_at + timedelta(seconds=notify.CLAIM_SECONDS + 1)
    assert (await sweep(settings, db, RecordingBus(), now=after)).deliveries == 1
    await notify.wait_for_notifications()
    assert deliveries(db, order.id) == [(1, 200, True)]
    assert len(receiver.requests) == 1


async def test_an_order_fulfilled_normally_is_not_fulfilled_again(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver([200])
    shop = make_shop(db, notify_webhook_url=live_server(receiver.app).url + "/hook")
    order, _ = make_order(db, shop)
    writes = CountingWrites(monkeypatch)
    bus = RecordingBus()
    await after_commit(settings, db, bus, pay(db, order.id))
    await notify.wait_for_notifications()
    assert get_order(db, order.id).fulfilled_at is not None

    result = await sweep(settings, db, bus, now=later(3600))
    await notify.wait_for_notifications()
    assert result.fulfilled == [] and result.deliveries == 0
    assert writes.count == 1 and len(receiver.requests) == 1
    assert bus.count(f"shop:{shop.id}", "order_paid") == 1


async def test_a_payment_too_recent_is_left_to_the_request_that_made_it(
    settings: Settings, db: Database
) -> None:
    shop = make_shop(db)
    order, _ = make_order(db, shop)
    crash_after_payment(db, order.id, ago=0)
    assert await recover_orders(settings, db, RecordingBus()) == []
    assert await recover_orders(settings, db, RecordingBus(), now=later(RECOVERY_MIN_AGE + 1)) == [
        order.id
    ]
    assert order_file(settings, shop, order.id)["status"] == "paid"


@pytest.mark.parametrize("status", ["preparing", "completed"])
async def test_orders_moved_on_are_recovered_and_unpaid_ones_are_not(
    settings: Settings, db: Database, status: str
) -> None:
    shop = make_shop(db)
    moved, _ = make_order(db, shop)
    crash_after_payment(db, moved.id)
    with db.write() as s:
        row = lock_order(s, moved.id)
        assert row is not None and change_status(s, row, status, source="owner") is not None
    make_order(db, shop)  # never paid
    refunded, _ = make_order(db, shop)
    crash_after_payment(db, refunded.id)
    with db.write() as s:
        row = lock_order(s, refunded.id)
        assert row is not None and change_status(s, row, "refunded", source="test") is not None

    assert await recover_orders(settings, db, RecordingBus(), now=later(60)) == [moved.id]
    assert order_file(settings, shop, moved.id)["status"] == status
