"""The order state machine: which status moves are allowed. Pure; no I/O.

    awaiting_payment ──> paid ──> preparing ──> ready ──> completed
        │   ▲  ▲           │         │           │
        │   │  │           └─────────┴───────────┴──> refunded
        ▼   │  │
    payment_failed ──> paid   (a late success still pays)
    expired        ──> paid
    cancelled                 (only before payment)

A customer may try again after a failed or expired checkout (back to ``awaiting_payment``).
Nothing moves an order from ``paid`` (or later) back to an unpaid status, so a late or repeated
event never undoes a payment.

``cancelled`` is final: cancelling expires the order's open checkout, and a payment that still
gets through (the customer paid as the owner cancelled, or Stripe could not be reached) leaves
the order cancelled and flags it for the owner to refund (``server/payments/webhook.py``).
"""

from __future__ import annotations

AWAITING_PAYMENT = "awaiting_payment"
PAID = "paid"
PREPARING = "preparing"
READY = "ready"
COMPLETED = "completed"
PAYMENT_FAILED = "payment_failed"
EXPIRED = "expired"
CANCELLED = "cancelled"
REFUNDED = "refunded"

STATUSES: tuple[str, ...] = (
    AWAITING_PAYMENT,
    PAID,
    PREPARING,
    READY,
    COMPLETED,
    PAYMENT_FAILED,
    EXPIRED,
    CANCELLED,
    REFUNDED,
)

TRANSITIONS: dict[str, frozenset[str]] = {
    AWAITING_PAYMENT: frozenset({PAID, PAYMENT_FAILED, EXPIRED, CANCELLED}),
    PAYMENT_FAILED: frozenset({PAID, AWAITING_PAYMENT, EXPIRED, CANCELLED}),
    EXPIRED: frozenset({PAID, AWAITING_PAYMENT, CANCELLED}),
    PAID: frozenset({PREPARING, READY, COMPLETED, REFUNDED}),
    PREPARING: frozenset({READY, COMPLETED, REFUNDED}),
    READY: frozenset({COMPLETED, REFUNDED}),
    COMPLETED: frozenset({REFUNDED}),
    CANCELLED: frozenset(),
    REFUNDED: frozenset(),
}

# Statuses in which money has been taken (a refund is possible, payment events are late).
PAID_STATUSES = frozenset({PAID, PREPARING, READY, COMPLETED})
# Statuses from which a customer may open a checkout.
PAYABLE_STATUSES = frozenset({AWAITING_PAYMENT, PAYMENT_FAILED, EXPIRED})
# Moves an owner may make from the dashboard.
OWNER_TARGETS = frozenset({PREPARING, READY, COMPLETED, CANCELLED})


def can_move(current: str, target: str) -> bool:
    """True when ``current -> target`` is an allowed move (staying put is not a move)."""
    return target in TRANSITIONS.get(current, frozenset())


def is_paid(status: str) -> bool:
    """True once money has been taken and not given back."""
    return status in PAID_STATUSES
