"""The fake Stripe API answers the real SDK the way Stripe does (so tests against it mean
something): idempotent replays, idempotency conflicts, connected accounts, expiry rules."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from server.payments.gateway import StripeHTTPXClient
from tests.fakes.fake_stripe import FakeStripe, decode_form

PARAMS: dict[str, Any] = {
    "mode": "payment",
    "line_items": [
        {
            "quantity": 2,
            "price_data": {
                "currency": "usd",
                "unit_amount": 450,
                "product_data": {"name": "Latte"},
            },
        }
    ],
    "success_url": "https://shop.example/ok",
}


def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_fake",
        http_client=StripeHTTPXClient(),
        base_addresses={"api": fake.base},
        max_network_retries=0,
    )  # type: ignore[attr-defined]


def test_decode_form_builds_nested_lists() -> None:
    pairs = [
        ("line_items[0][quantity]", "2"),
        ("line_items[1][price_data][currency]", "usd"),
        ("metadata[order_id]", "ord_1"),
        ("mode", "payment"),
    ]
    assert decode_form(pairs) == {
        "line_items": [{"quantity": "2"}, {"price_data": {"currency": "usd"}}],
        "metadata": {"order_id": "ord_1"},
        "mode": "payment",
    }


async def test_idempotent_replay_and_conflict(fake_stripe: FakeStripe) -> None:
    c = client(fake_stripe)
    params = {**PARAMS, "expires_at": int(time.time()) + 1900}
    first = await c.v1.checkout.sessions.create_async(params, {"idempotency_key": "k1"})  # type: ignore[arg-type]
    again = await c.v1.checkout.sessions.create_async(params, {"idempotency_key": "k1"})  # type: ignore[arg-type]
    assert first.id == again.id and first.amount_total == 900
    with pytest.raises(stripe.IdempotencyError):
        await c.v1.checkout.sessions.create_async(
            {**params, "expires_at": params["expires_at"] + 1}, {"idempotency_key": "k1"}
        )  # type: ignore[arg-type]


async def test_expiry_must_be_at_least_thirty_minutes_ahead(fake_stripe: FakeStripe) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        await client(fake_stripe).v1.checkout.sessions.create_async(
            {**PARAMS, "expires_at": int(time.time()) + 1700}
        )  # type: ignore[arg-type]


async def test_connected_account_sessions_need_the_account_header(fake_stripe: FakeStripe) -> None:
    c = client(fake_stripe)
    session = await c.v1.checkout.sessions.create_async({**PARAMS}, {"stripe_account": "acct_1"})  # type: ignore[arg-type]
    with pytest.raises(stripe.InvalidRequestError):
        await c.v1.checkout.sessions.retrieve_async(session.id)
    found = await c.v1.checkout.sessions.retrieve_async(
        session.id, options={"stripe_account": "acct_1"}
    )
    assert found.id == session.id


async def test_only_open_sessions_can_be_expired(fake_stripe: FakeStripe) -> None:
    c = client(fake_stripe)
    session = await c.v1.checkout.sessions.create_async({**PARAMS})  # type: ignore[arg-type]
    expired = await c.v1.checkout.sessions.expire_async(session.id)
    assert expired.status == "expired"
    with pytest.raises(stripe.InvalidRequestError):
        await c.v1.checkout.sessions.expire_async(session.id)
