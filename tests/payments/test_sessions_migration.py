"""Migration 0003: orders that had a checkout session before sessions were listed keep it
payable (the upgrade lists each order's current session, with the shop's Connect account)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from server import models
from server.db import Database
from server.migrate import downgrade, upgrade
from tests.payments.factory import make_order, make_shop


def test_upgrade_lists_the_sessions_orders_already_hold(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    upgrade(url)
    db = Database(url)
    try:
        connect = make_shop(db, stripe_account_id="acct_1Cafe")
        stripe_order, _ = make_order(
            db, connect, checkout_session_id="cs_live_1", payment_mode="stripe"
        )
        demo_order, _ = make_order(db, connect, checkout_session_id="demo_abc", payment_mode="demo")
        make_order(db, make_shop(db))  # no checkout yet: nothing to list
        downgrade(url, "0002")  # as the database was before this release
        upgrade(url)
        with db.read() as s:
            rows = {
                r.id: (r.order_id, r.gateway, r.stripe_account)
                for r in s.exec(select(models.IssuedCheckout)).all()
            }
    finally:
        db.dispose()
    assert rows == {
        "cs_live_1": (stripe_order.id, "stripe", "acct_1Cafe"),
        "demo_abc": (demo_order.id, "demo", ""),
    }
