"""Every table: the whole data model at a glance.

Money columns are integers in minor units. Timestamps are timezone-aware UTC. Tables come from
Alembic migrations (``migrations/``), never from ``create_all`` outside tests of the migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.ids import utcnow


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), nullable=nullable, **kw)


def _json(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_type=JSON, nullable=False)


# ---------------------------------------------------------------- owners


class Owner(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    email: str = Field(unique=True, index=True, max_length=254)
    password_hash: str | None = Field(default=None, max_length=200)
    failed_logins: int = 0
    locked_until: datetime | None = _ts(nullable=True, default=None)
    last_failed_login_at: datetime | None = _ts(nullable=True, default=None)
    created_at: datetime = _ts(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Failed sign-ins for an email address without an account, counted exactly like
    ``Owner.failed_logins`` / ``locked_until`` so that the lockout answer does not tell whether
    the address has an account. Keyed by an HMAC of the address (typed addresses are not stored);
    a row is deleted once its last failure is older than the counting window and it is not
    locked."""

    id: str = Field(primary_key=True, max_length=64)
    failed_logins: int = 0
    locked_until: datetime | None = _ts(nullable=True, default=None)
    last_failed_login_at: datetime = _ts(default_factory=utcnow, index=True)


class OwnerSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    id: str = Field(primary_key=True, max_length=64)  # sha256 of the cookie token
    owner_id: str = Field(foreign_key="owner.id", index=True, ondelete="CASCADE")
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True, default=None)
    user_agent: str = Field(default="", max_length=300)


class ApiToken(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    owner_id: str = Field(foreign_key="owner.id", index=True, ondelete="CASCADE")
    name: str = Field(default="", max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(default="", max_length=16)  # first characters, to tell tokens apart
    created_at: datetime = _ts(default_factory=utcnow)
    last_used_at: datetime | None = _ts(nullable=True, default=None)
    revoked_at: datetime | None = _ts(nullable=True, default=None)


class MagicLink(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    owner_id: str = Field(foreign_key="owner.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()
    used_at: datetime | None = _ts(nullable=True, default=None)


# ---------------------------------------------------------------- shops and catalogs


class Shop(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    owner_id: str | None = Field(
        default=None, foreign_key="owner.id", index=True, ondelete="SET NULL"
    )
    name: str = Field(max_length=120)
    slug: str = Field(unique=True, index=True, max_length=80)
    currency: str = Field(default="usd", max_length=3)
    greeting: str = Field(default="", max_length=500)
    theme_color: str = Field(default="#2f6f4f", max_length=9)
    fulfillment_modes: list[str] = _json(lambda: ["pickup"])
    require_name: bool = False
    opening_hours: dict[str, Any] = _json(
        dict
    )  # {"mon": [["08:00","17:00"]], ..., "tz": "Europe/Paris"}
    paused: bool = False
    allowed_origins: list[str] = _json(list)
    notify_webhook_url: str = Field(default="", max_length=500)
    notify_webhook_secret: str = Field(default="", max_length=100)
    stripe_account_id: str = Field(default="", max_length=100)
    payments_mode: str = Field(default="auto", max_length=10)  # auto | live | demo
    live_catalog_version: int | None = None
    menu_revision: int = (
        0  # bumped when availability changes: with the version, names the menu's state
    )
    # The number of the shop's last order: ``Order.number`` is taken from it with one
    # ``UPDATE ... RETURNING`` in the transaction that inserts the order.
    order_seq: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = _ts(default_factory=utcnow)


class Catalog(SQLModel, table=True):
    """One version of a shop's catalog. Versions are immutable in price; older ones are kept."""

    __table_args__ = (UniqueConstraint("shop_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    shop_id: str = Field(foreign_key="shop.id", index=True, ondelete="CASCADE")
    version: int
    source_name: str = Field(default="", max_length=255)
    source_format: str = Field(default="csv", max_length=20)
    product_count: int = 0
    warnings: list[dict[str, Any]] = _json(list)
    created_at: datetime = _ts(default_factory=utcnow)


class Product(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("catalog_id", "product_id"),)
    id: int | None = Field(default=None, primary_key=True)
    catalog_id: int = Field(foreign_key="catalog.id", index=True, ondelete="CASCADE")
    product_id: str = Field(max_length=120)
    position: int = 0
    name: str = Field(max_length=200)
    category: str = Field(default="", max_length=120)
    description: str = Field(default="", sa_type=Text)
    price: int
    options: list[dict[str, Any]] = _json(list)
    tags: list[str] = _json(list)
    available: bool = True
    image_url: str | None = Field(default=None, max_length=1000)


# ---------------------------------------------------------------- chat


class Thread(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    shop_id: str = Field(foreign_key="shop.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64)
    role: str = Field(default="waiter", max_length=10)  # waiter | cashier
    parent_id: str | None = Field(default=None, foreign_key="thread.id", ondelete="SET NULL")
    cart: dict[str, Any] = _json(dict)
    state: dict[str, Any] = _json(dict)  # assistant memory between turns (pending question...)
    order_id: str | None = Field(default=None, max_length=40)
    message_count: int = 0
    last_seq: int = 0  # last stream event id
    client_ip: str = Field(default="", max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Message(SQLModel, table=True):
    __table_args__ = (Index("ix_message_thread_id_id", "thread_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="thread.id", ondelete="CASCADE")
    role: str = Field(max_length=10)  # user | assistant | tool | system
    content: str = Field(default="", sa_type=Text)
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    tool_call_id: str | None = Field(default=None, max_length=100)
    complete: bool = True  # False while a reply streams, or when it ended early
    created_at: datetime = _ts(default_factory=utcnow)


class ThreadEvent(SQLModel, table=True):
    """Stream events of a thread, kept so a client can replay after ``Last-Event-ID``."""

    __table_args__ = (UniqueConstraint("thread_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="thread.id", index=True, ondelete="CASCADE")
    seq: int
    event: str = Field(max_length=20)
    data: dict[str, Any] = _json(dict)
    created_at: datetime = _ts(default_factory=utcnow)


class ShopUsage(SQLModel, table=True):
    """Model tokens spent per shop per UTC day (the daily budget)."""

    __table_args__ = (UniqueConstraint("shop_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    shop_id: str = Field(foreign_key="shop.id", ondelete="CASCADE")
    day: str = Field(max_length=10)
    tokens: int = 0


# ---------------------------------------------------------------- orders and payments


class Order(SQLModel, table=True):
    """``number`` is the short order number the shop calls out (1, 2, 3... per shop, from
    ``Shop.order_seq``); ``id`` stays the identifier everywhere else."""

    __table_args__ = (Index("ux_order_shop_id_number", "shop_id", "number", unique=True),)
    id: str = Field(primary_key=True, max_length=40)
    shop_id: str = Field(foreign_key="shop.id", index=True, ondelete="CASCADE")
    number: int
    thread_id: str | None = Field(default=None, foreign_key="thread.id", ondelete="SET NULL")
    status: str = Field(default="awaiting_payment", max_length=20, index=True)
    currency: str = Field(max_length=3)
    items: list[dict[str, Any]] = _json(list)
    subtotal: int
    tax: int = 0
    tip: int = 0
    total: int
    fulfillment: dict[str, Any] = _json(dict)
    customer_note: str | None = Field(default=None, sa_type=Text)
    catalog_version: int
    version: int = 1  # bumped when the items change; part of the checkout idempotency key
    checkout_session_id: str | None = Field(default=None, max_length=255, index=True)
    checkout_url: str | None = Field(default=None, sa_type=Text)
    checkout_version: int | None = None
    checkout_expires_at: datetime | None = _ts(nullable=True, default=None)
    checkout_attempt: int = 0  # bumped when a session of the same version expired unpaid
    payment_intent_id: str | None = Field(default=None, max_length=255, index=True)  # for refunds
    payment_mode: str = Field(default="", max_length=10)  # stripe | demo
    amount_paid: int | None = None
    flagged: bool = False
    flag_reason: str | None = Field(default=None, sa_type=Text)
    fulfilled_at: datetime | None = _ts(nullable=True, default=None)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    paid_at: datetime | None = _ts(nullable=True, default=None)


class IssuedCheckout(SQLModel, table=True):
    """Every checkout session this server opened for an order, also the ones a changed cart
    replaced. A payment counts only for a session listed here for that order (and for the
    Connect account it was opened on), never for one an event merely claims is the order's."""

    id: str = Field(primary_key=True, max_length=255)  # the provider's session id
    order_id: str = Field(foreign_key="order.id", index=True, ondelete="CASCADE")
    gateway: str = Field(max_length=10)  # stripe | demo
    stripe_account: str = Field(default="", max_length=100)  # "" = the platform's own account
    created_at: datetime = _ts(default_factory=utcnow)


class OrderStatusChange(SQLModel, table=True):
    """The order's history: every accepted status move and what caused it."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="order.id", index=True, ondelete="CASCADE")
    from_status: str = Field(max_length=20)
    to_status: str = Field(max_length=20)
    source: str = Field(default="", max_length=60)  # stripe:evt_..., demo, owner:own_..., return
    created_at: datetime = _ts(default_factory=utcnow)


class PaymentEvent(SQLModel, table=True):
    """Each Stripe (or demo) event id stored once; a second delivery finds it and does nothing."""

    id: str = Field(primary_key=True, max_length=255)  # the provider's event id
    type: str = Field(max_length=80)
    order_id: str | None = Field(default=None, max_length=40, index=True)
    livemode: bool = False
    received_at: datetime = _ts(default_factory=utcnow)
    handled_at: datetime | None = _ts(nullable=True, default=None)
    outcome: str = Field(default="", max_length=200)


class WebhookDelivery(SQLModel, table=True):
    """Delivery log of the shop's notification webhook: one row per attempt, the next one
    pending until it is sent (so retries survive a restart)."""

    id: int | None = Field(default=None, primary_key=True)
    shop_id: str = Field(foreign_key="shop.id", index=True, ondelete="CASCADE")
    order_id: str = Field(max_length=40, index=True)
    url: str = Field(max_length=500)
    attempt: int = 1
    status_code: int | None = None
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _ts(default_factory=utcnow)
    delivered_at: datetime | None = _ts(nullable=True, default=None)
    # Set while the attempt is pending (its due time); cleared once its result is stored.
    next_attempt_at: datetime | None = _ts(nullable=True, default=None, index=True)
    attempted_at: datetime | None = _ts(nullable=True, default=None)


__all__ = [
    "ApiToken",
    "Catalog",
    "MagicLink",
    "Message",
    "Order",
    "OrderStatusChange",
    "Owner",
    "OwnerSession",
    "PaymentEvent",
    "Product",
    "Shop",
    "ShopUsage",
    "Thread",
    "ThreadEvent",
    "WebhookDelivery",
]
