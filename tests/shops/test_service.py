"""Shop creation (unique slugs), lookups and the links an owner shares."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from server.db import Database
from server.errors import NotFound, Unprocessable
from server.settings import Settings
from server.shops.qr import qr_png, qr_svg
from server.shops.service import create_shop, get_shop, get_shop_by_slug, shop_links


@pytest.mark.parametrize(
    ("names", "slugs"),
    [
        (["Demo Coffee"], ["demo-coffee"]),
        (
            ["Demo Coffee", "Demo Coffee", "demo  coffee!"],
            ["demo-coffee", "demo-coffee-2", "demo-coffee-3"],
        ),
        (["Café Olé"], ["cafe-ole"]),
        (["☕☕"], ["shop"]),
        (["Demo Coffee Shop", "Demo Coffee"], ["demo-coffee-shop", "demo-coffee"]),
    ],
)
def test_slugs_are_unique_and_readable(db: Database, names: list[str], slugs: list[str]) -> None:
    with db.write() as s:
        made = [create_shop(s, name=n).slug for n in names]
    assert made == slugs


def test_create_shop_keeps_fields_and_lowercases_currency(db: Database) -> None:
    with db.write() as s:
        shop = create_shop(
            s, name="  Tokyo   Ramen ", currency="JPY", owner_id=None, greeting="Irasshaimase!"
        )
    with db.read() as s:
        found = get_shop(s, shop.id)
        assert get_shop_by_slug(s, "tokyo-ramen").id == shop.id  # type: ignore[union-attr]
        assert get_shop_by_slug(s, "nope") is None
        assert (found.name, found.currency, found.greeting) == (
            "Tokyo Ramen",
            "jpy",
            "Irasshaimase!",
        )
        assert found.id.startswith("shp_")


@pytest.mark.parametrize(
    ("name", "currency", "field"),
    [
        ("", "usd", "name"),
        ("   ", "usd", "name"),
        ("x" * 121, "usd", "name"),
        ("Ok", "dollars", "currency"),
        ("Ok", "u$d", "currency"),
        ("Ok", "usb", "currency"),  # three letters, but no currency
        ("Ok", "xxx", "currency"),  # ISO's "no currency" code
        ("Ok", "xau", "currency"),  # gold
        ("Ok", "hrk", "currency"),  # withdrawn (Croatia pays in euros)
        ("Ok", "", "currency"),
    ],
)
def test_create_shop_rejects_bad_input(db: Database, name: str, currency: str, field: str) -> None:
    with db.write() as s, pytest.raises(Unprocessable) as caught:
        create_shop(s, name=name, currency=currency)
    assert caught.value.extra["field"] == field
    if field == "currency":
        assert caught.value.message.startswith("Currency ")
        assert "ISO 4217" in caught.value.message


@pytest.mark.parametrize("currency", ["usd", "EUR", " jpy ", "kwd", "isk", "mga", "chf", "xof"])
def test_create_shop_takes_real_currencies(db: Database, currency: str) -> None:
    with db.write() as s:
        assert create_shop(s, name="Ok", currency=currency).currency == currency.strip().lower()


def test_get_unknown_shop_is_not_found(db: Database) -> None:
    with db.read() as s, pytest.raises(NotFound):
        get_shop(s, "shp_missing")


def test_links(db: Database, settings: Settings) -> None:
    with db.write() as s:
        shop = create_shop(s, name="Demo Coffee")
    links = shop_links(settings.with_(public_base_url="https://shop.example.com"), shop)
    assert links == {
        "link": "https://shop.example.com/s/demo-coffee",
        "embed_snippet": f'<script src="https://shop.example.com/widget.js" data-shop="{shop.id}" async></script>',
        "qr_svg": f"https://shop.example.com/api/shops/{shop.id}/qr.svg",
        "qr_png": f"https://shop.example.com/api/shops/{shop.id}/qr.png",
    }


@pytest.mark.parametrize(
    "url",
    ["https://shop.example.com/s/demo-coffee", "http://127.0.0.1:8000/s/a-very-long-shop-name-2"],
)
def test_qr_png_decodes_to_the_url(url: str) -> None:
    (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr_png(url))))
    assert code.text == url


def test_qr_svg_is_an_svg_document() -> None:
    svg = qr_svg("https://shop.example.com/s/x").decode()
    assert "<svg" in svg and "<path" in svg


def test_qr_download_names_the_file(client, db: Database) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:
        shop = create_shop(s, name="Demo Coffee")
    r = client.get(f"/api/shops/{shop.id}/qr.svg?download=1")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="demo-coffee-qr.svg"'
    assert r.headers["cache-control"] == "public, max-age=3600"
