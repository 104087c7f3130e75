"""Fulfilment of a paid order: the order file, the shop's signed notification, live events."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import models
from server.db import Database
from server.orders import fulfil, notify, webhook_client
from server.orders.fulfil import after_commit, change_status, lock_order, write_order_file
from server.orders.notify import sign_notification
from server.settings import Settings
from tests.payments.conftest import RecordingBus
from tests.payments.factory import make_order, make_shop


def pay(db: Database, order_id: str) -> list[fulfil.StatusChange]:
    with db.write() as s:
        order = lock_order(s, order_id)
        assert order is not None
        change = change_status(s, order, "paid", source="test")
        return [change] if change else []


def test_order_file_is_replaced_atomically(tmp_path: Path) -> None:
    order = {"order_id": "ord_1", "shop_id": "shp_1", "status": "paid"}
    path = write_order_file(str(tmp_path), order)
    assert path == tmp_path / "shp_1" / "ord_1.json"
    assert json.loads(path.read_text()) == order
    with pytest.raises(TypeError):
        write_order_file(str(tmp_path), {**order, "bad": object()})
    assert json.loads(path.read_text()) == order  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["ord_1.json"]  # no temporary left over


def test_notification_signature_is_stripe_style() -> None:
    header = sign_notification("whsec_shop", b'{"a":1}', timestamp=1700000000)
    expected = hmac.new(b"whsec_shop", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_second_move_to_paid_is_refused(db: Database) -> None:
    order, _ = make_order(db, make_shop(db))
    assert len(pay(db, order.id)) == 1
    assert pay(db, order.id) == []
    with db.read() as s:
        rows = s.exec(
            select(models.OrderStatusChange).where(models.OrderStatusChange.order_id == order.id)
        ).all()
        assert [(r.from_status, r.to_status, r.source) for r in rows] == [
            ("awaiting_payment", "paid", "test")
        ]


class Receiver:
    """The shop's webhook endpoint: answers with the scripted status codes, records requests."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def hook(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        return Response(status_code=self.codes[min(len(self.requests), len(self.codes)) - 1])

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


def deliveries(db: Database, order_id: str) -> list[tuple[int, int | None, bool]]:
    with db.read() as s:
        rows = s.exec(
            select(models.WebhookDelivery)
            .where(models.WebhookDelivery.order_id == order_id)
            .order_by(models.WebhookDelivery.id)
        ).all()
        return [(r.attempt, r.status_code, r.delivered_at is not None) for r in rows]


async def test_paid_order_is_written_notified_and_published(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 0.01, 0.01))
    receiver = Receiver([500, 200])
    url = live_server(receiver.app).url + "/hook"
    shop = make_shop(db, notify_webhook_url=url, notify_webhook_secret="whsec_shop_secret")
    order, _ = make_order(db, shop)
    bus = RecordingBus()

    await after_commit(settings, db, bus, pay(db, order.id))
    await notify.wait_for_notifications()

    written = json.loads((Path(settings.orders_dir) / shop.id / f"{order.id}.json").read_text())
    assert written["status"] == "paid" and written["order_id"] == order.id
    assert (
        bus.count(f"shop:{shop.id}", "order_paid") == 1
        and bus.count(f"order:{order.id}", "order_paid") == 1
    )
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[-1]
    assert json.loads(body) == {"type": "order.paid", "order": written}
    t, v1 = (part.split("=", 1)[1] for part in headers["shop-assist-signature"].split(","))
    assert v1 == hmac.new(b"whsec_shop_secret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert deliveries(db, order.id) == [(1, 500, False), (2, 200, True)]


async def test_client_error_from_the_shop_is_not_retried(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 0.01, 0.01))
    receiver = Receiver([410])
    shop = make_shop(db, notify_webhook_url=live_server(receiver.app).url + "/hook")
    order, _ = make_order(db, shop)
    await after_commit(settings, db, RecordingBus(), pay(db, order.id))
    await notify.wait_for_notifications()
    assert deliveries(db, order.id) == [(1, 410, False)]


async def test_unreachable_shop_is_retried_then_given_up(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import free_port

    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 0.01, 0.01))
    shop = make_shop(db, notify_webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    order, _ = make_order(db, shop)
    await after_commit(settings, db, RecordingBus(), pay(db, order.id))
    await notify.wait_for_notifications()
    assert deliveries(db, order.id) == [(1, None, False), (2, None, False), (3, None, False)]


def resolve_to(address: str, calls: list[str]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return [address] if host == "hooks.shop.test" else []

    return resolve


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"])
async def test_a_webhook_resolving_to_a_private_address_is_refused_when_sent(
    settings: Settings,
    db: Database,
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    address: str,
) -> None:
    """The URL passed the check when saved; its name now points into our network (rebinding)."""
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 0.01, 0.01))
    calls: list[str] = []
    monkeypatch.setattr(webhook_client, "resolve", resolve_to(address, calls))
    receiver = Receiver([200])
    port = live_server(receiver.app).port
    shop = make_shop(db, notify_webhook_url=f"http://hooks.shop.test:{port}/hook")
    order, _ = make_order(db, shop)
    production = settings.with_(allow_private_webhooks=False)

    await after_commit(production, db, RecordingBus(), pay(db, order.id))
    await notify.wait_for_notifications()

    assert receiver.requests == [] and calls == ["hooks.shop.test"]
    assert deliveries(db, order.id) == [(1, None, False)]  # refused once, not retried
    with db.read() as s:
        row = s.exec(select(models.WebhookDelivery)).one()
        assert row.error == (
            f"refused: hooks.shop.test resolves to {address}, which is not a public address"
        )
        assert row.attempted_at is not None and row.next_attempt_at is None
    failed = [r for r in caplog.records if r.getMessage() == "shop notification failed"]
    assert len(failed) == 1 and "not a public address" in failed[0].error  # type: ignore[attr-defined]


async def test_development_sends_to_a_local_receiver_at_the_resolved_address(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(webhook_client, "resolve", resolve_to("127.0.0.1", calls))
    receiver = Receiver([200])
    port = live_server(receiver.app).port
    shop = make_shop(db, notify_webhook_url=f"http://hooks.shop.test:{port}/hook")
    order, _ = make_order(db, shop)
    assert settings.private_webhooks_allowed

    await after_commit(settings, db, RecordingBus(), pay(db, order.id))
    await notify.wait_for_notifications()

    assert deliveries(db, order.id) == [(1, 200, True)]
    assert calls == ["hooks.shop.test"]  # no real DNS: the name only exists in our resolver
    assert receiver.requests[0][0]["host"] == f"hooks.shop.test:{port}"


async def test_a_redirect_from_the_shop_is_not_followed(
    settings: Settings, db: Database, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0,))
    hits: list[str] = []

    async def hook(request: Request) -> Response:
        hits.append(request.url.path)
        return Response(status_code=307, headers={"Location": "/elsewhere"})

    app = Starlette(
        routes=[Route("/hook", hook, methods=["POST"]), Route("/elsewhere", hook, methods=["POST"])]
    )
    shop = make_shop(db, notify_webhook_url=live_server(app).url + "/hook")
    order, _ = make_order(db, shop)
    await after_commit(settings, db, RecordingBus(), pay(db, order.id))
    await notify.wait_for_notifications()
    assert hits == ["/hook"] and deliveries(db, order.id) == [(1, 307, False)]


async def test_other_status_changes_are_published_not_fulfilled(
    settings: Settings, db: Database
) -> None:
    shop = make_shop(db)
    order, _ = make_order(db, shop)
    with db.write() as s:
        row = lock_order(s, order.id)
        assert row is not None
        change = change_status(s, row, "expired", source="test")
    bus = RecordingBus()
    await after_commit(settings, db, bus, [change] if change else [])
    assert bus.count(f"order:{order.id}", "order_status") == 1
    assert not (Path(settings.orders_dir) / shop.id).exists()
