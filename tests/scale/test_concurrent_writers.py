"""50 writers at once on one SQLite file (webhook deliveries and cart updates): no
"database is locked", no lost update, every order paid exactly once."""

from __future__ import annotations

import threading
from typing import Any

from sqlmodel import func, select

from server import models
from server.db import Database
from server.ids import new_id
from server.payments.webhook import record_event
from server.settings import Settings
from tests.scale.seed import seed_order, seed_shop

WRITERS = 50
WEBHOOK_WRITERS = 25
ORDERS = 10
CART_UPDATES_EACH = 8


def paid_event(event_id: str, order_id: str, total: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "checkout.session.completed",
        "livemode": False,
        "data": {
            "object": {
                "id": f"cs_{order_id}",
                "object": "checkout.session",
                "metadata": {"order_id": order_id},
                "payment_status": "paid",
                "amount_total": total,
                "currency": "usd",
                "payment_intent": f"pi_{order_id}",
            }
        },
    }


def add_to_cart(db: Database, thread_id: str, writer: int) -> None:
    """A read-modify-write like a waiter's add_to_cart: cart line + next stream event id.
    SQLite serialises it with BEGIN IMMEDIATE; PostgreSQL needs the row lock (FOR UPDATE)."""
    with db.write() as s:
        thread = s.get(models.Thread, thread_id, with_for_update=True)
        assert thread is not None
        lines = list(thread.cart.get("lines", []))
        lines.append({"line_id": f"l{len(lines) + 1}", "writer": writer})
        thread.cart = {**thread.cart, "lines": lines}
        thread.last_seq += 1
        s.add(
            models.ThreadEvent(
                thread_id=thread_id, seq=thread.last_seq, event="cart", data={"n": len(lines)}
            )
        )
        s.add(thread)


def test_fifty_concurrent_writers_on_sqlite(db: Database, settings: Settings) -> None:
    shop_id, _ = seed_shop(db)
    orders = [seed_order(db, settings, shop_id)[0] for _ in range(ORDERS)]
    with db.write() as s:  # each order's Stripe checkout session, as the checkout stores it
        for o in s.exec(select(models.Order)).all():
            o.checkout_session_id, o.payment_mode = f"cs_{o.id}", "stripe"
            s.add(o)
    with db.read() as s:
        totals = {o.id: o.total for o in s.exec(select(models.Order)).all()}
    thread_ids = [new_id("thr") for _ in range(5)]
    with db.write() as s:
        for tid in thread_ids:
            s.add(models.Thread(id=tid, shop_id=shop_id, token_hash="x" * 64, cart={"lines": []}))

    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def webhook_writer(i: int) -> None:
        barrier.wait()
        # Every order gets deliveries from several writers; ids repeat (Stripe redelivers).
        for k in range(ORDERS):
            order_id = orders[(i + k) % ORDERS]
            record_event(
                db,
                paid_event(f"evt_{order_id}_{i % 3}", order_id, totals[order_id]),
                live_key=False,
            )

    def cart_writer(i: int) -> None:
        barrier.wait()
        for _ in range(CART_UPDATES_EACH):
            add_to_cart(db, thread_ids[i % len(thread_ids)], i)

    def guarded(fn: Any, i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(
            target=guarded, args=(webhook_writer if i < WEBHOOK_WRITERS else cart_writer, i)
        )
        for i in range(WRITERS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)

    assert not any(w.is_alive() for w in workers)
    assert [repr(e) for e in errors] == []  # in particular no "database is locked"
    with db.read() as s:
        statuses = {o.id: o.status for o in s.exec(select(models.Order)).all()}
        stored_events = s.exec(select(func.count()).select_from(models.PaymentEvent)).one()
        paid_moves = s.exec(
            select(func.count())
            .select_from(models.OrderStatusChange)
            .where(models.OrderStatusChange.to_status == "paid")
        ).one()
        threads = {
            t.id: (len(t.cart["lines"]), t.last_seq) for t in s.exec(select(models.Thread)).all()
        }
        seqs = {
            tid: sorted(
                s.exec(
                    select(models.ThreadEvent.seq).where(models.ThreadEvent.thread_id == tid)
                ).all()
            )
            for tid in thread_ids
        }
    assert set(statuses.values()) == {"paid"}
    assert stored_events == ORDERS * 3  # each distinct event id stored once, duplicates ignored
    assert paid_moves == ORDERS  # three different events per order, paid exactly once
    updates = (WRITERS - WEBHOOK_WRITERS) * CART_UPDATES_EACH
    assert sum(n for n, _ in threads.values()) == updates  # no lost update
    for tid in thread_ids:
        assert seqs[tid] == list(range(1, threads[tid][1] + 1))


def run_together(n: int, fn: Any) -> list[BaseException]:
    """``fn(i)`` from ``n`` threads released at once; the exceptions they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return errors


def test_parallel_wrong_passwords_each_count_toward_the_lockout(
    db: Database, settings: Settings
) -> None:
    from server.owners.auth import check_password_login
    from server.owners.service import create_owner

    with db.write() as s:
        create_owner(s, "ana@example.com", "correct horse battery")
    lenient = settings.with_(login_max_failures=100)

    def guess(i: int) -> None:
        with db.write() as s:
            check_password_login(s, lenient, "ana@example.com", f"wrong guess {i}")

    assert run_together(6, guess) == []
    with db.read() as s:
        assert s.exec(select(models.Owner.failed_logins)).one() == 6


def test_parallel_sold_out_toggles_each_bump_the_menu_revision(
    db: Database, settings: Settings
) -> None:
    from server.catalog.service import set_product_available

    shop_id, _ = seed_shop(db)
    products = ["espresso", "americano", "latte", "cappuccino"]
    with db.read() as s:
        before = s.get(models.Shop, shop_id).menu_revision or 0  # type: ignore[union-attr]

    def sold_out(i: int) -> None:
        with db.write() as s:
            shop = s.get(models.Shop, shop_id)
            assert shop is not None
            set_product_available(s, shop, products[i], False)

    assert run_together(len(products), sold_out) == []
    with db.read() as s:
        # Each change gets its own revision, so no worker caches a menu under a reused key.
        assert s.get(models.Shop, shop_id).menu_revision == before + len(products)  # type: ignore[union-attr]


def test_parallel_token_counts_add_up(db: Database) -> None:
    """Replies finishing at once in several workers each add their tokens to the shop's day."""
    from server.chat.threads import add_usage, usage_on

    shop_id, _ = seed_shop(db)

    def spend(i: int) -> None:
        with db.write() as s:
            add_usage(s, shop_id, "2026-01-01", 10)

    assert run_together(12, spend) == []
    with db.read() as s:
        assert usage_on(s, shop_id, "2026-01-01") == 120
