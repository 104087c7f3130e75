"""Order numbers: each shop numbers its orders 1, 2, 3... with no two alike, also when several
workers create orders at once (SQLite and PostgreSQL), and migration 0004 numbers the orders
a database already holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from server import models
from server.db import Database
from server.migrate import downgrade, upgrade
from server.orders.create import create_order, order_to_json, price_items
from tests.orders.test_create import MENU, make_shop

LINES = price_items(MENU, [{"product_id": "latte", "quantity": 1}])


def new_order(db: Database, shop: models.Shop) -> models.Order:
    with db.write() as s:
        return create_order(s, shop=shop, menu=MENU, lines=LINES)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind (PostgreSQL only when TEST_DATABASE_URL is set)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_database_url"))
    return f"sqlite:///{tmp_path}/numbers.db"


@pytest.fixture
def migrated_db(empty_db_url: str) -> Iterator[Database]:
    upgrade(empty_db_url)
    database = Database(empty_db_url)
    yield database
    database.dispose()


def test_each_shop_numbers_its_orders_from_one(db: Database) -> None:
    cafe, bakery = make_shop(db), make_shop(db)
    numbers = [
        new_order(db, cafe).number,
        new_order(db, cafe).number,
        new_order(db, bakery).number,
        new_order(db, cafe).number,
        new_order(db, bakery).number,
    ]
    assert numbers == [1, 2, 1, 3, 2]
    with db.read() as s:
        stored = s.exec(select(models.Order).where(models.Order.shop_id == cafe.id)).all()
        assert sorted(o.number for o in stored) == [1, 2, 3]
        shop = s.get(models.Shop, cafe.id)
        assert shop is not None and shop.order_seq == 3


def test_the_order_json_carries_the_number_beside_the_id(db: Database) -> None:
    shop = make_shop(db)
    new_order(db, shop)
    data = order_to_json(new_order(db, shop))
    assert data["number"] == 2
    assert data["order_id"].startswith("ord_")


def test_an_order_that_was_not_stored_uses_no_number(db: Database) -> None:
    shop = make_shop(db)
    with pytest.raises(RuntimeError), db.write() as s:
        create_order(s, shop=shop, menu=MENU, lines=LINES)
        raise RuntimeError("the transaction fails after the order was made")
    assert new_order(db, shop).number == 1


def test_a_shop_row_in_the_same_session_sees_its_counter_move(db: Database) -> None:
    shop = make_shop(db)
    with db.write() as s:
        live = s.get(models.Shop, shop.id)
        assert live is not None
        first = create_order(s, shop=live, menu=MENU, lines=LINES)
        live.greeting = "Hello"  # a later flush of the shop must not write an old counter
        s.flush()
        second = create_order(s, shop=live, menu=MENU, lines=LINES)
        assert (first.number, second.number, live.order_seq) == (1, 2, 2)
    assert new_order(db, shop).number == 3


def test_concurrent_orders_get_distinct_consecutive_numbers(migrated_db: Database) -> None:
    """20 threads create orders of one shop at once (a second shop beside them): every order
    is stored, and each shop's numbers are exactly 1..n."""
    cafe, bakery = make_shop(migrated_db), make_shop(migrated_db)
    start = threading.Barrier(24)
    errors: list[BaseException] = []

    def worker(shop: models.Shop) -> None:
        try:
            start.wait(timeout=30)
            new_order(migrated_db, shop)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(cafe,)) for _ in range(20)]
    threads += [threading.Thread(target=worker, args=(bakery,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with migrated_db.read() as s:
        rows = s.exec(select(models.Order.shop_id, models.Order.number)).all()
    assert sorted(n for shop_id, n in rows if shop_id == cafe.id) == list(range(1, 21))
    assert sorted(n for shop_id, n in rows if shop_id == bakery.id) == [1, 2, 3, 4]
    assert new_order(migrated_db, cafe).number == 21


def test_the_database_refuses_a_second_order_with_the_same_number(db: Database) -> None:
    shop = make_shop(db)
    taken = new_order(db, shop)
    with pytest.raises(IntegrityError, match=r"(?i)unique"), db.write() as s:
        order = create_order(s, shop=shop, menu=MENU, lines=LINES)
        order.number = taken.number
        s.flush()


def test_migration_numbers_existing_orders_per_shop_in_creation_order(
    empty_db_url: str,
) -> None:
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        cafe, bakery, empty = make_shop(db), make_shop(db), make_shop(db)
        cafe_orders = [new_order(db, cafe) for _ in range(3)]
        bakery_orders = [new_order(db, bakery) for _ in range(2)]
        with db.write() as s:
            s.add(
                models.OrderStatusChange(
                    order_id=cafe_orders[0].id, from_status="awaiting_payment", to_status="paid"
                )
            )
        downgrade(empty_db_url, "0003")  # the database as it was before order numbers
        # Created in another order than inserted: the numbers follow the creation times.
        created = {
            cafe_orders[0].id: datetime(2026, 1, 1, 12, 5, tzinfo=UTC),
            cafe_orders[1].id: datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
            cafe_orders[2].id: datetime(2026, 1, 1, 12, 9, tzinfo=UTC),
            bakery_orders[0].id: datetime(2026, 1, 1, 11, 0, tzinfo=UTC),
            bakery_orders[1].id: datetime(2026, 1, 1, 10, 0, tzinfo=UTC),
        }
        with db.engine.begin() as conn:
            for order_id, at in created.items():
                conn.execute(
                    text('UPDATE "order" SET created_at = :at WHERE id = :id'),
                    {"at": at, "id": order_id},
                )
        db.dispose()
        upgrade(empty_db_url)
        db = Database(empty_db_url)
        with db.read() as s:
            numbers = {o.id: o.number for o in s.exec(select(models.Order)).all()}
            seqs = {shop.id: shop.order_seq for shop in s.exec(select(models.Shop)).all()}
            history = [(h.order_id, h.to_status) for h in s.exec(select(models.OrderStatusChange))]
        assert numbers == {
            cafe_orders[1].id: 1,
            cafe_orders[0].id: 2,
            cafe_orders[2].id: 3,
            bakery_orders[1].id: 1,
            bakery_orders[0].id: 2,
        }
        assert seqs == {cafe.id: 3, bakery.id: 2, empty.id: 0}
        # Nothing that refers to an order was lost on the way down and up again.
        assert history == [(cafe_orders[0].id, "paid")]
        assert [new_order(db, shop).number for shop in (cafe, bakery, empty)] == [4, 3, 1]
    finally:
        db.dispose()
