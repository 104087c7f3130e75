"""The checkout sessions this server opened for each order.

Every session a checkout creates is listed (``models.IssuedCheckout``), also the ones a changed
cart replaced, with the Connect account it was opened on. A payment event counts only for a
session listed for its order (see ``webhook.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from server import models
from server.ids import utcnow


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
