"""An owner cancels an unpaid order: its open Stripe Checkout is expired so the customer cannot
pay it; the cancellation stands when Stripe is down; money that still arrives is flagged for a
refund, never lost."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from server import models
from server.db import Database
from server.orders.fulfil import change_status, flag_order, lock_order
from server.payments import sessions
from server.payments.sessions import wait_for_closing
from server.settings import Settings
from tests.fakes.fake_stripe import FakeStripe, make_event, signed_event
from tests.owners.helpers import make_shop as make_owned_shop
from tests.owners.helpers import owner_id_of, session_csrf, signup
from tests.payments.conftest import WHSEC, RecordingBus
from tests.payments.factory import ITEMS, get_order, make_catalog, make_order, status_changes


def owned_shop(client: TestClient, db: Database, **fields: Any) -> models.Shop:
    signup(client, "owner@example.com")
    shop_id = make_owned_shop(db, owner_id_of(db, "owner@example.com"))
    with db.write() as s:
        shop = s.get(models.Shop, shop_id)
        assert shop is not None
        for key, value in fields.items():
            setattr(shop, key, value)
        s.add(shop)
    with db.read() as s:
        shop = s.get(models.Shop, shop_id)
        assert shop is not None
        s.expunge(shop)
        return shop


def checkout(client: TestClient, shop: models.Shop, order: models.Order, token: str) -> Any:
    return client.post(f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token})


def cancel(client: TestClient, order_id: str) -> httpx.Response:
    return client.patch(
        f"/api/orders/{order_id}",
        json={"status": "cancelled"},
        headers={"X-CSRF-Token": session_csrf(client)},
    )


def closed(client: TestClient) -> None:
    """Wait for the checkouts a cancellation closes in the background."""
    client.portal.call(wait_for_closing)  # type: ignore[union-attr]


def pay_event(client: TestClient, session: dict[str, Any], **kw: Any) -> httpx.Response:
    body, headers = signed_event(make_event("checkout.session.completed", session, **kw), WHSEC)
    return client.post("/api/stripe/webhook", content=body, headers=headers)


def test_cancelling_expires_the_open_checkout(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = owned_shop(stripe_client, db)
    order, token = make_order(db, shop)
    assert checkout(stripe_client, shop, order, token).status_code == 200
    sid = get_order(db, order.id).checkout_session_id
    assert sid is not None

    resp = cancel(stripe_client, order.id)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    closed(stripe_client)
    assert fake_stripe.expired_ids() == [sid]
    assert fake_stripe.sessions[sid]["status"] == "expired"  # Stripe takes no payment on it now
    # Nor does our checkout open a new one.
    again = checkout(stripe_client, shop, order, token)
    assert again.status_code == 409 and again.json()["status"] == "cancelled"
    assert len(fake_stripe.created()) == 1


def test_cancelling_expires_a_connect_checkout_on_its_account(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = owned_shop(stripe_client, db, stripe_account_id="acct_1Cafe")
    order, token = make_order(db, shop)
    checkout(stripe_client, shop, order, token)
    sid = get_order(db, order.id).checkout_session_id
    cancel(stripe_client, order.id)
    closed(stripe_client)
    [expire] = [r for r in fake_stripe.requests if r.path.endswith("/expire")]
    assert expire.path == f"/v1/checkout/sessions/{sid}/expire"
    assert expire.headers["stripe-account"] == "acct_1Cafe"


def test_cancelling_also_expires_a_replaced_session_still_open(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    """The cart changed while Stripe could not expire the old session, and the customer never
    tried again: cancelling closes the old session and the one made for the new cart."""
    shop = owned_shop(stripe_client, db)
    make_catalog(db, shop)
    order, token = make_order(db, shop)
    checkout(stripe_client, shop, order, token)
    old = get_order(db, order.id).checkout_session_id
    assert old is not None
    fake_stripe.expire_outage = True
    changed = [{**ITEMS[0], "quantity": 3}, ITEMS[1]]
    body = {"order_id": order.id, "thread_token": token, "items": changed}
    assert stripe_client.post(f"/api/order/{shop.id}", json=body).status_code == 502
    fake_stripe.expire_outage = False
    assert [s["status"] for s in fake_stripe.sessions.values()] == ["open", "open"]

    cancel(stripe_client, order.id)
    closed(stripe_client)
    assert [s["status"] for s in fake_stripe.sessions.values()] == ["expired", "expired"]


def test_stripe_down_the_cancellation_stands_and_a_late_payment_is_flagged(
    stripe_client: TestClient,
    fake_stripe: FakeStripe,
    db: Database,
    stripe_settings: Settings,
    bus: RecordingBus,
) -> None:
    shop = owned_shop(stripe_client, db)
    order, token = make_order(db, shop)
    checkout(stripe_client, shop, order, token)
    sid = get_order(db, order.id).checkout_session_id
    assert sid is not None
    fake_stripe.outage = True

    resp = cancel(stripe_client, order.id)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    closed(stripe_client)
    after = get_order(db, order.id)
    assert after.status == "cancelled" and not after.flagged
    assert status_changes(db, order.id) == [("awaiting_payment", "cancelled")]
    assert fake_stripe.sessions[sid]["status"] == "open"  # Stripe never heard of it
    assert stripe_client.get(f"/api/orders/{order.id}").json()["status"] == "cancelled"

    # The customer, still on Stripe's page, pays.
    fake_stripe.outage = False
    session = fake_stripe.complete(sid)
    resp = pay_event(stripe_client, session)
    assert resp.status_code == 200
    assert resp.json()["outcome"] == "flagged: paid while cancelled"
    paid_late = get_order(db, order.id)
    assert paid_late.status == "cancelled"  # nobody will make it
    assert paid_late.flagged and "refund" in (paid_late.flag_reason or "")
    assert session["payment_intent"] in (paid_late.flag_reason or "")
    assert (paid_late.amount_paid, paid_late.payment_intent_id) == (
        order.total,
        session["payment_intent"],
    )
    assert paid_late.fulfilled_at is None
    assert not (Path(stripe_settings.orders_dir) / shop.id / f"{order.id}.json").exists()
    assert bus.count(f"shop:{shop.id}", "order_paid") == 0
    owner_view = stripe_client.get(f"/api/orders/{order.id}").json()
    assert owner_view["flagged"] is True and owner_view["amount_paid"] == order.total


def test_cancelled_while_stripe_makes_the_session_is_not_handed_out(
    stripe_client: TestClient,
    fake_stripe: FakeStripe,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = owned_shop(stripe_client, db)
    order, token = make_order(db, shop)
    payments = stripe_client.app.state.payments  # type: ignore[attr-defined]
    create = payments.create_checkout

    async def create_then_owner_cancels(*args: Any, **kwargs: Any) -> Any:
        session = await create(*args, **kwargs)
        with db.write() as s:  # the owner's click lands while Stripe answers
            row = lock_order(s, order.id)
            assert row is not None
            change_status(s, row, "cancelled", source="owner:test")
        return session

    monkeypatch.setattr(payments, "create_checkout", create_then_owner_cancels)
    resp = checkout(stripe_client, shop, order, token)
    assert resp.status_code == 409
    assert resp.json()["error"] == "Conflict" and resp.json()["status"] == "cancelled"
    [sid] = list(fake_stripe.sessions)
    assert fake_stripe.sessions[sid]["status"] == "expired"
    assert get_order(db, order.id).checkout_url is None


def test_cancelling_a_demo_order_closes_the_demo_checkout(
    demo_client: TestClient, db: Database
) -> None:
    shop = owned_shop(demo_client, db)
    order, token = make_order(db, shop)
    body = checkout(demo_client, shop, order, token).json()
    assert cancel(demo_client, order.id).json()["status"] == "cancelled"
    resp = demo_client.post(
        f"/pay/demo/{order.id}",
        data={"token": body["order_token"], "action": "pay"},
        follow_redirects=False,
    )
    assert resp.status_code == 409
    assert get_order(db, order.id).status == "cancelled"


@pytest.fixture
def payments_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="shop_assist.payments")
    return caplog


def announced(bus: RecordingBus, channel: str) -> list[str]:
    return [
        m["order"]["status"]
        for c, m in bus.published
        if c == channel and m["type"] == "order_status"
    ]


def test_the_cancel_is_answered_and_announced_while_stripe_hangs(
    stripe_client: TestClient,
    fake_stripe: FakeStripe,
    db: Database,
    bus: RecordingBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stripe takes its time closing the checkout: the owner's click and the customer's status
    stream do not wait for it."""
    shop = owned_shop(stripe_client, db)
    order, token = make_order(db, shop)
    checkout(stripe_client, shop, order, token)
    sid = get_order(db, order.id).checkout_session_id
    # However long a single call may take, the response must not wait for Stripe's answer.
    monkeypatch.setattr(sessions, "CLOSE_TIMEOUT", 60.0)
    fake_stripe.expire_gate = threading.Event()
    try:
        resp = cancel(stripe_client, order.id)
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
        assert fake_stripe.answered == []  # Stripe has not answered yet
        assert announced(bus, f"order:{order.id}") == ["cancelled"]
        assert announced(bus, f"shop:{shop.id}") == ["cancelled"]
    finally:
        fake_stripe.expire_gate.set()
    closed(stripe_client)
    assert fake_stripe.answered == [sid]
    assert fake_stripe.sessions[str(sid)]["status"] == "expired"


def test_closing_after_a_cancel_gives_up_quickly_without_retries(
    stripe_client: TestClient,
    fake_stripe: FakeStripe,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    payments_log: pytest.LogCaptureFixture,
) -> None:
    shop = owned_shop(stripe_client, db)
    hanging, token = make_order(db, shop)
    checkout(stripe_client, shop, hanging, token)
    failing, token2 = make_order(db, shop)
    checkout(stripe_client, shop, failing, token2)

    # Stripe answers 503 and asks for a retry: one request, no retries.
    fake_stripe.expire_retryable = True
    assert cancel(stripe_client, failing.id).status_code == 200
    closed(stripe_client)
    assert len(fake_stripe.expired_ids()) == 1
    fake_stripe.expire_retryable = False

    # Stripe does not answer at all: the call is given up after CLOSE_TIMEOUT.
    monkeypatch.setattr(sessions, "CLOSE_TIMEOUT", 0.2)
    fake_stripe.expire_gate = threading.Event()
    try:
        assert cancel(stripe_client, hanging.id).status_code == 200
        closed(stripe_client)
        gave_up = [
            r.detail  # type: ignore[attr-defined]
            for r in payments_log.records
            if r.getMessage() == "checkout session could not be expired"
        ]
        assert len(gave_up) == 2 and "no answer in 0.2 s" in gave_up[1]
    finally:
        fake_stripe.expire_gate.set()
    assert get_order(db, hanging.id).status == get_order(db, failing.id).status == "cancelled"


def test_the_cancel_is_announced_when_closing_the_checkout_breaks(
    stripe_client: TestClient,
    fake_stripe: FakeStripe,
    db: Database,
    bus: RecordingBus,
    monkeypatch: pytest.MonkeyPatch,
    payments_log: pytest.LogCaptureFixture,
) -> None:
    shop = owned_shop(stripe_client, db)
    order, token = make_order(db, shop)
    checkout(stripe_client, shop, order, token)
    payments = stripe_client.app.state.payments  # type: ignore[attr-defined]

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("connection pool closed")

    monkeypatch.setattr(payments, "expire", broken)
    resp = cancel(stripe_client, order.id)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert announced(bus, f"order:{order.id}") == ["cancelled"]
    closed(stripe_client)
    assert [r.getMessage() for r in payments_log.records if r.levelno >= logging.ERROR] == [
        "closing the checkouts of a cancelled order failed"
    ]
    assert get_order(db, order.id).status == "cancelled"


def paid_after_cancel(
    client: TestClient, fake: FakeStripe, db: Database
) -> tuple[models.Shop, models.Order, dict[str, Any]]:
    """An order the owner cancelled while Stripe was down, then paid by the customer anyway:
    flagged for a refund."""
    shop = owned_shop(client, db)
    order, token = make_order(db, shop)
    checkout(client, shop, order, token)
    sid = get_order(db, order.id).checkout_session_id
    assert sid is not None
    fake.outage = True
    cancel(client, order.id)
    closed(client)
    fake.outage = False
    session = fake.complete(sid)
    assert pay_event(client, session).json()["outcome"] == "flagged: paid while cancelled"
    return shop, order, session


def refund_event(client: TestClient, session: dict[str, Any], refunded: int) -> httpx.Response:
    charge = {
        "id": "ch_" + str(session["payment_intent"])[3:],
        "object": "charge",
        "payment_intent": session["payment_intent"],
        "amount": session["amount_total"],
        "amount_refunded": refunded,
        "refunded": refunded == session["amount_total"],
        "currency": session["currency"],
        "metadata": session["metadata"],
    }
    body, headers = signed_event(make_event("charge.refunded", charge), WHSEC)
    return client.post("/api/stripe/webhook", content=body, headers=headers)


def test_refunding_a_payment_taken_after_the_cancel_resolves_the_flag(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database, bus: RecordingBus
) -> None:
    shop, order, session = paid_after_cancel(stripe_client, fake_stripe, db)

    resp = refund_event(stripe_client, session, order.total)  # the owner refunded it in Stripe
    assert resp.status_code == 200
    assert resp.json()["outcome"] == "refund recorded: the order stays cancelled"
    after = get_order(db, order.id)
    assert after.status == "cancelled" and not after.flagged
    assert (after.amount_paid, after.payment_intent_id) == (order.total, session["payment_intent"])
    assert after.flag_reason is not None and after.flag_reason.endswith("refunded in full")
    assert status_changes(db, order.id) == [("awaiting_payment", "cancelled")]
    owner_view = stripe_client.get(f"/api/orders/{order.id}").json()
    assert (owner_view["status"], owner_view["flagged"]) == ("cancelled", False)
    live = [m["order"] for c, m in bus.published if c == f"shop:{shop.id}"]
    assert (live[-1]["status"], live[-1]["flagged"]) == ("cancelled", False)
    page = stripe_client.get(f"/dashboard/shops/{shop.id}/orders/{order.id}").text
    assert "Check this payment" not in page
    assert f"<strong>Resolved.</strong> payment {session['payment_intent']} of" in page
    listed = stripe_client.get(f"/dashboard/shops/{shop.id}/orders?all=1").text
    assert "Check payment" not in listed and "Resolved: payment" in listed

    # Stripe delivers the refund again (another event): nothing changes.
    again = refund_event(stripe_client, session, order.total)
    assert again.json()["outcome"] == "refund already recorded"
    assert get_order(db, order.id).flag_reason == after.flag_reason


def test_a_partial_refund_of_a_payment_taken_after_the_cancel_keeps_the_flag(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    _, order, session = paid_after_cancel(stripe_client, fake_stripe, db)
    refund_event(stripe_client, session, 500)
    after = get_order(db, order.id)
    assert after.status == "cancelled" and after.flagged
    assert f"partially refunded: 500 of {order.total}" in (after.flag_reason or "")


def test_a_refund_leaves_the_flag_up_when_the_order_was_flagged_for_something_else_too(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    _, order, session = paid_after_cancel(stripe_client, fake_stripe, db)
    with db.write() as s:
        row = lock_order(s, order.id)
        assert row is not None
        flag_order(s, row, "a payment from a session not opened for the order; refund it")
    refund_event(stripe_client, session, order.total)
    after = get_order(db, order.id)
    assert after.status == "cancelled" and after.flagged
    assert f"payment {session['payment_intent']} refunded in full" in (after.flag_reason or "")
