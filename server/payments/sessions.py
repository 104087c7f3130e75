"""The checkout sessions this server opened for each order.

Every session a checkout creates is listed (``models.IssuedCheckout``), also the ones a changed
cart replaced, with the gateway and Connect account it was opened on. A payment event counts
only for a session listed for its order (see ``webhook.py``). A new checkout expires the
order's earlier sessions before it is handed out (``checkout.py``); a cancelled order's
sessions are expired in the background.
"""

from __future__ import annotations

import asyncio
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
# Seconds one expire call may take when a cancelled order's sessions are closed in the
# background (Stripe's own default is 80 s with retries).
CLOSE_TIMEOUT = 5.0

_closing: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly


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


@dataclass(frozen=True)
class OpenCheckout:
    """A session of the order that may still take a payment, and where it was opened."""

    session_id: str
    gateway: str  # stripe | demo
    account: str | None


def open_checkouts(
    s: Session, order: models.Order, now: datetime, *, keep: str | None = None
) -> list[OpenCheckout]:
    """The order's sessions opened recently enough to be open still, oldest first, each with
    the gateway and Connect account it was opened on; ``keep`` is left out."""
    rows = s.exec(
        select(models.IssuedCheckout)
        .where(
            models.IssuedCheckout.order_id == order.id,
            col(models.IssuedCheckout.created_at) >= now - OPEN_SESSION_AGE,
        )
        .order_by(col(models.IssuedCheckout.created_at), col(models.IssuedCheckout.id))
    ).all()
    found = [OpenCheckout(r.id, r.gateway, r.stripe_account or None) for r in rows]
    current = order.checkout_session_id
    if current and current not in {c.session_id for c in found}:  # stored before the listing
        shop = s.get(models.Shop, order.shop_id)
        account = (shop.stripe_account_id or None) if shop else None
        gateway = "demo" if order.payment_mode == "demo" else "stripe"
        found.append(OpenCheckout(current, gateway, account if gateway == "stripe" else None))
    return [c for c in found if c.session_id != keep]


async def expire_checkouts(
    payments: Payments,
    sessions: list[OpenCheckout],
    *,
    timeout: float | None = None,
    log_extra: dict[str, Any] | None = None,
) -> list[str]:
    """Expire each Stripe session on the account it was opened on, all at once. Returns the
    ids Stripe could not be asked about (each is logged); a session that is already expired or
    completed counts as closed. Demo sessions need nothing: the demo page takes no payment but
    for the order's current session. ``timeout``: seconds per call, without retries."""
    stripe_sessions = [c for c in sessions if c.gateway == "stripe"]
    if stripe_sessions and payments.name != "stripe":
        # Stripe is no longer configured: nothing can reach those sessions. A payment on one
        # still reaches the webhook and is flagged there.
        log.warning(
            "stripe checkouts left open: payments run without Stripe now",
            extra={**(log_extra or {}), "sessions": [c.session_id for c in stripe_sessions]},
        )
        return []

    async def expire(session: OpenCheckout) -> str | None:
        try:
            await payments.expire(session.session_id, session.account, timeout=timeout)
        except UpstreamError as err:
            log.warning(
                "checkout session could not be expired",
                extra={
                    **(log_extra or {}),
                    "session_id": session.session_id,
                    "detail": err.message,
                },
            )
            return session.session_id
        return None

    failed = await asyncio.gather(*(expire(c) for c in stripe_sessions))
    return [sid for sid in failed if sid is not None]


def _recent_sessions(db: Database, order_id: str, now: datetime) -> list[OpenCheckout]:
    with db.read() as s:
        order = s.get(models.Order, order_id)
        return open_checkouts(s, order, now) if order is not None else []


async def close_checkouts(
    db: Database, payments: Payments, order_id: str, *, request_id: str = ""
) -> bool:
    """Expire the order's checkout sessions that may still take a payment (it was cancelled).

    Best effort, after the cancellation is committed and announced: each call gives up after
    :data:`CLOSE_TIMEOUT` seconds, without retries. False when Stripe could not be reached for
    one of them. A payment that still gets through is flagged for a refund by
    :func:`server.payments.webhook.settle_session`."""
    sessions = await run_in_threadpool(_recent_sessions, db, order_id, utcnow())
    extra = {"request_id": request_id, "order_id": order_id}
    failed = await expire_checkouts(payments, sessions, timeout=CLOSE_TIMEOUT, log_extra=extra)
    return not failed


def close_checkouts_soon(
    db: Database, payments: Payments, order_id: str, *, request_id: str = ""
) -> None:
    """:func:`close_checkouts` in the background: the owner's request does not wait on Stripe.
    Any error is logged, never raised."""

    async def run() -> None:
        try:
            await close_checkouts(db, payments, order_id, request_id=request_id)
        except Exception:
            log.exception(
                "closing the checkouts of a cancelled order failed",
                extra={"request_id": request_id, "order_id": order_id},
            )

    task = asyncio.get_running_loop().create_task(run(), name="close-checkouts")
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def wait_for_closing(timeout: float = 60.0) -> None:
    """Wait for this loop's background :func:`close_checkouts_soon` tasks (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    pending = [t for t in _closing if not t.done() and t.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
