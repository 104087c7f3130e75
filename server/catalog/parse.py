"""Turn an uploaded catalog file into products, or into every problem it has. Pure: no I/O.

Accepted: CSV (``,`` ``;`` or tab; UTF-8 with or without BOM, UTF-16, cp1252/Latin-1), JSON
(a list of products or ``{"products": [...]}``), and Shopify and WooCommerce product exports.
Errors reject the whole file; each names the line where the row (or JSON object) starts and the
column as written in the header.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from server.catalog import exports
from server.catalog.fields import (
    Draft,
    FieldError,
    Issues,
    normalise_header,
    parse_available,
    parse_options,
    parse_price,
    parse_tags,
    slugify,
)
from server.catalog.model import OptionGroup, Product
from server.catalog.money import exponent as currency_exponent

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
FIELD_LIMITS = {
    "id": 120,
    "name": 200,
    "category": 120,
    "description": 5000,
    "options": 4000,
    "tags": 500,
    "image_url": 1000,
}

SYNONYMS = {
    "name": ("name", "item", "itemname", "title", "product", "productname", "dish"),
    "price": ("price", "cost", "amount", "unitprice", "baseprice"),
    "id": ("id", "sku", "productid", "itemid", "code"),
    "category": ("category", "categories", "section", "menusection", "type", "group"),
    "description": ("description", "desc", "details", "shortdescription"),
    "options": ("options", "modifiers", "choices", "extras", "variants"),
    "tags": ("tags", "tag", "labels", "dietary"),
    "available": ("available", "availability", "instock", "active", "enabled", "status"),
    "image_url": (
        "imageurl",
        "image",
        "imagelink",
        "imagesrc",
        "photo",
        "photourl",
        "picture",
        "img",
    ),
}
_CANONICAL = {syn: canonical for canonical, syns in SYNONYMS.items() for syn in syns}
REQUIRED = ("name", "price")


@dataclass
class ParseResult:
    """Products of a valid file, or the errors of an invalid one (warnings either way)."""

    products: list[Product] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    format: str = "csv"

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_catalog(data: bytes, filename: str, currency: str) -> ParseResult:
    """Parse ``data`` (an uploaded file named ``filename``) for a shop priced in ``currency``.

    Never raises for bad input: problems come back in ``.errors``; a result with errors has no
    products, since a file with errors is rejected whole."""
    issues = Issues()
    result = ParseResult()
    if len(data) > MAX_BYTES:
        issues.error(
            None,
            None,
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES // 2**20} MB",
        )
        return _finish(result, issues, [])
    text = _decode(data, issues)
    if text is None:
        return _finish(result, issues, [])
    currency = currency.strip().lower()
    stripped = text.lstrip()
    if filename.lower().endswith(".json") or stripped[:1] in ("[", "{"):
        result.format = "json"
        drafts = _json_drafts(stripped, currency, issues)
    else:
        header, records = _read_csv(text, issues)
        kind = exports.detect(header)
        if kind == "shopify":
            result.format = "shopify"
            drafts = exports.shopify_drafts(header, records, currency, issues)
        elif kind == "woocommerce":
            result.format = "woocommerce"
            drafts = exports.woocommerce_drafts(header, records, currency, issues)
        else:
            drafts = _csv_drafts(header, records, currency, issues)
    return _finish(result, issues, drafts)


# ---------------------------------------------------------------- decoding and CSV


def _decode(data: bytes, issues: Issues) -> str | None:
    if data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8", data[3:]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, body = "utf-16", data
    elif len(data) >= 4 and data[1::2].count(0) > len(data) // 4 and not data[0::2].count(0):
        encoding, body = "utf-16-le", data  # UTF-16 without a byte-order mark
    elif len(data) >= 4 and data[0::2].count(0) > len(data) // 4 and not data[1::2].count(0):
        encoding, body = "utf-16-be", data
    else:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # Spreadsheet exports on Windows: cp1252, else Latin-1 (which decodes any byte).
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:
                return data.decode("latin-1")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        issues.error(None, None, f"the file is not valid {encoding.upper()} (byte {exc.start})")
        return None


Record = tuple[int, list[str]]


def _sniff_delimiter(text: str) -> tuple[str, bool]:
    """The delimiter from the header line (the commonest of ``,`` ``;`` tab), and whether the
    file starts with Excel's ``sep=;`` line, which names it outright."""
    first = next((line for line in io.StringIO(text) if line.strip()), "").strip()
    if len(first) == 5 and first.lower().startswith("sep="):
        return first[4], True
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return (best if counts[best] else ","), False


def _read_csv(text: str, issues: Issues) -> tuple[list[str], list[Record]]:
    """Header cells and data records, each with the line where it starts; blank rows skipped."""
    delimiter, skip_sep_line = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    records: list[Record] = []
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if skip_sep_line:
                skip_sep_line = False
                continue
            if header is None:
                header = [c.strip() for c in cells]
                continue
            if len(records) >= MAX_ROWS:
                issues.error(start, None, f"more than {MAX_ROWS:,} rows; split the catalog")
                break
            records.append((start, cells))
    except csv.Error as exc:
        issues.error(line, None, f"the file cannot be read as CSV: {exc}")
    if header is None:
        issues.error(None, None, "the file is empty")
        return [], []
    return header, records


def _csv_drafts(
    header: list[str], records: list[Record], currency: str, issues: Issues
) -> list[Draft]:
    if not header:
        return []
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        if not cell:
            continue  # trailing or spacer columns
        canonical = _CANONICAL.get(normalise_header(cell))
        if canonical is None:
            issues.warn(1, cell, f"column {cell!r} is not used")
        elif canonical in columns:
            issues.warn(
                1, cell, f"column {cell!r} repeats {header[columns[canonical]]!r} and is ignored"
            )
        else:
            columns[canonical] = index
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        found = ", ".join(repr(h) for h in header if h) or "none"
        for name in missing:
            issues.error(1, name, f"no {name!r} column (columns found: {found})")
        return []
    names = {canonical: header[i] for canonical, i in columns.items()}
    width = len(header)
    drafts: list[Draft] = []
    for line, cells in records:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            issues.error(
                line,
                None,
                f"{len(cells)} cells but the header has {width}; quote values that contain the delimiter",
            )
            continue
        values = {c: cells[i] if i < len(cells) else "" for c, i in columns.items()}
        draft = build_draft(line, values, names, currency, issues)
        if draft:
            drafts.append(draft)
    return drafts


def build_draft(
    line: int, values: dict[str, Any], columns: dict[str, str], currency: str, issues: Issues
) -> Draft | None:
    """One product from canonical field values (text; JSON may give lists, numbers, booleans).

    ``columns`` maps canonical names to the names the owner wrote, for the messages;
    ``currency`` (lowercase ISO 4217) decides how prices are read."""
    before = len(issues.errors)
    exp = currency_exponent(currency)
    col = lambda key: columns.get(key, key)  # noqa: E731
    text: dict[str, str] = {}
    for key, value in values.items():
        if type(value) is str:
            pass  # CSV: always text
        elif key == "options" and isinstance(value, list):
            value = "; ".join(_group_text(g) for g in value)
        elif key == "tags" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int | float):
            value = format(Decimal(str(value)), "f")
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            issues.error(line, col(key), f"{key} must be text, not {type(value).__name__}")
            continue
        value = value.strip()
        limit = FIELD_LIMITS.get(key)
        if limit and len(value) > limit:
            issues.error(
                line, col(key), f"{key} is {len(value)} characters long; the limit is {limit}"
            )
            continue
        text[key] = value

    name = " ".join(text.get("name", "").split())
    if not name and "name" in text:
        issues.error(line, col("name"), "name is empty")
    price = 0
    try:
        price = parse_price(text.get("price", ""), exp, currency=currency)
    except FieldError as exc:
        if "price" in text:
            issues.error(line, col("price"), str(exc))
    options = ()
    try:
        options = parse_options(text.get("options", ""), exp, currency)
    except FieldError as exc:
        issues.error(line, col("options"), str(exc))
    if options and price + _lowest_delta(options) < 0:
        for group in options:
            if price + min(c.price_delta for c in group.choices) < 0:
                issues.error(
                    line, col("options"), f"option group {group.name!r} makes the price negative"
                )
    available = True
    try:
        available = parse_available(text.get("available", ""))
    except FieldError as exc:
        issues.error(line, col("available"), str(exc))
    image = text.get("image_url") or None
    if image and not image.lower().startswith(("http://", "https://")):
        issues.warn(
            line, col("image_url"), f"image {image[:60]!r} is not an http(s) URL and is ignored"
        )
        image = None
    if len(issues.errors) > before:
        return None
    product = Product(
        id="",
        name=name,
        price=price,
        category=" ".join(text.get("category", "").split()),
        description=text.get("description", ""),
        options=options,
        tags=parse_tags(text.get("tags", "")),
        available=available,
        image_url=image,
    )
    return Draft(
        line, product, explicit_id=text.get("id", ""), id_column=col("id"), name_column=col("name")
    )


def _lowest_delta(options: tuple[OptionGroup, ...]) -> int:
    """The most negative choice delta of any group (0 when none is negative), remembered per
    option set: ``parse_options`` hands back the same tuple for the same text."""
    key = id(options)
    found = _LOWEST.get(key)
    if found is None or found[0] is not options:
        lowest = min((c.price_delta for g in options for c in g.choices), default=0)
        found = _LOWEST[key] = (options, min(lowest, 0))
        if len(_LOWEST) > 8192:
            _LOWEST.clear()
    return found[1]


_LOWEST: dict[int, tuple[tuple[OptionGroup, ...], int]] = {}


# ---------------------------------------------------------------- JSON


def _json_drafts(text: str, currency: str, issues: Issues) -> list[Draft]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        issues.error(exc.lineno, None, f"not valid JSON: {exc.msg} (column {exc.colno})")
        return []
    except ValueError:  # a number longer than int's 4300-digit limit
        issues.error(None, None, "not valid JSON: a number is too long")
        return []
    except RecursionError:
        issues.error(None, None, "not valid JSON: nested too deeply")
        return []
    items = data.get("products", data.get("items")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        issues.error(None, None, 'JSON must be a list of products or {"products": [...]}')
        return []
    if len(items) > MAX_ROWS:
        issues.error(None, None, f"more than {MAX_ROWS:,} products; split the catalog")
        return []
    lines = _item_lines(text, isinstance(data, dict), items)
    drafts: list[Draft] = []
    for position, item in enumerate(items, start=1):
        line = lines[position - 1]
        if not isinstance(item, dict):
            issues.error(line, None, f"product {position} is not an object")
            continue
        values: dict[str, Any] = {}
        columns: dict[str, str] = {}
        for key, value in item.items():
            canonical = _CANONICAL.get(normalise_header(str(key)))
            if canonical and canonical not in values:
                values[canonical] = value
                columns[canonical] = str(key)
        for name in REQUIRED:
            if name not in values:
                issues.error(line, name, f"product {position} has no {name!r}")
        if all(name in values for name in REQUIRED):
            draft = build_draft(line, values, columns, currency, issues)
            if draft:
                drafts.append(draft)
    return drafts


def _item_lines(text: str, wrapped: bool, items: list[Any]) -> list[int]:
    """The line where each product object of the list starts, so JSON errors point into the
    file like CSV ones. Falls back to the products' positions when the list cannot be found
    (the scan must find exactly the parsed products, in order)."""
    count = len(items)
    start = text.find("[") if not wrapped else -1
    if wrapped:
        found = re.search(r'"(?:products|items)"\s*:\s*\[', text)
        start = found.end() - 1 if found else -1
    if start < 0:
        return list(range(1, count + 1))
    decoder = json.JSONDecoder()
    lines: list[int] = []
    pos, line, counted = start + 1, 1 + text.count("\n", 0, start), start
    try:
        while len(lines) < count:
            while text[pos] in " \t\r\n,":
                pos += 1
            line += text.count("\n", counted, pos)
            counted = pos
            item, pos = decoder.raw_decode(text, pos)
            if item != items[len(lines)]:
                raise IndexError  # found some other list: fall back to positions
            lines.append(line)
    except (IndexError, json.JSONDecodeError):
        return list(range(1, count + 1))
    return lines


def _group_text(group: Any) -> str:
    """A JSON option group (grammar text, or ``{"name", "min"?, "max"?, "choices"}``) as text."""
    if isinstance(group, str):
        return group
    if not isinstance(group, dict) or "name" not in group:
        return ":"  # rejected by the grammar with a clear message
    head = str(group["name"])
    if "min" in group or "max" in group:
        head += f"[{group.get('min', 0)}-{group.get('max', group.get('min', 1))}]"
    parts = []
    for choice in group.get("choices") or []:
        if isinstance(choice, dict):
            delta = str(choice.get("price", choice.get("price_delta", "")) or "").strip()
            sign = "" if not delta or delta[0] in "+-" else "+"
            parts.append(f"{choice.get('name', '')} {sign}{delta}".strip())
        else:
            parts.append(str(choice))
    return f"{head}: " + " | ".join(parts)


# ---------------------------------------------------------------- ids and duplicates


def _finish(result: ParseResult, issues: Issues, drafts: list[Draft]) -> ParseResult:
    products = _assign_ids(drafts, issues)
    missing = [d for d in drafts if not d.product.description]
    for d in missing:
        issues.warn(
            d.line, "description", f"{d.product.name!r} has no description", kind="no description"
        )
    issues.summarise()
    result.errors = issues.errors
    result.warnings = issues.warnings
    result.products = [] if issues.errors else products
    return result


def _assign_ids(drafts: list[Draft], issues: Issues) -> list[Product]:
    """Explicit ids (or SKUs) are kept; other products get a slug of their name, made unique
    with ``-2``, ``-3``... Duplicate explicit ids and duplicate names in a category are errors."""
    taken: dict[str, int] = {}
    for d in drafts:
        if d.explicit_id:
            pid = "-".join(d.explicit_id.split())
            key = pid.casefold()
            if key in taken:
                issues.error(
                    d.line, d.id_column, f"id {pid!r} is used twice (also on line {taken[key]})"
                )
            taken[key] = d.line
    names: dict[tuple[str, str], int] = {}
    products: list[Product] = []
    for d in drafts:
        key = (d.product.category.casefold(), d.product.name.casefold())
        if key in names:
            issues.error(
                d.line,
                d.name_column,
                f"{d.product.name!r} appears twice (also on line {names[key]})",
            )
        names.setdefault(key, d.line)
        if d.explicit_id:
            pid = "-".join(d.explicit_id.split())
        else:
            base = slugify(d.product.name) or "item"
            pid, n = base, 1
            while pid.casefold() in taken:
                n += 1
                pid = f"{base}-{n}"
            taken[pid.casefold()] = d.line
        products.append(replace(d.product, id=pid))
    return products
