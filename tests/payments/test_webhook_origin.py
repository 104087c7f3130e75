"""Whose event is it: a correctly signed event pays an order only when it comes from the Connect
account the order's checkout runs on, in the mode of our Stripe key, for a session this server
opened for that order.

A platform's webhook endpoint also receives every connected account's events, signed with the
platform's secret, and a connected shop owner writes their own sessions' metadata. These tests
play that owner naming another shop's order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from server import models
from server.app import create_app
from server.db import Database
from server.settings import Settings
from tests.fakes.fake_stripe import FakeStripe, make_event, signed_event
from tests.payments.conftest import WHSEC, RecordingBus
from tests.payments.factory import (
    TOTAL,
    get_order,
    issue_session,
    make_order,
    make_shop,
    order_token,
    status_changes,
)

VICTIM_ACCOUNT = "acct_1VictimCafe"
ATTACKER_ACCOUNT = "acct_1Attacker"


def session_obj(order: models.Order, session_id: str, **over: Any) -> dict[str, Any]:
    obj = {
        "id": session_id,
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": order.total,
        "currency": order.currency,
        "client_reference_id": order.id,
        "metadata": {"order_id": order.id, "shop_id": order.shop_id},
        "payment_intent": "pi_" + session_id,
    }
    obj.update(over)
    return obj


def deliver(client: TestClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_event(event, WHSEC)
    return client.post("/api/stripe/webhook", content=body, headers=headers)


def stored_event(db: Database, event_id: str) -> models.PaymentEvent:
    with db.read() as s:
        row = s.get(models.PaymentEvent, event_id)
        assert row is not None
        s.expunge(row)
        return row


def untouched(db: Database, order: models.Order) -> None:
    """The order is as it was made: unpaid, not flagged, no payment noted, no history."""
    after = get_order(db, order.id)
    assert (
        after.status,
        after.flagged,
        after.flag_reason,
        after.amount_paid,
        after.payment_intent_id,
        after.fulfilled_at,
    ) == ("awaiting_payment", False, None, None, None, None)
    assert status_changes(db, order.id) == []


@pytest.fixture
def connect_order(db: Database) -> models.Order:
    """An order of a Connect shop whose session ``cs_victim`` runs on the shop's account."""
    shop = make_shop(db, stripe_account_id=VICTIM_ACCOUNT)
    order, _ = make_order(db, shop, checkout_session_id="cs_victim", payment_mode="stripe")
    issue_session(db, order.id, "cs_victim", account=VICTIM_ACCOUNT)
    return order


FOREIGN = [
    pytest.param(
        {"session": "cs_attacker", "account": ATTACKER_ACCOUNT, "livemode": False},
        id="another-connect-account",
    ),
    pytest.param(
        {"session": "cs_victim", "account": ATTACKER_ACCOUNT, "livemode": False},
        id="another-account-naming-the-real-session",
    ),
    pytest.param(
        {"session": "cs_victim", "account": None, "livemode": False},
        id="no-account-for-a-connect-shop",
    ),
    pytest.param(
        {"session": "cs_victim", "account": VICTIM_ACCOUNT, "livemode": True},
        id="live-event-under-a-test-key",
    ),
]


@pytest.mark.parametrize("case", FOREIGN)
def test_event_from_another_account_or_mode_leaves_the_order_alone(
    demo_client: TestClient,
    db: Database,
    bus: RecordingBus,
    connect_order: models.Order,
    case: dict[str, Any],
) -> None:
    event = make_event(
        "checkout.session.completed",
        session_obj(connect_order, case["session"]),
        account=case["account"],
        livemode=case["livemode"],
    )
    resp = deliver(demo_client, event)
    assert resp.status_code == 200  # acknowledged: Stripe must not retry it forever
    assert resp.json()["outcome"].startswith("refused:")
    untouched(db, connect_order)
    assert bus.published == []  # the owner's live view hears nothing either
    row = stored_event(db, event["id"])
    assert row.order_id is None and row.outcome.startswith("refused:")
    assert deliver(demo_client, event).json()["duplicate"] is True


@pytest.mark.parametrize(
    "kind", ["checkout.session.expired", "checkout.session.async_payment_failed"]
)
def test_foreign_failure_or_expiry_does_not_end_the_order(
    demo_client: TestClient, db: Database, connect_order: models.Order, kind: str
) -> None:
    obj = session_obj(connect_order, "cs_victim", status="expired", payment_status="unpaid")
    resp = deliver(demo_client, make_event(kind, obj, account=ATTACKER_ACCOUNT))
    assert resp.json()["outcome"].startswith("refused:")
    untouched(db, connect_order)


def test_foreign_refund_does_not_refund_a_paid_order(
    demo_client: TestClient, db: Database, connect_order: models.Order
) -> None:
    paid = make_event(
        "checkout.session.completed",
        session_obj(connect_order, "cs_victim"),
        account=VICTIM_ACCOUNT,
    )
    assert deliver(demo_client, paid).json()["outcome"] == "paid"
    charge = {
        "id": "ch_attacker",
        "object": "charge",
        "payment_intent": "pi_attacker",
        "amount": TOTAL,
        "amount_refunded": TOTAL,
        "refunded": True,
        "metadata": {"order_id": connect_order.id},
    }
    resp = deliver(demo_client, make_event("charge.refunded", charge, account=ATTACKER_ACCOUNT))
    assert resp.json()["outcome"].startswith("refused:")
    assert get_order(db, connect_order.id).status == "paid"


def test_the_shops_own_connect_event_pays(
    demo_client: TestClient, db: Database, bus: RecordingBus, connect_order: models.Order
) -> None:
    event = make_event(
        "checkout.session.completed",
        session_obj(connect_order, "cs_victim"),
        account=VICTIM_ACCOUNT,
    )
    assert deliver(demo_client, event).json()["outcome"] == "paid"
    assert get_order(db, connect_order.id).status == "paid"
    assert stored_event(db, event["id"]).order_id == connect_order.id
    assert bus.count(f"shop:{connect_order.shop_id}", "order_paid") == 1


def test_a_platform_shop_refuses_connect_events(demo_client: TestClient, db: Database) -> None:
    order, _ = make_order(db, make_shop(db), checkout_session_id="cs_own", payment_mode="stripe")
    event = make_event(
        "checkout.session.completed", session_obj(order, "cs_own"), account=ATTACKER_ACCOUNT
    )
    assert deliver(demo_client, event).json()["outcome"].startswith("refused:")
    untouched(db, order)


def test_paid_session_not_opened_for_the_order_is_flagged_not_paid(
    demo_client: TestClient, db: Database, bus: RecordingBus, connect_order: models.Order
) -> None:
    """Right account and mode, but a session this server never opened for the order (the
    shop's own account made it by hand, or it belongs to another order): the money is real,
    so the owner is told; the order is not paid."""
    event = make_event(
        "checkout.session.completed",
        session_obj(connect_order, "cs_made_elsewhere"),
        account=VICTIM_ACCOUNT,
    )
    resp = deliver(demo_client, event)
    assert resp.json()["outcome"] == "flagged: session not opened for this order"
    after = get_order(db, connect_order.id)
    assert after.status == "awaiting_payment" and after.flagged
    assert "cs_made_elsewhere" in (after.flag_reason or "")
    assert "did not open" in (after.flag_reason or "")
    assert bus.count(f"shop:{connect_order.shop_id}", "order_status") == 1  # the owner sees it


def test_another_orders_session_does_not_pay_this_one(
    demo_client: TestClient, db: Database
) -> None:
    shop = make_shop(db)
    first, _ = make_order(db, shop, checkout_session_id="cs_first", payment_mode="stripe")
    second, _ = make_order(db, shop, checkout_session_id="cs_second", payment_mode="stripe")
    # Metadata (which a connected owner controls) names the second order; the session is the
    # first order's.
    obj = session_obj(second, "cs_first")
    resp = deliver(demo_client, make_event("checkout.session.completed", obj))
    assert resp.json()["outcome"] == "flagged: session not opened for this order"
    assert get_order(db, second.id).status == "awaiting_payment"
    assert get_order(db, first.id).status == "awaiting_payment"


@pytest.mark.parametrize(
    ("key", "livemode", "outcome"),
    [
        ("sk_live_51Abc", True, "paid"),
        ("rk_live_51Abc", True, "paid"),
        ("sk_live_51Abc", False, "refused"),
        ("sk_test_51Abc", True, "refused"),
        ("", True, "refused"),  # demo payments only: test mode
    ],
)
def test_only_events_in_the_mode_of_our_key_count(
    pay_settings: Settings, db: Database, key: str, livemode: bool, outcome: str
) -> None:
    app = create_app(pay_settings.with_(stripe_secret_key=key, payments="demo"), db=db)
    order, _ = make_order(db, make_shop(db), checkout_session_id="cs_1", payment_mode="stripe")
    event = make_event("checkout.session.completed", session_obj(order, "cs_1"), livemode=livemode)
    with TestClient(app) as client:
        assert deliver(client, event).json()["outcome"].startswith(outcome)
    assert get_order(db, order.id).status == ("paid" if outcome == "paid" else "awaiting_payment")


def test_demo_checkout_still_pays_a_connect_shop_in_demo_mode(
    demo_client: TestClient, db: Database
) -> None:
    shop = make_shop(db, stripe_account_id=VICTIM_ACCOUNT, payments_mode="demo")
    order, thread_token = make_order(db, shop)
    body = demo_client.post(
        f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": thread_token}
    ).json()
    resp = demo_client.post(
        f"/pay/demo/{order.id}",
        data={"token": body["order_token"], "action": "pay"},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert get_order(db, order.id).status == "paid"


# ---------------------------------------------------------------- through the real checkout


def open_checkout(client: TestClient, shop: models.Shop, order: models.Order, token: str) -> str:
    resp = client.post(f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token})
    assert resp.status_code == 200, resp.text
    sid = get_order(client_db(client), order.id).checkout_session_id
    assert sid
    return sid


def client_db(client: TestClient) -> Database:
    return client.app.state.db  # type: ignore[attr-defined,no-any-return]


def test_connect_checkout_paid_through_stripe_pays_once(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db, stripe_account_id=VICTIM_ACCOUNT)
    order, token = make_order(db, shop)
    sid = open_checkout(stripe_client, shop, order, token)
    session = fake_stripe.complete(sid)
    resp = deliver(
        stripe_client, make_event("checkout.session.completed", session, account=VICTIM_ACCOUNT)
    )
    assert resp.json()["outcome"] == "paid"
    assert get_order(db, order.id).status == "paid"


def test_an_earlier_session_of_the_order_still_pays(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    """The first session ran out and a second one was opened, but the customer had paid the
    first a moment before: a session this server opened for the order, the right amount."""
    shop = make_shop(db)
    order, token = make_order(db, shop)
    first = open_checkout(stripe_client, shop, order, token)
    with db.write() as s:
        row = s.get(models.Order, order.id)
        assert row is not None
        row.checkout_expires_at = row.created_at  # as if 30 minutes had passed
    second = open_checkout(stripe_client, shop, order, token)
    assert second != first
    paid = fake_stripe.complete(first)
    resp = deliver(stripe_client, make_event("checkout.session.completed", paid))
    assert resp.json()["outcome"] == "paid"


def _foreign_session(fake: FakeStripe, order: models.Order) -> str:
    """A session someone else made on the platform's Stripe (not through our checkout),
    whose metadata names ``order``; the customer pays it."""
    resp = httpx.post(
        f"{fake.base}/v1/checkout/sessions",  # type: ignore[attr-defined]
        headers={"Authorization": "Bearer sk_test_other"},
        data={
            "mode": "payment",
            "success_url": "https://example.com",
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": str(order.total),
            "line_items[0][price_data][product_data][name]": "x",
            "metadata[order_id]": order.id,
        },
    )
    assert resp.status_code == 200, resp.text
    sid: str = resp.json()["id"]
    fake.complete(sid)
    return sid


def test_return_page_only_checks_sessions_opened_for_the_order(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db)
    order, token = make_order(db, shop)
    open_checkout(stripe_client, shop, order, token)
    foreign = _foreign_session(fake_stripe, order)
    page = stripe_client.get(
        f"/checkout/return?order_id={order.id}&token={order_token(order.id)}&session_id={foreign}"
    )
    assert page.status_code == 200
    assert get_order(db, order.id).status == "awaiting_payment"
    # Not even asked: a session id in the query string is the customer's to write.
    assert [r for r in fake_stripe.requests if r.path.endswith(foreign)] == []


def test_return_page_reads_a_connect_session_from_its_account(
    stripe_client: TestClient, fake_stripe: FakeStripe, db: Database
) -> None:
    shop = make_shop(db, stripe_account_id=VICTIM_ACCOUNT)
    order, token = make_order(db, shop)
    sid = open_checkout(stripe_client, shop, order, token)
    fake_stripe.complete(sid)
    page = stripe_client.get(
        f"/checkout/return?order_id={order.id}&token={order_token(order.id)}&session_id={sid}"
    )
    assert "Your order is paid" in page.text
    [read] = [r for r in fake_stripe.requests if r.method == "GET"]
    assert read.headers["stripe-account"] == VICTIM_ACCOUNT
