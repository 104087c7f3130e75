"""Shopify and WooCommerce product exports, recognised by their headers. Pure: no I/O.

Both describe a product over several rows (Shopify: rows sharing a ``Handle``; WooCommerce: a
``variable`` row and its ``variation`` rows). Variants become one option group whose price
deltas are relative to the cheapest variant, which becomes the base price. Draft, hidden or
unpublished products are kept but unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from server.catalog.fields import (
    Draft,
    FieldError,
    Issues,
    normalise_header,
    parse_price,
    parse_tags,
    strip_html,
)
from server.catalog.model import Choice, OptionGroup, Product
from server.catalog.money import exponent

MAX_DESCRIPTION = 5000
Record = tuple[int, list[str]]


def detect(header: Sequence[str]) -> str | None:
    """``"shopify"``, ``"woocommerce"`` or None for a plain catalog."""
    names = {normalise_header(h) for h in header}
    if "handle" in names and "variantprice" in names:
        return "shopify"
    if "regularprice" in names and ("type" in names or "parent" in names):
        return "woocommerce"
    return None


def _getter(header: Sequence[str]) -> Callable[[list[str], str], str]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(normalise_header(h), i)

    def get(cells: list[str], key: str) -> str:
        i = index.get(key)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    return get


@dataclass
class _Variant:
    line: int
    label: str
    price: int
    visible: bool = True


@dataclass
class _Item:
    line: int
    key: str
    name: str = ""
    description: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    available: bool = True
    image_url: str | None = None
    group_name: str = ""
    price_text: str = ""
    variants: list[_Variant] = field(default_factory=list)
    variant_rows: int = 0


def _draft(
    item: _Item, currency: str, issues: Issues, id_column: str, name_column: str
) -> Draft | None:
    if not item.name:
        issues.error(item.line, name_column, f"product {item.key!r} has no name")
        return None
    description = item.description
    if len(description) > MAX_DESCRIPTION:
        issues.warn(
            item.line,
            "description",
            f"{item.name!r}: description shortened to {MAX_DESCRIPTION} characters",
        )
        description = description[:MAX_DESCRIPTION]
    available = item.available
    variants = [v for v in item.variants if v.visible]
    if item.variants and not variants:
        variants, available = item.variants, False  # every variant hidden or sold out
    options: tuple[OptionGroup, ...] = ()
    if not variants:
        if not item.price_text:
            issues.error(item.line, "price", f"product {item.name!r} has no price")
            return None
        try:
            price = parse_price(item.price_text, exponent(currency), currency=currency)
        except FieldError as exc:
            issues.error(item.line, "price", str(exc))
            return None
    elif len(variants) == 1:
        price = variants[0].price
    else:
        cheapest = min(variants, key=lambda v: v.price)
        price = cheapest.price
        ordered = [cheapest] + [v for v in variants if v is not cheapest]
        seen: dict[str, int] = {}
        for v in ordered:
            if v.label.casefold() in seen:
                issues.error(
                    v.line, "variant", f"variant {v.label!r} of {item.name!r} appears twice"
                )
                return None
            seen[v.label.casefold()] = v.line
        choices = tuple(Choice(v.label, v.price - price) for v in ordered)
        options = (OptionGroup(item.group_name or "Variant", choices),)
    product = Product(
        id="",
        name=item.name,
        price=price,
        category=item.category,
        description=description,
        options=options,
        tags=item.tags,
        available=available,
        image_url=item.image_url
        if item.image_url and item.image_url.startswith(("http://", "https://"))
        else None,
    )
    return Draft(
        item.line, product, explicit_id=item.key, id_column=id_column, name_column=name_column
    )


def _variant(
    line: int, label: str, price_text: str, column: str, currency: str, issues: Issues
) -> _Variant | None:
    try:
        return _Variant(line, label, parse_price(price_text, exponent(currency), currency=currency))
    except FieldError as exc:
        issues.error(line, column, str(exc))
        return None


# ---------------------------------------------------------------- Shopify


def shopify_drafts(
    header: list[str], records: list[Record], currency: str, issues: Issues
) -> list[Draft]:
    """Rows sharing a Handle are one product; the first row carries title, body, type, tags.
    Variants out of tracked stock are left out of the option group (all of them: unavailable)."""
    get = _getter(header)
    items: dict[str, _Item] = {}
    for line, cells in records:
        handle = get(cells, "handle")
        if not handle:
            issues.error(line, "Handle", "Handle is empty")
            continue
        item = items.get(handle)
        if item is None:
            item = items[handle] = _Item(line, handle)
            item.name = " ".join(get(cells, "title").split())
            item.description = strip_html(get(cells, "bodyhtml"))
            item.category = (
                get(cells, "type") or get(cells, "productcategory").split(">")[-1].strip()
            )
            item.tags = parse_tags(get(cells, "tags"))
            published = get(cells, "published").lower()
            status = get(cells, "status").lower()
            item.available = published not in ("false", "no", "0") and status not in (
                "draft",
                "archived",
            )
            names = [get(cells, f"option{n}name") for n in (1, 2, 3)]
            item.group_name = " / ".join(n for n in names if n and n.lower() != "title")
        item.image_url = item.image_url or get(cells, "imagesrc") or None
        price_text = get(cells, "variantprice")
        values = [get(cells, f"option{n}value") for n in (1, 2, 3)]
        if not price_text:
            if any(values):
                issues.error(line, "Variant Price", f"variant of {handle!r} has no price")
            continue  # an image-only row
        label = " / ".join(v for v in values if v) or "Default Title"
        item.variant_rows += 1
        variant = _variant(line, label, price_text, "Variant Price", currency, issues)
        if variant:
            variant.visible = not _shopify_sold_out(get, cells)
            item.variants.append(variant)
    drafts = []
    for item in items.values():
        if not item.variant_rows:
            issues.error(item.line, "Variant Price", f"product {item.key!r} has no Variant Price")
            continue
        draft = _draft(item, currency, issues, "Handle", "Title")
        if draft:
            drafts.append(draft)
    return drafts


def _shopify_sold_out(get: Callable[[list[str], str], str], cells: list[str]) -> bool:
    """Tracked stock at zero with overselling denied: the variant cannot be bought."""
    quantity = get(cells, "variantinventoryqty")
    tracked = bool(get(cells, "variantinventorytracker"))
    denied = get(cells, "variantinventorypolicy").lower() == "deny"
    return tracked and denied and quantity.lstrip("-").isdigit() and int(quantity) <= 0


# ---------------------------------------------------------------- WooCommerce


def woocommerce_drafts(
    header: list[str], records: list[Record], currency: str, issues: Issues
) -> list[Draft]:
    """``simple``/``variable`` rows are products; ``variation`` rows name their parent as
    ``id:123`` or by SKU. Only published, visible, in-stock variations are offered."""
    get = _getter(header)
    items: list[_Item] = []
    by_ref: dict[str, _Item] = {}
    variations: list[tuple[int, list[str]]] = []
    for line, cells in records:
        kind = get(cells, "type").lower()
        if "variation" in kind:
            variations.append((line, cells))
            continue
        if "grouped" in kind:
            issues.warn(
                line,
                "Type",
                "grouped products are skipped (their children are listed on their own)",
            )
            continue
        sku, wc_id = get(cells, "sku"), get(cells, "id")
        item = _Item(line, sku or wc_id)
        item.name = " ".join(get(cells, "name").split())
        item.description = strip_html(get(cells, "shortdescription") or get(cells, "description"))
        first_category = get(cells, "categories").split(",")[0]
        item.category = first_category.split(">")[-1].strip()
        item.tags = parse_tags(get(cells, "tags"))
        item.available = _woo_visible(get, cells)
        item.image_url = get(cells, "images").split(",")[0].strip() or None
        item.price_text = get(cells, "saleprice") or get(cells, "regularprice")
        names = [get(cells, f"attribute{n}name") for n in (1, 2, 3)]
        item.group_name = " / ".join(n for n in names if n)
        items.append(item)
        if wc_id:
            by_ref[f"id:{wc_id}"] = item
        if sku:
            by_ref[sku] = item
    for line, cells in variations:
        parent = by_ref.get(get(cells, "parent"))
        if parent is None:
            issues.error(
                line, "Parent", f"variation's parent {get(cells, 'parent')!r} is not in the file"
            )
            continue
        parent.variant_rows += 1
        label = " / ".join(v for v in (get(cells, f"attribute{n}values") for n in (1, 2, 3)) if v)
        price_text = get(cells, "saleprice") or get(cells, "regularprice")
        variant = _variant(
            line,
            label or f"Variant {len(parent.variants) + 1}",
            price_text,
            "Regular price",
            currency,
            issues,
        )
        if variant:
            variant.visible = _woo_visible(get, cells)
            parent.variants.append(variant)
    drafts = []
    for item in items:
        draft = _draft(item, currency, issues, "SKU", "Name")
        if draft:
            drafts.append(draft)
    return drafts


def _woo_visible(get: Callable[[list[str], str], str], cells: list[str]) -> bool:
    published = get(cells, "published")
    visibility = get(cells, "visibilityincatalog").lower()
    in_stock = get(cells, "instock").lower()
    return (
        published in ("", "1") and visibility != "hidden" and in_stock not in ("0", "no", "false")
    )
