"""Catalog commands and queries against a real (SQLite) database."""

from __future__ import annotations

import pytest
from sqlmodel import select

from server.catalog import service
from server.catalog.service import (
    import_catalog,
    load_menu,
    menu_etag,
    menu_json,
    preview_catalog,
    set_product_available,
)
from server.db import Database
from server.errors import CatalogInvalid, NotFound, PayloadTooLarge
from server.models import Catalog, Product, Shop
from server.shops.service import create_shop

V1 = b"name,price,category,options\nLatte,4.50,Coffee,Size: S | L +0.50\nTea,3,Tea,\nScone,2.75,,\n"
V2 = b"name,price,category\nLatte,4.75,Coffee\nMocha,5,Coffee\n"


@pytest.fixture
def shop_id(db: Database) -> str:
    with db.write() as s:
        return create_shop(s, name="Corner Cafe").id


def _import(db: Database, shop_id: str, data: bytes) -> service.ImportResult:
    with db.write() as s:
        shop = s.get(Shop, shop_id)
        return import_catalog(s, shop, data, "menu.csv")


def test_import_creates_a_live_version(db: Database, shop_id: str) -> None:
    result = _import(db, shop_id, V1)
    assert (result.version, result.products) == (1, 3)
    with db.read() as s:
        menu = load_menu(s, shop_id)
    assert menu is not None and menu.version == 1
    assert [p.id for p in menu.products] == ["latte", "tea", "scone"]
    assert menu.get("latte").options[0].choices[1].price_delta == 50  # type: ignore[union-attr]


def test_versions_are_kept_and_old_prices_stay_readable(db: Database, shop_id: str) -> None:
    _import(db, shop_id, V1)
    assert _import(db, shop_id, V2).version == 2
    with db.read() as s:
        live = load_menu(s, shop_id)
        old = load_menu(s, shop_id, version=1)
        assert load_menu(s, shop_id, version=9) is None
        assert len(s.exec(select(Catalog).where(Catalog.shop_id == shop_id)).all()) == 2
    assert live.get("latte").price == 475  # type: ignore[union-attr]
    assert old.get("latte").price == 450  # type: ignore[union-attr]
    assert old.get("tea") is not None and live.get("tea") is None  # type: ignore[union-attr]


def test_rejected_file_leaves_the_live_catalog_untouched(db: Database, shop_id: str) -> None:
    _import(db, shop_id, V1)
    with pytest.raises(CatalogInvalid) as info:
        _import(db, shop_id, b"name,price\nLatte,abc\nTea,-1\n")
    assert [e["line"] for e in info.value.errors] == [2, 3]
    with db.read() as s:
        assert s.get(Shop, shop_id).live_catalog_version == 1  # type: ignore[union-attr]
        assert len(s.exec(select(Catalog)).all()) == 1
        assert load_menu(s, shop_id).version == 1  # type: ignore[union-attr]


def test_empty_and_oversized_files(db: Database, shop_id: str) -> None:
    with pytest.raises(CatalogInvalid, match="no products"):
        _import(db, shop_id, b"name,price\n")
    with pytest.raises(PayloadTooLarge):
        _import(db, shop_id, b"x" * (5 * 1024 * 1024 + 1))


def test_availability_changes_in_place_and_refreshes_the_cache(db: Database, shop_id: str) -> None:
    _import(db, shop_id, V1)
    with db.read() as s:
        shop = s.get(Shop, shop_id)
        before_etag = menu_etag(shop)  # type: ignore[arg-type]
        assert load_menu(s, shop_id).get("tea").available  # type: ignore[union-attr]
    with db.write() as s:
        shop = s.get(Shop, shop_id)
        product = set_product_available(s, shop, "tea", False)  # type: ignore[arg-type]
        assert product.available is False
    with db.read() as s:
        shop = s.get(Shop, shop_id)
        assert load_menu(s, shop_id).get("tea").available is False  # type: ignore[union-attr]
        assert menu_etag(shop) != before_etag  # type: ignore[arg-type]
        row = s.exec(select(Product).where(Product.product_id == "tea")).one()
        assert row.available is False
    with db.write() as s, pytest.raises(NotFound):
        set_product_available(s, s.get(Shop, shop_id), "nope", False)  # type: ignore[arg-type]


def test_menu_json_groups_by_category_with_minor_units(db: Database, shop_id: str) -> None:
    _import(db, shop_id, V1)
    with db.read() as s:
        shop = s.get(Shop, shop_id)
        body = menu_json(shop, load_menu(s, shop_id))  # type: ignore[arg-type]
    assert body["name"] == "Corner Cafe"
    assert body["currency"] == "usd"
    assert [c["name"] for c in body["categories"]] == ["Coffee", "Tea", "Other"]
    latte = body["categories"][0]["products"][0]
    assert latte["price"] == 450
    assert latte["options"][0]["choices"][1] == {"name": "L", "price_delta": 50}


def test_preview_shows_what_would_change_without_writing(db: Database, shop_id: str) -> None:
    _import(db, shop_id, V1)
    with db.read() as s:
        shop = s.get(Shop, shop_id)
        preview = preview_catalog(s, shop, V2, "menu.csv")  # type: ignore[arg-type]
    assert preview["valid"] is True
    assert preview["added"] == [{"id": "mocha", "name": "Mocha"}]
    assert {r["id"] for r in preview["removed"]} == {"tea", "scone"}
    assert preview["price_changes"] == [{"id": "latte", "name": "Latte", "old": 450, "new": 475}]
    assert preview["changed"][0]["id"] == "latte"
    with db.read() as s:
        assert s.get(Shop, shop_id).live_catalog_version == 1  # type: ignore[union-attr]
        bad = preview_catalog(s, s.get(Shop, shop_id), b"name,price\nA,x\n", "m.csv")  # type: ignore[arg-type]
    assert bad["valid"] is False and bad["errors"][0]["line"] == 2


def test_ten_thousand_rows_are_bulk_inserted(db: Database, shop_id: str) -> None:
    rows = "".join(f"Item {i},{i % 50}.25,Cat {i % 7},Size: S | L +0.50\n" for i in range(10_000))
    result = _import(db, shop_id, ("name,price,category,options\n" + rows).encode())
    assert result.products == 10_000
    with db.read() as s:
        menu = load_menu(s, shop_id)
    assert len(menu.products) == 10_000  # type: ignore[union-attr]


@pytest.mark.postgres
def test_import_versions_and_availability_on_postgres(pg_database_url: str) -> None:
    from server.migrate import upgrade

    upgrade(pg_database_url)
    db = Database(pg_database_url)
    try:
        with db.write() as s:
            shop_id = create_shop(s, name="PG Cafe").id
        _import(db, shop_id, V1)
        _import(db, shop_id, V2)
        with pytest.raises(CatalogInvalid):
            _import(db, shop_id, b"name,price\nA,x\n")
        with db.write() as s:
            set_product_available(s, s.get(Shop, shop_id), "mocha", False)  # type: ignore[arg-type]
        with db.read() as s:
            live = load_menu(s, shop_id)
            old = load_menu(s, shop_id, version=1)
            row = s.exec(select(Product).where(Product.product_id == "latte")).first()
            assert row is not None and isinstance(row.options, list)
        assert live.version == 2 and live.get("mocha").available is False  # type: ignore[union-attr]
        assert old.get("latte").options[0].choices[1].price_delta == 50  # type: ignore[union-attr]
    finally:
        db.dispose()
