"""The checkout sessions this server opened for each order.

Every session a checkout creates is listed (``models.IssuedCheckout``), also the ones a changed
cart replaced, with the Connect account it was opened on. A payment event counts only for a
session listed for its order (see ``webhook.py``); a cancelled order's sessions are expired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from server import models
from server.db import Database
from server.errors import UpstreamError
from server.ids import utcnow
from server.payments.gateway import Payments

log = logging.getLogger("shop_assist.payments")

# Sessions opened this recently may still be open at Stripe: they live 30 minutes plus a
# minute of slack (see checkout.py), so this covers them with room to spare.
OPEN_SESSION_AGE = timedelta(minutes=40)


@dataclass(frozen=True)
class IssuedSession:
    """A checkout session as this server opened it: its gateway and Connect account."""

    gateway: str  # stripe | demo
    account: str | None


def record_issued(s: Session, order_id: str, session_id: str, gateway: str, account: str) -> None:
    """List the session as opened for the order (once; racing clicks get the same session)."""
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(models.IssuedCheckout)
        .values(
            id=session_id,
            order_id=order_id,
            gateway=gateway,
            stripe_account=account,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    s.connection().execute(stmt)


def issued_session(
    s: Session, order: models.Order, shop: models.Shop, session_id: Any
) -> IssuedSession | None:
    """The session ``session_id`` as this server opened it for ``order``; None if it never did
    (another order's session, or one opened by someone else)."""
    if not isinstance(session_id, str) or not session_id:
        return None
    row = s.get(models.IssuedCheckout, session_id)
    if row is not None:
        if row.order_id != order.id:
            return None
        return IssuedSession(row.gateway, row.stripe_account or None)
    if session_id == order.checkout_session_id:  # stored on the order by our own checkout
        if order.payment_mode == "demo":
            return IssuedSession("demo", None)
        return IssuedSession("stripe", shop.stripe_account_id or None)
    return None


def order_accounts(s: Session, order: models.Order, shop: models.Shop) -> set[str | None]:
    """The Connect accounts the order's Stripe checkouts ran on (the shop's current one if none
    is recorded)."""
    rows = s.exec(
        select(models.IssuedCheckout.stripe_account).where(
            models.IssuedCheckout.order_id == order.id, models.IssuedCheckout.gateway == "stripe"
        )
    ).all()
    return {a or None for a in rows} or {shop.stripe_account_id or None}


def _recent_sessions(db: Database, order_id: str, now: datetime) -> list[tuple[str, str]]:
    """Stripe sessions of the order that may still be open: ``(session_id, account)``."""
    with db.read() as s:
        order = s.get(models.Order, order_id)
        if order is None:
            return []
        rows = s.exec(
            select(models.IssuedCheckout)
            .where(
                models.IssuedCheckout.order_id == order_id,
                models.IssuedCheckout.gateway == "stripe",
                col(models.IssuedCheckout.created_at) >= now - OPEN_SESSION_AGE,
            )
            .order_by(col(models.IssuedCheckout.created_at))
        ).all()
        found = [(r.id, r.stripe_account) for r in rows]
        current = order.checkout_session_id
        if current and order.payment_mode == "stripe" and current not in {i for i, _ in found}:
            shop = s.get(models.Shop, order.shop_id)
            found.append((current, shop.stripe_account_id if shop else ""))
        return found


async def close_checkouts(
    db: Database, payments: Payments, order_id: str, *, request_id: str = ""
) -> bool:
    """Expire the order's checkout sessions that may still take a payment (it was cancelled).

    Best effort, after the cancellation is committed: False when Stripe could not be reached for
    one of them. A payment that still gets through is flagged for a refund by
    :func:`server.payments.webhook.settle_session`. Demo sessions need nothing: the demo page
    takes no payment for a cancelled order."""
    sessions = await run_in_threadpool(_recent_sessions, db, order_id, utcnow())
    if not sessions or payments.name != "stripe":
        return True
    closed = True
    for session_id, account in sessions:
        try:
            await payments.expire(session_id, account or None)
        except UpstreamError as err:
            closed = False
            log.warning(
                "checkout of a cancelled order could not be expired",
                extra={
                    "request_id": request_id,
                    "order_id": order_id,
                    "session_id": session_id,
                    "detail": err.message,
                },
            )
    return closed
