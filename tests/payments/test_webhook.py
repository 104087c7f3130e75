"""``POST /api/stripe/webhook``: verified, stored once, applied once, never backwards."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from server import models
from server.app import create_app
from server.db import Database
from server.settings import Settings
from tests.fakes.fake_stripe import make_event, signed_event
from tests.payments.conftest import WHSEC, RecordingBus
from tests.payments.factory import (
    TOTAL,
    get_order,
    issue_session,
    make_order,
    make_shop,
    status_changes,
)


def session_obj(order: models.Order, **over: Any) -> dict[str, Any]:
    obj = {
        "id": over.pop("id", "cs_test_1"),
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": order.total,
        "currency": order.currency,
        "client_reference_id": order.id,
        "metadata": {"order_id": order.id, "shop_id": order.shop_id},
        "payment_intent": "pi_test_1",
    }
    obj.update(over)
    return obj


def deliver(
    client: TestClient, event: dict[str, Any], secret: str = WHSEC, **kw: Any
) -> httpx.Response:
    body, headers = signed_event(event, secret, **kw)
    return client.post("/api/stripe/webhook", content=body, headers=headers)


def event_rows(db: Database) -> list[models.PaymentEvent]:
    with db.read() as s:
        rows = list(s.exec(select(models.PaymentEvent)).all())
        s.expunge_all()
        return rows


def order_file(settings: Settings, order: models.Order) -> Path:
    return Path(settings.orders_dir) / order.shop_id / f"{order.id}.json"


@pytest.fixture
def order(db: Database) -> models.Order:
    """An order whose Stripe checkout session ``cs_test_1`` this server opened."""
    return make_order(db, make_shop(db), checkout_session_id="cs_test_1", payment_mode="stripe")[0]


def test_valid_event_pays_and_fulfils(
    demo_client: TestClient,
    db: Database,
    pay_settings: Settings,
    bus: RecordingBus,
    order: models.Order,
) -> None:
    resp = deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    assert resp.status_code == 200
    assert resp.json()["outcome"] == "paid"
    paid = get_order(db, order.id)
    assert (paid.status, paid.amount_paid, paid.payment_intent_id) == ("paid", TOTAL, "pi_test_1")
    assert paid.paid_at is not None and paid.fulfilled_at is not None
    written = json.loads(order_file(pay_settings, order).read_text())
    assert written["status"] == "paid" and written["total"] == TOTAL and written["paid_at"]
    assert bus.count(f"shop:{order.shop_id}", "order_paid") == 1
    assert bus.count(f"order:{order.id}", "order_paid") == 1
    shop_message = next(m for c, m in bus.published if c.startswith("shop:"))
    assert shop_message["order"]["amount_paid"] == TOTAL  # owner-only fields on the shop channel
    order_message = next(m for c, m in bus.published if c.startswith("order:"))
    assert "amount_paid" not in order_message["order"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Stripe-Signature": "t=1,v1=00"}, id="garbage"),
    ],
)
def test_unsigned_event_is_refused_and_nothing_written(
    demo_client: TestClient, db: Database, order: models.Order, headers: dict[str, str]
) -> None:
    body = json.dumps(make_event("checkout.session.completed", session_obj(order))).encode()
    resp = demo_client.post("/api/stripe/webhook", content=body, headers=headers)
    assert resp.status_code == 400
    assert get_order(db, order.id).status == "awaiting_payment"
    assert event_rows(db) == []


@pytest.mark.parametrize(
    ("secret", "offset"),
    [
        pytest.param("whsec_wrong", 0, id="wrong-secret"),
        pytest.param(WHSEC, -600, id="stale"),
        pytest.param(WHSEC, +3600, id="future"),
    ],
)
def test_bad_signature_is_refused(
    demo_client: TestClient, db: Database, order: models.Order, secret: str, offset: int
) -> None:
    event = make_event("checkout.session.completed", session_obj(order))
    resp = deliver(demo_client, event, secret, timestamp=int(time.time()) + offset)
    assert resp.status_code == 400
    assert resp.json()["error"] == "WebhookRejected"
    assert get_order(db, order.id).status == "awaiting_payment"
    assert event_rows(db) == []


def test_tampered_body_is_refused(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    body, headers = signed_event(
        make_event("checkout.session.completed", session_obj(order, amount_total=1)), WHSEC
    )
    tampered = body.replace(b'"amount_total": 1,', f'"amount_total": {TOTAL},'.encode())
    assert tampered != body
    assert (
        demo_client.post("/api/stripe/webhook", content=tampered, headers=headers).status_code
        == 400
    )
    assert get_order(db, order.id).status == "awaiting_payment"


def test_no_secret_configured_refuses_even_an_empty_secret_signature(
    settings: Settings, db: Database, order: models.Order
) -> None:
    app = create_app(settings.with_(stripe_webhook_secret=""), db=db)
    with TestClient(app) as client:
        resp = deliver(
            client, make_event("checkout.session.completed", session_obj(order)), secret=""
        )
    assert resp.status_code == 503
    assert "not configured" in resp.json()["detail"]
    assert get_order(db, order.id).status == "awaiting_payment"
    assert event_rows(db) == []


def test_duplicate_delivery_has_no_second_effect(
    demo_client: TestClient, db: Database, bus: RecordingBus, order: models.Order
) -> None:
    event = make_event("checkout.session.completed", session_obj(order))
    first, second = deliver(demo_client, event), deliver(demo_client, event)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert status_changes(db, order.id) == [("awaiting_payment", "paid")]
    assert bus.count(f"shop:{order.shop_id}", "order_paid") == 1
    assert [r.outcome for r in event_rows(db)] == ["paid"]


def test_twenty_concurrent_deliveries_make_one_transition_and_one_file(
    pay_settings: Settings, db: Database, bus: RecordingBus, live_server: Any, order: models.Order
) -> None:
    server = live_server(create_app(pay_settings, db=db, bus=bus))
    body, headers = signed_event(
        make_event("checkout.session.completed", session_obj(order)), WHSEC
    )
    barrier = threading.Barrier(20)
    codes: list[int] = []

    def post() -> None:
        barrier.wait()
        codes.append(
            httpx.post(
                f"{server.url}/api/stripe/webhook", content=body, headers=headers, timeout=30
            ).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 20
    assert status_changes(db, order.id) == [("awaiting_payment", "paid")]
    assert bus.count(f"shop:{order.shop_id}", "order_paid") == 1
    assert [p.name for p in order_file(pay_settings, order).parent.iterdir()] == [
        f"{order.id}.json"
    ]
    assert len(event_rows(db)) == 1


@pytest.mark.parametrize(
    "late", ["checkout.session.expired", "checkout.session.async_payment_failed"]
)
def test_late_failure_never_undoes_a_payment(
    demo_client: TestClient, db: Database, order: models.Order, late: str
) -> None:
    deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    resp = deliver(
        demo_client, make_event(late, session_obj(order, status="expired", payment_status="unpaid"))
    )
    assert resp.status_code == 200
    assert get_order(db, order.id).status == "paid"
    assert status_changes(db, order.id) == [("awaiting_payment", "paid")]


def test_success_arriving_after_expiry_still_pays(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    deliver(
        demo_client,
        make_event(
            "checkout.session.expired",
            session_obj(order, status="expired", payment_status="unpaid"),
        ),
    )
    assert get_order(db, order.id).status == "expired"
    deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    assert status_changes(db, order.id) == [("awaiting_payment", "expired"), ("expired", "paid")]


def test_unpaid_completion_then_async_success(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    resp = deliver(
        demo_client,
        make_event("checkout.session.completed", session_obj(order, payment_status="unpaid")),
    )
    assert resp.json()["outcome"] == "not paid yet (unpaid)"
    assert get_order(db, order.id).status == "awaiting_payment"
    deliver(demo_client, make_event("checkout.session.async_payment_succeeded", session_obj(order)))
    assert get_order(db, order.id).status == "paid"


def test_async_failure_marks_payment_failed(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    deliver(
        demo_client,
        make_event("checkout.session.completed", session_obj(order, payment_status="unpaid")),
    )
    deliver(
        demo_client,
        make_event(
            "checkout.session.async_payment_failed", session_obj(order, payment_status="unpaid")
        ),
    )
    assert get_order(db, order.id).status == "payment_failed"


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({"amount_total": TOTAL - 1}, id="amount"),
        pytest.param({"currency": "eur"}, id="currency"),
    ],
)
def test_mismatched_payment_is_flagged_not_paid(
    demo_client: TestClient,
    db: Database,
    pay_settings: Settings,
    bus: RecordingBus,
    order: models.Order,
    over: dict[str, Any],
) -> None:
    resp = deliver(
        demo_client, make_event("checkout.session.completed", session_obj(order, **over))
    )
    assert resp.status_code == 200
    flagged = get_order(db, order.id)
    assert flagged.status == "awaiting_payment"
    assert flagged.flagged and "does not match" in (flagged.flag_reason or "")
    assert not order_file(pay_settings, order).exists()
    # The owner's live view hears of it; the customer's order channel does not.
    [(channel, message)] = bus.published
    assert channel == f"shop:{order.shop_id}" and message["order"]["flagged"] is True


def test_handler_error_rolls_back_then_redelivery_succeeds(
    demo_client: TestClient, db: Database, order: models.Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.payments import webhook

    real = webhook.apply_event
    calls = {"n": 0}

    def flaky(s: Any, event: dict[str, Any], **kw: Any) -> Any:
        calls["n"] += 1
        # The effect is applied, then the handler fails: all must roll back.
        result = real(s, event, **kw)
        if calls["n"] == 1:
            raise RuntimeError("database hiccup")
        return result

    monkeypatch.setattr(webhook, "apply_event", flaky)
    event = make_event("checkout.session.completed", session_obj(order))
    assert deliver(demo_client, event).status_code == 500
    assert get_order(db, order.id).status == "awaiting_payment"
    assert event_rows(db) == []
    resp = deliver(demo_client, event)
    assert resp.status_code == 200 and resp.json()["outcome"] == "paid"
    assert status_changes(db, order.id) == [("awaiting_payment", "paid")]


def test_unknown_event_type_is_acknowledged_and_ignored(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    resp = deliver(
        demo_client, make_event("customer.created", {"id": "cus_1", "object": "customer"})
    )
    assert resp.status_code == 200
    assert get_order(db, order.id).status == "awaiting_payment"
    assert [r.type for r in event_rows(db)] == ["customer.created"]


def test_refund_after_payment(demo_client: TestClient, db: Database, order: models.Order) -> None:
    deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_test_1",
        "amount": TOTAL,
        "amount_refunded": TOTAL,
        "refunded": True,
        "metadata": {},
    }
    deliver(demo_client, make_event("charge.refunded", charge))
    assert get_order(db, order.id).status == "refunded"
    # A late completion of the same payment does not pay it again.
    deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    assert get_order(db, order.id).status == "refunded"


def test_partial_refund_is_flagged(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_test_1",
        "amount": TOTAL,
        "amount_refunded": 100,
        "refunded": False,
    }
    deliver(demo_client, make_event("charge.refunded", charge))
    after = get_order(db, order.id)
    assert after.status == "paid" and after.flagged


def test_expiry_of_a_replaced_session_is_ignored(demo_client: TestClient, db: Database) -> None:
    order, _ = make_order(db, make_shop(db), checkout_session_id="cs_test_new")
    deliver(
        demo_client,
        make_event(
            "checkout.session.expired",
            session_obj(order, id="cs_test_old", payment_status="unpaid"),
        ),
    )
    assert get_order(db, order.id).status == "awaiting_payment"


def test_second_payment_for_a_paid_order_is_flagged(
    demo_client: TestClient, db: Database, order: models.Order
) -> None:
    issue_session(db, order.id, "cs_test_2")  # a second session of the order, both paid
    deliver(demo_client, make_event("checkout.session.completed", session_obj(order)))
    deliver(
        demo_client,
        make_event(
            "checkout.session.completed",
            session_obj(order, id="cs_test_2", payment_intent="pi_test_2"),
        ),
    )
    after = get_order(db, order.id)
    assert (
        after.status == "paid" and after.flagged and "second payment" in (after.flag_reason or "")
    )


def test_different_events_and_the_return_page_racing_pay_once(
    db: Database, order: models.Order
) -> None:
    """``completed``, ``async_payment_succeeded`` and return-page checks of one payment, all at
    once: distinct event ids, so only the state machine under the row lock keeps it to one."""
    from server.orders.fulfil import serialised_write
    from server.payments.webhook import Origin, record_event, settle_session

    RETURN = Origin(source="return", account=None, livemode=False, live_key=False)

    obj = session_obj(order)
    barrier = threading.Barrier(12)
    changes: list[int] = []

    def webhook(kind: str, n: int) -> None:
        barrier.wait()
        changes.append(
            len(
                record_event(
                    db, make_event(kind, obj, event_id=f"evt_{kind}_{n}"), live_key=False
                ).changes
            )
        )

    def return_page() -> None:
        barrier.wait()
        with serialised_write(db) as s:
            changes.append(len(settle_session(s, obj, RETURN).changes))

    threads = [
        threading.Thread(target=webhook, args=("checkout.session.completed", i)) for i in range(4)
    ]
    threads += [
        threading.Thread(target=webhook, args=("checkout.session.async_payment_succeeded", i))
        for i in range(4)
    ]
    threads += [threading.Thread(target=return_page) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(changes) == [0] * 11 + [1]
    assert status_changes(db, order.id) == [("awaiting_payment", "paid")]
    assert len(event_rows(db)) == 8
