"""Shopify and WooCommerce product exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.catalog.model import Choice
from server.catalog.parse import parse_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def products(name: str) -> dict:  # type: ignore[type-arg]
    result = parse_catalog((EXAMPLES / name).read_bytes(), name, "usd")
    assert result.errors == []
    return {p.id: p for p in result.products}


def test_shopify_variants_become_one_group_priced_from_the_cheapest() -> None:
    beans = products("shopify_export.csv")["house-blend-beans"]
    assert beans.name == "House Blend Coffee Beans"
    assert beans.price == 1200
    (group,) = beans.options
    assert group.name == "Size / Grind"
    assert group.choices == (
        Choice("250 g / Whole bean", 0),
        Choice("250 g / Espresso grind", 0),
        Choice("1 kg / Whole bean", 2600),
    )
    assert group.default == Choice("250 g / Whole bean", 0)
    assert beans.description == "Our house blend: chocolate & caramel notes."
    assert beans.category == "Coffee Beans"
    assert beans.tags == ("coffee", "beans")
    assert beans.image_url == "https://cdn.example.com/house-blend.jpg"


def test_shopify_cheapest_variant_is_the_default_even_when_listed_later() -> None:
    text = (
        "Handle,Title,Option1 Name,Option1 Value,Variant Price\n"
        "mug,Mug,Color,Red,18\n"
        "mug,,,Blue,16\n"
    )
    (mug,) = parse_catalog(text.encode(), "x.csv", "usd").products
    assert mug.price == 1600
    assert mug.options[0].choices == (Choice("Blue", 0), Choice("Red", 200))


def test_shopify_single_default_variant_has_no_options_and_drafts_are_unavailable() -> None:
    found = products("shopify_export.csv")
    assert found["gift-card"].options == ()
    assert found["gift-card"].price == 2500
    assert found["seasonal-single-origin"].available is False
    assert found["ceramic-mug"].available is True


def test_shopify_variants_out_of_tracked_stock_are_left_out() -> None:
    text = (
        "Handle,Title,Option1 Name,Option1 Value,Variant Price,Variant Inventory Tracker,"
        "Variant Inventory Qty,Variant Inventory Policy\n"
        "tee,Tee,Size,S,20,shopify,0,deny\n"
        "tee,,,M,20,shopify,3,deny\n"
        "tee,,,L,22,shopify,0,continue\n"
        "cap,Cap,Title,Default Title,15,shopify,0,deny\n"
    )
    tee, cap = parse_catalog(text.encode(), "x.csv", "usd").products
    assert [c.name for c in tee.options[0].choices] == ["M", "L"]
    assert tee.available is True
    assert cap.available is False


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",Mug,Color,Red,18,", "Handle is empty"),
        ("mug,Mug,Color,Red,abc,", "'abc' is not a price"),
        ("mug,,Color,Red,18,", "has no name"),
        ("mug,Mug,Color,Red,,", "has no price"),
    ],
)
def test_shopify_rejections(row: str, message: str) -> None:
    text = "Handle,Title,Option1 Name,Option1 Value,Variant Price,Status\n" + row + "\n"
    result = parse_catalog(text.encode(), "x.csv", "usd")
    assert result.format == "shopify"
    assert any(message in e["message"] and e["line"] == 2 for e in result.errors), result.errors


def test_woocommerce_variable_products_and_hidden_items() -> None:
    found = products("woocommerce_export.csv")
    kit = found["DRIP-KIT"]
    assert kit.price == 2800
    assert kit.options[0].name == "Material"
    assert kit.options[0].choices == (Choice("Glass", 0), Choice("Ceramic", 400))
    assert found["TOTE-1"].price == 1400
    assert found["TOTE-1"].category == "Bags"
    assert found["TOTE-1"].tags == ("merch", "gift")
    assert found["FILTERS"].available is False  # out of stock
    assert found["SECRET"].available is False  # unpublished and hidden


def test_woocommerce_sale_price_wins_and_missing_parent_is_an_error() -> None:
    header = "ID,Type,SKU,Name,Published,Sale price,Regular price,Parent,Attribute 1 name,Attribute 1 value(s)\n"
    ok = parse_catalog((header + "1,simple,A,Apron,1,9.00,12.00,,,\n").encode(), "w.csv", "usd")
    assert ok.format == "woocommerce"
    assert ok.products[0].price == 900
    bad = parse_catalog(
        (header + "2,variation,B,Orphan,1,,5.00,id:99,Size,L\n").encode(), "w.csv", "usd"
    )
    assert bad.errors[0]["line"] == 2
    assert "parent 'id:99' is not in the file" in bad.errors[0]["message"]
