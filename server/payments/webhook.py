"""Payment events: each event id stored once, its effect applied in the same transaction.

A second delivery of an event finds its id already stored and does nothing (also when two
arrive at once: the insert is ``ON CONFLICT DO NOTHING`` and only the inserting transaction
goes on). Effects go through the order state machine, so a late or reordered event never moves
an order backwards, and :func:`settle_session` (also used by the return page) pays an order at
most once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from server import models
from server.db import Database
from server.ids import utcnow
from server.orders import status as st
from server.orders.fulfil import (
    StatusChange,
    change_status,
    flag_order,
    lock_order,
    serialised_write,
)

log = logging.getLogger("shop_assist.payments")

HANDLED_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "charge.refunded",
    }
)


@dataclass
class EventResult:
    duplicate: bool = False
    outcome: str = ""
    order_id: str | None = None
    changes: list[StatusChange] = field(default_factory=list)
    flagged: bool = False  # the order was flagged for the owner (no status change)


def record_event(db: Database, event: dict[str, Any]) -> EventResult:
    """Store ``event`` once and apply it, in one write transaction (sync: run it in a thread).

    An exception rolls everything back, the event id included, so a redelivery is handled anew.
    """
    with serialised_write(db) as s:
        if not _claim(s, event):
            return EventResult(duplicate=True, outcome="duplicate")
        result = apply_event(s, event)
        row = s.get(models.PaymentEvent, event["id"])
        if row is not None:
            row.order_id = result.order_id
            row.outcome = result.outcome[:200]
            row.handled_at = utcnow()
            s.add(row)
        return result


def _claim(s: Session, event: dict[str, Any]) -> bool:
    """Insert the event id; False when it is already there (a duplicate delivery)."""
    values = {
        "id": event["id"],
        "type": str(event["type"])[:80],
        "livemode": bool(event.get("livemode", False)),
        "received_at": utcnow(),
        "outcome": "",
    }
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(models.PaymentEvent).values(**values).on_conflict_do_nothing(index_elements=["id"])
    )
    # SQLAlchemy reports an INSERT's rowcount only when asked (PostgreSQL gave -1 otherwise).
    stmt = stmt.execution_options(preserve_rowcount=True)
    return s.connection().execute(stmt).rowcount == 1


def apply_event(s: Session, event: dict[str, Any]) -> EventResult:
    """Dispatch one verified event (already claimed) to its effect."""
    kind = event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    source = f"stripe:{event['id']}" if not event["id"].startswith("demo") else "demo"
    if kind not in HANDLED_TYPES or not isinstance(obj, dict):
        return EventResult(outcome=f"ignored {kind}"[:200])
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return settle_session(s, obj, source=source)
    if kind == "checkout.session.async_payment_failed":
        return _session_ended(s, obj, st.PAYMENT_FAILED, source)
    if kind == "checkout.session.expired":
        return _session_ended(s, obj, st.EXPIRED, source)
    return _refunded(s, obj, source)


def _order_id_of(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    oid = meta.get("order_id") or obj.get("client_reference_id")
    return oid if isinstance(oid, str) and oid else None


def settle_session(s: Session, obj: dict[str, Any], *, source: str) -> EventResult:
    """A checkout session reports completion: pay the order if the money is right.

    Paid only when ``payment_status == "paid"`` and the amount and currency equal the order's;
    a mismatch flags the order for the owner instead. Idempotent: an order already paid stays
    as it is (the state machine has no ``paid -> paid``)."""
    order_id = _order_id_of(obj)
    order = lock_order(s, order_id) if order_id else None
    if order is None:
        return EventResult(outcome="no matching order")
    result = EventResult(order_id=order.id)
    payment_status = obj.get("payment_status")
    if payment_status != "paid":
        result.outcome = f"not paid yet ({payment_status})"
        return result
    amount, currency = obj.get("amount_total"), str(obj.get("currency") or "").lower()
    if amount != order.total or currency != order.currency:
        flag_order(
            s,
            order,
            f"payment of {amount} {currency} does not match the order total {order.total} {order.currency} (session {obj.get('id')})",
        )
        result.outcome, result.flagged = "flagged: amount or currency mismatch", True
        log.warning(
            "payment does not match order",
            extra={"order_id": order.id, "amount": amount, "currency": currency},
        )
        return result
    intent = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None
    if st.is_paid(order.status) or order.status == st.REFUNDED:
        if intent and order.payment_intent_id and intent != order.payment_intent_id:
            flag_order(
                s, order, f"a second payment ({intent}) was taken for this order; refund one"
            )
            result.outcome, result.flagged = "flagged: paid twice", True
        else:
            result.outcome = "already paid"
        return result
    change = change_status(s, order, st.PAID, source=source)
    if change is None:  # cancelled: money arrived for an order nobody will make
        flag_order(s, order, f"payment received while the order is {order.status}; refund it")
        result.outcome, result.flagged = f"flagged: paid while {order.status}", True
        return result
    order.amount_paid = amount
    order.payment_intent_id = intent or order.payment_intent_id
    s.add(order)
    result.changes.append(change)
    result.outcome = "paid"
    return result


def _session_ended(s: Session, obj: dict[str, Any], target: str, source: str) -> EventResult:
    """Failed or expired session: only the order's current session can move it (an old,
    replaced session expiring says nothing about the new one)."""
    order_id = _order_id_of(obj)
    order = lock_order(s, order_id) if order_id else None
    if order is None:
        return EventResult(outcome="no matching order")
    result = EventResult(order_id=order.id)
    if order.checkout_session_id and obj.get("id") != order.checkout_session_id:
        result.outcome = f"{target} ignored: not the current session"
        return result
    change = change_status(s, order, target, source=source)
    result.outcome = target if change else f"{target} ignored in {order.status}"
    if change:
        result.changes.append(change)
    return result


def _refunded(s: Session, charge: dict[str, Any], source: str) -> EventResult:
    intent = charge.get("payment_intent")
    order: models.Order | None = None
    if isinstance(intent, str) and intent:
        found = s.exec(
            select(models.Order.id).where(models.Order.payment_intent_id == intent)
        ).first()
        order = lock_order(s, found) if found else None
    if order is None:
        order_id = _order_id_of(charge)
        order = lock_order(s, order_id) if order_id else None
    if order is None:
        return EventResult(outcome="no matching order")
    result = EventResult(order_id=order.id)
    amount, refunded = charge.get("amount"), charge.get("amount_refunded")
    if charge.get("refunded") is not True and isinstance(amount, int) and refunded != amount:
        flag_order(s, order, f"partially refunded: {refunded} of {amount} {order.currency}")
        result.outcome, result.flagged = "partial refund", True
        return result
    change = change_status(s, order, st.REFUNDED, source=source)
    result.outcome = "refunded" if change else f"refund ignored in {order.status}"
    if change:
        result.changes.append(change)
    return result
