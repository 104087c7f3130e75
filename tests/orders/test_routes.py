"""Customer order routes: status with its token, and the live status stream."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx
import jsonschema
from starlette.testclient import TestClient

from server.app import create_app
from server.db import Database
from server.orders.create import order_schema
from server.settings import Settings
from tests.fakes.fake_stripe import make_event, signed_event
from tests.payments.conftest import WHSEC
from tests.payments.factory import TOTAL, make_order, make_shop, order_token


def test_status_with_token_is_the_order_json(client: TestClient, db: Database) -> None:
    order, _ = make_order(db, make_shop(db))
    resp = client.get(f"/api/order/status/{order.id}", params={"token": order_token(order.id)})
    assert resp.status_code == 200
    body = resp.json()
    jsonschema.validate(body, order_schema())
    assert (body["order_id"], body["status"], body["total"], body["currency"], body["paid_at"]) == (
        order.id,
        "awaiting_payment",
        TOTAL,
        "usd",
        None,
    )
    assert [i["line_total"] for i in body["items"]] == [1220, 300]


def test_status_with_wrong_or_missing_token_is_not_found(client: TestClient, db: Database) -> None:
    order, thread_token = make_order(db, make_shop(db))
    for params in ({"token": "wrong"}, {}, {"token": thread_token}):
        assert client.get(f"/api/order/status/{order.id}", params=params).status_code == 404
    assert (
        client.get(
            "/api/order/status/ord_missing", params={"token": order_token("ord_missing")}
        ).status_code
        == 404
    )
    assert client.get(f"/api/order/{order.id}/events", params={"token": "wrong"}).status_code == 404


def read_events(url: str, out: queue.Queue[dict[str, Any]], stop: threading.Event) -> None:
    with httpx.stream("GET", url, timeout=30) as resp:
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "status":
                out.put(json.loads(line.split(":", 1)[1]))
            if stop.is_set():
                return


def test_events_stream_current_status_then_the_payment(
    settings: Settings, db: Database, live_server: Any
) -> None:
    app = create_app(settings.with_(stripe_webhook_secret=WHSEC, sse_ping_seconds=1), db=db)
    server = live_server(app)
    order, _ = make_order(db, make_shop(db), checkout_session_id="cs_1", payment_mode="stripe")
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(
        target=read_events,
        args=(
            f"{server.url}/api/order/{order.id}/events?token={order_token(order.id)}",
            events,
            stop,
        ),
        daemon=True,
    )
    reader.start()
    assert events.get(timeout=10)["status"] == "awaiting_payment"

    session = {
        "id": "cs_1",
        "payment_status": "paid",
        "amount_total": TOTAL,
        "currency": "usd",
        "metadata": {"order_id": order.id},
    }
    body, headers = signed_event(make_event("checkout.session.completed", session), WHSEC)
    assert (
        httpx.post(f"{server.url}/api/stripe/webhook", content=body, headers=headers).status_code
        == 200
    )
    paid = events.get(timeout=10)
    assert paid["status"] == "paid" and paid["paid_at"]
    stop.set()
