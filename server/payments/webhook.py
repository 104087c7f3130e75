"""Payment events: each event id stored once, its effect applied in the same transaction.

A second delivery of an event finds its id already stored and does nothing (also when two
arrive at once: the insert is ``ON CONFLICT DO NOTHING`` and only the inserting transaction
goes on). Effects go through the order state machine, so a late or reordered event never moves
an order backwards, and :func:`settle_session` (also used by the return page) pays an order at
most once.

The platform's webhook endpoint also receives events of every connected (Stripe Connect)
account, all signed with the platform's secret, and a connected account's owner controls what
its sessions' metadata say. So ``metadata.order_id`` only names the order to check; an event
counts for that order only when it comes from the Connect account the order's checkout runs on,
in the mode of our Stripe key, and names a session this server opened for that order
(:class:`server.models.IssuedCheckout`). An event from another account or mode leaves the order
untouched (logged, answered 2xx so Stripe stops retrying); a paid session of the right account
that was never opened for the order flags it for the owner.
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
from server.payments.sessions import IssuedSession, issued_session, order_accounts

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


@dataclass(frozen=True)
class Origin:
    """Where a verified report about a checkout session (or charge) comes from."""

    source: str  # recorded with a status change: "stripe:evt_...", "demo", "return"
    account: str | None  # the Connect account it belongs to; None for the platform's own
    livemode: bool  # what the report says about itself
    live_key: bool  # our STRIPE_SECRET_KEY is a live key


@dataclass
class EventResult:
    duplicate: bool = False
    outcome: str = ""
    order_id: str | None = None
    changes: list[StatusChange] = field(default_factory=list)
    flagged: bool = False  # the order's flag was raised or resolved (no status change)


def record_event(db: Database, event: dict[str, Any], *, live_key: bool) -> EventResult:
    """Store ``event`` once and apply it, in one write transaction (sync: run it in a thread).

    ``live_key``: our Stripe key is a live one, so only live-mode Stripe events count.
    An exception rolls everything back, the event id included, so a redelivery is handled anew.
    """
    with serialised_write(db) as s:
        if not _claim(s, event):
            return EventResult(duplicate=True, outcome="duplicate")
        result = apply_event(s, event, live_key=live_key)
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


def apply_event(s: Session, event: dict[str, Any], *, live_key: bool) -> EventResult:
    """Dispatch one verified event (already claimed) to its effect."""
    kind = event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    if kind not in HANDLED_TYPES or not isinstance(obj, dict):
        return EventResult(outcome=f"ignored {kind}"[:200])
    account = event.get("account")
    origin = Origin(
        source=f"stripe:{event['id']}" if not event["id"].startswith("demo") else "demo",
        account=account if isinstance(account, str) and account else None,
        livemode=event.get("livemode") is True,
        live_key=live_key,
    )
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return settle_session(s, obj, origin)
    if kind == "checkout.session.async_payment_failed":
        return _session_ended(s, obj, st.PAYMENT_FAILED, origin)
    if kind == "checkout.session.expired":
        return _session_ended(s, obj, st.EXPIRED, origin)
    return _refunded(s, obj, origin)


def _order_id_of(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    oid = meta.get("order_id") or obj.get("client_reference_id")
    return oid if isinstance(oid, str) and oid else None


def _mode(live: bool) -> str:
    return "live" if live else "test"


def foreign_reason(
    origin: Origin, expected_accounts: set[str | None], expected_live: bool
) -> str | None:
    """Why a report cannot be about this order at all (another Connect account, the other
    mode), or None. Pure."""
    if origin.account not in expected_accounts:
        return f"from account {origin.account or '(platform)'}, not the one the order's checkout runs on"
    if origin.livemode != expected_live:
        return f"a {_mode(origin.livemode)}-mode event; payments here run in {_mode(expected_live)} mode"
    return None


def _expected(
    origin: Origin, shop: models.Shop, issued: IssuedSession | None
) -> tuple[set[str | None], bool]:
    """The account and mode a report about ``issued`` (or an unknown session) must have."""
    if issued is not None:
        # Demo sessions are ours alone: their events are made in-process, always test mode.
        return {issued.account}, origin.live_key if issued.gateway == "stripe" else False
    return {shop.stripe_account_id or None}, origin.live_key


def _refuse(order: models.Order, origin: Origin, reason: str, obj: dict[str, Any]) -> EventResult:
    """A report from another account or mode: the order is not touched, nor linked to it."""
    log.warning(
        "payment event for another account or mode ignored",
        extra={
            "order_id": order.id,
            "source": origin.source,
            "account": origin.account,
            "livemode": origin.livemode,
            "object_id": obj.get("id"),
            "reason": reason,
        },
    )
    return EventResult(outcome=f"refused: {reason}"[:200])


def _order_and_shop(
    s: Session, order_id: str | None
) -> tuple[models.Order, models.Shop] | tuple[None, None]:
    order = lock_order(s, order_id) if order_id else None
    shop = s.get(models.Shop, order.shop_id) if order is not None else None
    return (order, shop) if order is not None and shop is not None else (None, None)


def settle_session(s: Session, obj: dict[str, Any], origin: Origin) -> EventResult:
    """A checkout session reports completion: pay the order if the session and money are right.

    Nothing happens unless the report comes from the order's Connect account in our key's mode.
    Paid only when the session is one this server opened for the order, ``payment_status ==
    "paid"``, and the amount and currency equal the order's; a paid session that was not opened
    for the order, or a mismatch, flags the order for the owner instead. Idempotent: an order
    already paid stays as it is (the state machine has no ``paid -> paid``)."""
    order, shop = _order_and_shop(s, _order_id_of(obj))
    if order is None or shop is None:
        return EventResult(outcome="no matching order")
    session_id = obj.get("id")
    issued = issued_session(s, order, shop, session_id)
    refused = foreign_reason(origin, *_expected(origin, shop, issued))
    if refused:
        return _refuse(order, origin, refused, obj)
    result = EventResult(order_id=order.id)
    payment_status = obj.get("payment_status")
    if payment_status != "paid":
        result.outcome = f"not paid yet ({payment_status})"
        return result
    amount, currency = obj.get("amount_total"), str(obj.get("currency") or "").lower()
    if issued is None:
        flag_order(
            s,
            order,
            f"a payment of {amount} {currency} came from checkout session {session_id}, which "
            "this shop did not open for the order; check it in Stripe and refund it",
        )
        result.outcome, result.flagged = "flagged: session not opened for this order", True
        log.warning(
            "payment from a session not opened for the order",
            extra={"order_id": order.id, "session_id": session_id, "source": origin.source},
        )
        return result
    if amount != order.total or currency != order.currency:
        flag_order(
            s,
            order,
            f"payment of {amount} {currency} does not match the order total {order.total} {order.currency} (session {session_id})",
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
    change = change_status(s, order, st.PAID, source=origin.source)
    if change is None:  # cancelled: money arrived for an order nobody will make
        flag_order(s, order, _paid_while_closed(intent or session_id, amount, currency, order))
        order.amount_paid = amount
        order.payment_intent_id = intent or order.payment_intent_id
        s.add(order)
        result.outcome, result.flagged = f"flagged: paid while {order.status}", True
        log.warning(
            "payment for a closed order", extra={"order_id": order.id, "status": order.status}
        )
        return result
    order.amount_paid = amount
    order.payment_intent_id = intent or order.payment_intent_id
    s.add(order)
    result.changes.append(change)
    result.outcome = "paid"
    return result


def _paid_while_closed(payment: Any, amount: Any, currency: str, order: models.Order) -> str:
    """The flag of a payment taken for a cancelled order."""
    return (
        f"payment {payment} of {amount} {currency} arrived after the order was {order.status}; "
        "refund it"
    )


def _session_ended(s: Session, obj: dict[str, Any], target: str, origin: Origin) -> EventResult:
    """Failed or expired session: only the order's current session can move it (an old,
    replaced session expiring says nothing about the new one)."""
    order, shop = _order_and_shop(s, _order_id_of(obj))
    if order is None or shop is None:
        return EventResult(outcome="no matching order")
    issued = issued_session(s, order, shop, obj.get("id"))
    refused = foreign_reason(origin, *_expected(origin, shop, issued))
    if refused:
        return _refuse(order, origin, refused, obj)
    result = EventResult(order_id=order.id)
    if issued is None or obj.get("id") != order.checkout_session_id:
        result.outcome = f"{target} ignored: not the current session"
        return result
    change = change_status(s, order, target, source=origin.source)
    result.outcome = target if change else f"{target} ignored in {order.status}"
    if change:
        result.changes.append(change)
    return result


def _refunded(s: Session, charge: dict[str, Any], origin: Origin) -> EventResult:
    intent = charge.get("payment_intent")
    intent = intent if isinstance(intent, str) and intent else None
    found = None
    if intent:
        found = s.exec(
            select(models.Order.id).where(models.Order.payment_intent_id == intent)
        ).first()
    order, shop = _order_and_shop(s, found or _order_id_of(charge))
    if order is None or shop is None:
        return EventResult(outcome="no matching order")
    refused = foreign_reason(origin, order_accounts(s, order, shop), origin.live_key)
    if refused:
        return _refuse(order, origin, refused, charge)
    result = EventResult(order_id=order.id)
    if intent and order.payment_intent_id and intent != order.payment_intent_id:
        # Found through the metadata: a refund of some other payment (a duplicate one, say).
        result.outcome = f"refund of another payment ({intent}) ignored"
        return result
    amount, refunded = charge.get("amount"), charge.get("amount_refunded")
    if charge.get("refunded") is not True and isinstance(amount, int) and refunded != amount:
        flag_order(s, order, f"partially refunded: {refunded} of {amount} {order.currency}")
        result.outcome, result.flagged = "partial refund", True
        return result
    if order.status == st.CANCELLED and intent and intent == order.payment_intent_id:
        return _refunded_while_cancelled(s, order, intent, result)
    change = change_status(s, order, st.REFUNDED, source=origin.source)
    result.outcome = "refunded" if change else f"refund ignored in {order.status}"
    if change:
        result.changes.append(change)
    return result


REFUNDED_IN_FULL = "refunded in full"


def _refunded_while_cancelled(
    s: Session, order: models.Order, intent: str, result: EventResult
) -> EventResult:
    """The payment taken after the order was cancelled (flagged "refund it") was refunded in
    full: the order stays cancelled, and its flag says so. The flag is resolved when that
    payment was its only reason; otherwise it stays up for the other one."""
    reason = order.flag_reason or ""
    if REFUNDED_IN_FULL in reason:
        result.outcome = "refund already recorded"
        return result
    if reason == _paid_while_closed(intent, order.amount_paid, order.currency, order):
        order.flag_reason = f"{reason} — {REFUNDED_IN_FULL}"
        order.flagged = False
    else:
        order.flag_reason = f"{reason}; payment {intent} {REFUNDED_IN_FULL}"[:2000]
    order.updated_at = utcnow()
    s.add(order)
    result.outcome, result.flagged = "refund recorded: the order stays cancelled", True
    log.info("refund of a payment taken after cancelling", extra={"order_id": order.id})
    return result
