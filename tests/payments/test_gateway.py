"""The payments seam: choosing a gateway, verifying signatures, demo sessions, and logs that
carry request and order ids but no secrets or tokens."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.db import Database
from server.payments.gateway import (
    DemoGateway,
    StripeGateway,
    WebhookNotConfigured,
    WebhookRejected,
    build_payments,
    gateway_for_shop,
    verify_stripe_signature,
)
from server.settings import Settings, SettingsError
from tests.fakes.fake_stripe import FakeStripe, make_event, sign_payload, signed_event
from tests.payments.conftest import WHSEC
from tests.payments.factory import make_order, make_shop


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"payments": "auto"}, DemoGateway),
        ({"payments": "auto", "stripe_secret_key": "sk_test_1"}, StripeGateway),
        ({"payments": "stripe", "stripe_secret_key": "sk_test_1"}, StripeGateway),
        ({"payments": "demo", "stripe_secret_key": "sk_test_1"}, DemoGateway),
        (
            {
                "payments": "demo",
                "app_env": "production",
                "allow_demo_payments_in_production": True,
            },
            DemoGateway,
        ),
        (
            {"payments": "auto", "app_env": "production", "stripe_secret_key": "sk_live_1"},
            StripeGateway,
        ),
        ({"payments": "demo", "app_env": "production"}, SettingsError),
        ({"payments": "auto", "app_env": "production"}, SettingsError),
        ({"payments": "stripe"}, SettingsError),
    ],
)
def test_build_payments(fields: dict[str, Any], expected: type) -> None:
    settings = Settings(**fields)
    if expected is SettingsError:
        with pytest.raises(SettingsError) as err:
            build_payments(settings)
        assert str(err.value).split(":")[0] in ("PAYMENTS", "STRIPE_SECRET_KEY")
    else:
        assert type(build_payments(settings)) is expected


def test_demo_shop_under_stripe_uses_demo_except_in_production() -> None:
    shop = type("S", (), {"payments_mode": "demo"})()
    assert (
        gateway_for_shop(build_payments(Settings(stripe_secret_key="sk_test_1")), shop).name
        == "demo"
    )  # type: ignore[arg-type]
    prod = Settings(app_env="production", stripe_secret_key="sk_live_1")
    assert gateway_for_shop(build_payments(prod), shop).name == "stripe"  # type: ignore[arg-type]


BODY = json.dumps(
    {"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}
).encode()


@pytest.mark.parametrize(
    ("header", "secret", "error"),
    [
        (lambda: sign_payload(BODY, WHSEC), WHSEC, None),
        (lambda: None, WHSEC, WebhookRejected),
        (lambda: "", WHSEC, WebhookRejected),
        (lambda: sign_payload(BODY, "whsec_other"), WHSEC, WebhookRejected),
        (lambda: sign_payload(BODY, WHSEC, int(time.time()) - 301), WHSEC, WebhookRejected),
        (lambda: sign_payload(BODY, WHSEC, int(time.time()) + 301), WHSEC, WebhookRejected),
        (lambda: sign_payload(BODY, WHSEC).replace("v1=", "v0="), WHSEC, WebhookRejected),
        (lambda: sign_payload(BODY, ""), "", WebhookNotConfigured),
    ],
    ids=["valid", "missing", "empty", "wrong-secret", "stale", "future", "no-v1", "no-secret"],
)
def test_verify_stripe_signature(header: Any, secret: str, error: type[Exception] | None) -> None:
    if error is None:
        assert verify_stripe_signature(BODY, header(), secret)["id"] == "evt_1"
    else:
        with pytest.raises(error):
            verify_stripe_signature(BODY, header(), secret)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": 1, "type": "x"}', b"\xff\xfe"])
def test_signed_garbage_is_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        verify_stripe_signature(body, sign_payload(body, WHSEC), WHSEC)


async def test_demo_session_is_idempotent(settings: Settings, db: Database) -> None:
    shop = make_shop(db)
    order, _ = make_order(db, shop)
    gateway = DemoGateway(settings)
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    kw: dict[str, Any] = {"success_url": "s", "cancel_url": "c", "expires_at": expires}
    one = await gateway.create_checkout(order, shop, [], idempotency_key="k1", **kw)
    two = await gateway.create_checkout(order, shop, [], idempotency_key="k1", **kw)
    three = await gateway.create_checkout(order, shop, [], idempotency_key="k2", **kw)
    assert one == two and one.session_id != three.session_id
    assert one.url.startswith(f"http://testserver/pay/demo/{order.id}?token=")
    assert (await gateway.retrieve(one.session_id))["payment_status"] == "unpaid"  # never pays


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_logs_carry_ids_but_no_secrets(
    stripe_client: TestClient, fake_stripe: FakeStripe, stripe_settings: Settings, db: Database
) -> None:
    root = logging.getLogger("shop_assist")
    handler, level = Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        shop = make_shop(db)
        order, thread_token = make_order(db, shop)
        body = stripe_client.post(
            f"/api/order/{shop.id}", json={"order_id": order.id, "thread_token": thread_token}
        ).json()
        sid = next(iter(fake_stripe.sessions))
        fake_stripe.complete(sid)
        event_body, headers = signed_event(
            make_event("checkout.session.completed", fake_stripe.sessions[sid]), WHSEC
        )
        stripe_client.post("/api/stripe/webhook", content=event_body, headers=headers)
        stripe_client.get(
            f"/checkout/return?session_id={sid}&order_id={order.id}&token={body['order_token']}"
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.dumps({**vars(r), "msg": r.getMessage()}, default=str) for r in handler.records]
    text = "\n".join(lines)
    for secret in (
        thread_token,
        body["order_token"],
        WHSEC,
        stripe_settings.stripe_secret_key,
        stripe_settings.secret_key,
    ):
        assert secret not in text
    payment_lines = [
        r
        for r in handler.records
        if r.name == "shop_assist.payments" and getattr(r, "order_id", None) == order.id
    ]
    assert payment_lines and all(getattr(r, "request_id", "") for r in payment_lines)
