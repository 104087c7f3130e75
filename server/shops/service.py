"""Shops: creation with a unique slug, lookups, and the links an owner shares."""

from __future__ import annotations

from html import escape
from typing import Any

from sqlmodel import Session, col, select

from server.catalog.fields import slugify
from server.catalog.money import currency_problem
from server.errors import NotFound, Unprocessable
from server.ids import new_id
from server.models import Shop
from server.settings import Settings

MAX_NAME = 120


def create_shop(
    session: Session,
    *,
    name: str,
    currency: str = "usd",
    owner_id: str | None = None,
    **fields: Any,
) -> Shop:
    """A new shop named ``name`` with a unique slug (``"Demo Coffee"`` -> ``demo-coffee``,
    then ``demo-coffee-2``...). Extra ``fields`` are Shop columns (greeting, theme_color...).

    Raises Unprocessable for an empty name or a currency that is not an ISO 4217 code."""
    name = " ".join(name.split())
    if not name:
        raise Unprocessable("A shop needs a name.", field="name")
    if len(name) > MAX_NAME:
        raise Unprocessable(f"A shop name is at most {MAX_NAME} characters.", field="name")
    problem = currency_problem(currency)
    if problem:
        raise Unprocessable(problem, field="currency")
    currency = currency.strip().lower()
    shop = Shop(
        id=new_id("shp"),
        owner_id=owner_id,
        name=name,
        slug=_unique_slug(session, slugify(name, 60) or "shop"),
        currency=currency,
        **fields,
    )
    session.add(shop)
    session.flush()
    return shop


def _unique_slug(session: Session, base: str) -> str:
    taken = set(session.exec(select(Shop.slug).where(col(Shop.slug).startswith(base))).all())
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def get_shop(session: Session, shop_id: str) -> Shop:
    """The shop, or NotFound."""
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise NotFound("No such shop.")
    return shop


def get_shop_by_slug(session: Session, slug: str) -> Shop | None:
    return session.exec(select(Shop).where(Shop.slug == slug)).first()


def shop_links(settings: Settings, shop: Shop) -> dict[str, str]:
    """What the owner shares: the hosted page, the embed snippet and the QR code images."""
    base = settings.public_base_url.rstrip("/")
    return {
        "link": f"{base}/s/{shop.slug}",
        "embed_snippet": f'<script src="{base}/widget.js" data-shop="{escape(shop.id)}" async></script>',
        "qr_svg": f"{base}/api/shops/{shop.id}/qr.svg",
        "qr_png": f"{base}/api/shops/{shop.id}/qr.png",
    }
