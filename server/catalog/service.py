"""Catalog commands (import, availability) and queries (menu, preview, menu JSON).

A good upload becomes a new, immutable ``Catalog`` version with its ``Product`` rows, written
in one transaction, and becomes the shop's live version. Older versions are kept so an order
always shows the prices it was placed at. Only availability changes in place; it bumps
``Shop.menu_revision``, which is part of the menu cache key and of the menu's ETag.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, func
from sqlmodel import Session, select

from server import models
from server.catalog.model import Menu, OptionGroup, Product
from server.catalog.parse import MAX_BYTES, ParseResult, parse_catalog
from server.errors import CatalogInvalid, NotFound, PayloadTooLarge


@dataclass(frozen=True)
class ImportResult:
    version: int
    products: int
    warnings: list[dict[str, Any]] = field(default_factory=list)
    format: str = "csv"


# ---------------------------------------------------------------- commands


def check_catalog(data: bytes, filename: str, currency: str) -> ParseResult:
    """Parse and raise: PayloadTooLarge over the size limit, CatalogInvalid with every
    line-numbered problem, or when the file has no products."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_BYTES // 2**20} MB.")
    result = parse_catalog(data, filename, currency)
    if result.errors:
        n = len(result.errors)
        raise CatalogInvalid(
            f"The catalog has {n} problem{'s' if n != 1 else ''}; nothing was changed.",
            errors=result.errors,
            warnings=result.warnings,
        )
    if not result.products:
        raise CatalogInvalid(
            "The catalog has no products; nothing was changed.",
            errors=[{"line": None, "column": None, "message": "no products found"}],
            warnings=result.warnings,
        )
    return result


def import_catalog(
    session: Session,
    shop: models.Shop,
    data: bytes,
    filename: str,
    *,
    parsed: ParseResult | None = None,
) -> ImportResult:
    """Make ``data`` the shop's new live catalog version, or raise CatalogInvalid (nothing is
    written). Pass ``parsed`` (from :func:`check_catalog`) to parse outside the transaction."""
    result = parsed or check_catalog(data, filename, shop.currency)
    # Lock the shop row (PostgreSQL) so concurrent uploads get consecutive versions.
    session.exec(select(models.Shop.id).where(models.Shop.id == shop.id).with_for_update()).first()
    latest = session.exec(
        select(func.max(models.Catalog.version)).where(models.Catalog.shop_id == shop.id)
    ).one()
    version = (latest or 0) + 1
    catalog = models.Catalog(
        shop_id=shop.id,
        version=version,
        source_name=filename[:255],
        source_format=result.format,
        product_count=len(result.products),
        warnings=result.warnings,
    )
    session.add(catalog)
    session.flush()
    _insert_products(session, catalog.id, result.products)  # type: ignore[arg-type]
    shop.live_catalog_version = version
    session.add(shop)
    session.flush()
    return ImportResult(version, len(result.products), result.warnings, result.format)


def set_product_available(
    session: Session, shop: models.Shop, product_id: str, available: bool
) -> Product:
    """Mark a product of the live version available or sold out. NotFound when it is not in
    the live catalog."""
    # Lock the shop row and re-read it: two toggles at once must give two revisions.
    session.refresh(shop, with_for_update=True)
    catalog = _catalog_row(session, shop.id, shop.live_catalog_version)
    row = None
    if catalog is not None:
        row = session.exec(
            select(models.Product).where(
                models.Product.catalog_id == catalog.id, models.Product.product_id == product_id
            )
        ).first()
    if row is None:
        raise NotFound("No such product in the live catalog.")
    if row.available != available:
        row.available = available
        shop.menu_revision = (shop.menu_revision or 0) + 1
        session.add_all([row, shop])
        session.flush()
        _forget(shop.id)
    return _product(
        row.product_id,
        row.name,
        row.price,
        row.category,
        row.description,
        row.options,
        row.tags,
        row.available,
        row.image_url,
    )


# ---------------------------------------------------------------- queries

_CACHE_SIZE = 128
_cache: OrderedDict[tuple[str, int, int], Menu] = OrderedDict()
_cache_lock = threading.Lock()


def load_menu(session: Session, shop_id: str, version: int | None = None) -> Menu | None:
    """The shop's menu: the live version when ``version`` is None. None when the shop or the
    version does not exist. Parsed menus are cached in-process (versions are immutable and
    availability is covered by ``menu_revision`` in the key)."""
    shop = session.get(models.Shop, shop_id)
    if shop is None:
        return None
    wanted = shop.live_catalog_version if version is None else version
    if wanted is None:
        return None
    key = (shop_id, wanted, shop.menu_revision or 0)
    with _cache_lock:
        menu = _cache.get(key)
        if menu is not None:
            _cache.move_to_end(key)
            return menu
    catalog = _catalog_row(session, shop_id, wanted)
    if catalog is None:
        return None
    P = models.Product
    # Options and tags come back as JSON text, decoded once per distinct value: products of a
    # menu share a few option sets, and decoding dominates loading a large catalog.
    rows = session.execute(
        select(
            P.product_id, P.name, P.price, P.category, P.description,
            cast(P.options, Text), cast(P.tags, Text), P.available, P.image_url,
        )
        .where(P.catalog_id == catalog.id)
        .order_by(P.position)
    ).all()  # fmt: skip
    groups: dict[str, tuple[OptionGroup, ...]] = {}
    tags: dict[str, tuple[str, ...]] = {}
    products = []
    for (
        pid,
        name,
        price,
        category,
        description,
        options_text,
        tags_text,
        available,
        image_url,
    ) in rows:
        if options_text not in groups:
            groups[options_text] = tuple(
                OptionGroup.from_json(g) for g in json.loads(options_text or "[]")
            )
        if tags_text not in tags:
            tags[tags_text] = tuple(json.loads(tags_text or "[]"))
        products.append(
            Product(
                pid,
                name,
                price,
                category,
                description,
                groups[options_text],
                tags[tags_text],
                available,
                image_url,
            )
        )
    menu = Menu(shop_id=shop_id, currency=shop.currency, version=wanted, products=tuple(products))
    with _cache_lock:
        _cache[key] = menu
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return menu


def menu_etag(shop: models.Shop) -> str:
    """Changes with the live version, availability, and the shop fields the menu JSON shows."""
    parts = [
        shop.id,
        str(shop.live_catalog_version),
        str(shop.menu_revision),
        shop.name,
        shop.currency,
    ]
    parts += [shop.greeting, shop.theme_color, str(shop.paused)]
    return '"' + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24] + '"'


def menu_json(shop: models.Shop, menu: Menu | None) -> dict[str, Any]:
    """The public menu: shop name, currency, greeting and products grouped by category, in
    file order. Prices are integers in minor units."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in menu.products if menu else ():
        groups.setdefault(p.category or "Other", []).append(p.to_json())
    return {
        "shop_id": shop.id,
        "name": shop.name,
        "slug": shop.slug,
        "currency": shop.currency,
        "greeting": shop.greeting,
        "theme_color": shop.theme_color,
        "paused": shop.paused,
        "version": menu.version if menu else None,
        "categories": [{"name": name, "products": products} for name, products in groups.items()],
    }


def preview_catalog(
    session: Session, shop: models.Shop, data: bytes, filename: str
) -> dict[str, Any]:
    """What an upload would change, without writing: added, removed and changed products,
    price changes, errors and warnings."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_BYTES // 2**20} MB.")
    result = parse_catalog(data, filename, shop.currency)
    current = load_menu(session, shop.id)
    old = {p.id: p for p in current.products} if current else {}
    new = {p.id: p for p in result.products}
    changed, price_changes = [], []
    for pid, p in new.items():
        before = old.get(pid)
        if before is None:
            continue
        fields = [
            f
            for f in (
                "name",
                "price",
                "category",
                "description",
                "options",
                "tags",
                "available",
                "image_url",
            )
            if getattr(before, f) != getattr(p, f)
        ]
        if fields:
            changed.append({"id": pid, "name": p.name, "fields": fields})
        if before.price != p.price:
            price_changes.append({"id": pid, "name": p.name, "old": before.price, "new": p.price})
    return {
        "valid": result.ok and bool(result.products),
        "format": result.format,
        "products": len(result.products),
        "current_version": current.version if current else None,
        "added": [{"id": pid, "name": p.name} for pid, p in new.items() if pid not in old],
        "removed": [{"id": pid, "name": p.name} for pid, p in old.items() if pid not in new],
        "changed": changed,
        "price_changes": price_changes,
        "errors": result.errors,
        "warnings": result.warnings,
    }


# ---------------------------------------------------------------- helpers


_PRODUCT_COLUMNS = (
    "catalog_id", "product_id", "position", "name", "category", "description",
    "price", "options", "tags", "available", "image_url",
)  # fmt: skip


def _insert_products(session: Session, catalog_id: int, products: list[Product]) -> None:
    """One DB-API ``executemany`` of plain tuples (SQLAlchemy's per-row parameter processing
    costs more than the insert itself at 10,000 rows). Options and tags are serialised once per
    distinct value: products share option sets, and ``parse_options`` hands back the same
    objects. On PostgreSQL the JSON text is cast to ``json``."""
    postgres = session.get_bind().dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    json_mark = "%s::json" if postgres else "?"
    marks = [json_mark if c in ("options", "tags") else mark for c in _PRODUCT_COLUMNS]
    table = models.Product.__tablename__
    columns = ", ".join(f'"{c}"' for c in _PRODUCT_COLUMNS)
    sql = f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join(marks)})'

    texts: dict[int, str] = {}
    keep: list[object] = []  # keeps memo keys (object ids) alive while the memo is in use

    def text_of(value: tuple[Any, ...], encode: Any) -> str:
        key = id(value)
        if key not in texts:
            keep.append(value)
            texts[key] = json.dumps(encode(value))
        return texts[key]

    def group_json(groups: tuple[OptionGroup, ...]) -> list[dict[str, Any]]:
        return [g.to_json() for g in groups]

    rows = [
        (
            catalog_id, p.id, position, p.name, p.category, p.description, p.price,
            text_of(p.options, group_json), text_of(p.tags, list), p.available, p.image_url,
        )
        for position, p in enumerate(products)
    ]  # fmt: skip
    session.connection().exec_driver_sql(sql, rows)


def _catalog_row(session: Session, shop_id: str, version: int | None) -> models.Catalog | None:
    if version is None:
        return None
    return session.exec(
        select(models.Catalog).where(
            models.Catalog.shop_id == shop_id, models.Catalog.version == version
        )
    ).first()


def _product(
    pid: str, name: str, price: int, category: str, description: str,
    options: list[dict[str, Any]], tags: list[str], available: bool, image_url: str | None,
) -> Product:  # fmt: skip
    return Product(
        id=pid,
        name=name,
        price=price,
        category=category,
        description=description,
        options=tuple(OptionGroup.from_json(g) for g in options or ()),
        tags=tuple(tags or ()),
        available=available,
        image_url=image_url,
    )


def _forget(shop_id: str) -> None:
    with _cache_lock:
        for key in [k for k in _cache if k[0] == shop_id]:
            del _cache[key]
