"""``plan_checkout``: reuse a session, join a reservation, or reserve a new one. Table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server import models
from server.payments.checkout import CHECKOUT_TTL, EXPIRY_SLACK, plan_checkout

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FRESH = NOW + CHECKOUT_TTL + EXPIRY_SLACK


def order(**fields: Any) -> models.Order:
    base: dict[str, Any] = {
        "id": "ord_1",
        "shop_id": "shp_1",
        "currency": "usd",
        "subtotal": 100,
        "total": 100,
        "catalog_version": 1,
    }
    return models.Order(**{**base, **fields})


STORED = {
    "checkout_session_id": "cs_1",
    "checkout_url": "https://checkout.stripe.com/c/pay/cs_1",
    "checkout_version": 1,
}

CASES = [
    # (what, order fields, reuse, attempt, expires_at)
    ("first checkout", {}, False, 0, FRESH),
    (
        "double click",
        {**STORED, "checkout_expires_at": NOW + timedelta(minutes=29)},
        True,
        0,
        NOW + timedelta(minutes=29),
    ),
    (
        "session about to end",
        {**STORED, "checkout_expires_at": NOW + timedelta(minutes=1)},
        False,
        1,
        FRESH,
    ),
    (
        "session ended",
        {**STORED, "checkout_expires_at": NOW - timedelta(minutes=5)},
        False,
        1,
        FRESH,
    ),
    (
        "cart changed",
        {**STORED, "version": 2, "checkout_expires_at": NOW + timedelta(minutes=29)},
        False,
        0,
        FRESH,
    ),
    (
        "racing click joins the reservation",
        {"checkout_version": 1, "checkout_expires_at": NOW + timedelta(minutes=30, seconds=50)},
        False,
        0,
        NOW + timedelta(minutes=30, seconds=50),
    ),
    (
        "stale reservation (Stripe failed a while ago)",
        {"checkout_version": 1, "checkout_expires_at": NOW + timedelta(minutes=20)},
        False,
        1,
        FRESH,
    ),
    (
        "naive timestamp from SQLite",
        {**STORED, "checkout_expires_at": (NOW + timedelta(minutes=10)).replace(tzinfo=None)},
        True,
        0,
        NOW + timedelta(minutes=10),
    ),
]


@pytest.mark.parametrize(
    ("what", "fields", "reuse", "attempt", "expires"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_plan_checkout(
    what: str,
    fields: dict[str, Any],
    reuse: bool,
    attempt: int,
    expires: datetime,
) -> None:
    plan = plan_checkout(order(**fields), NOW)
    assert (plan.reuse, plan.attempt, plan.expires_at) == (reuse, attempt, expires)


def test_new_sessions_leave_stripe_its_thirty_minutes() -> None:
    plan = plan_checkout(order(), NOW)
    assert plan.expires_at - NOW > timedelta(minutes=30)  # Stripe refuses less than 30 minutes


@pytest.mark.parametrize(
    ("what", "fields", "reuse", "attempt", "expires"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_only_a_new_reservation_opens_a_new_session(
    what: str,
    fields: dict[str, Any],
    reuse: bool,
    attempt: int,
    expires: datetime,
) -> None:
    """What the checkout limits count: not a double click, not a click joining a reservation."""
    opens = what not in (
        "double click",
        "racing click joins the reservation",
        "naive timestamp from SQLite",
    )
    assert plan_checkout(order(**fields), NOW).new_session is opens
