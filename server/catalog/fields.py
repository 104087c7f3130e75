"""Parsers for single catalog fields: prices, the options grammar, tags, availability, slugs.

Pure functions. Each raises :class:`FieldError` with a sentence meant for the shop owner
(``'abc' is not a price``); the caller adds the line and column.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from server.catalog.model import Choice, OptionGroup, Product
from server.catalog.money import WHOLE_UNITS_ONLY

MAX_PRICE_MAJOR = 1_000_000  # one million in major units: larger is surely a typo
MAX_GROUPS = 20
MAX_CHOICES = 50

CURRENCY_SYMBOLS = frozenset("$€£¥₹₩¢₽₺₴₪฿₫₱")
CURRENCY_WORDS = frozenset(
    [
        "usd",
        "eur",
        "gbp",
        "jpy",
        "chf",
        "cad",
        "aud",
        "nzd",
        "sek",
        "nok",
        "dkk",
        "pln",
        "czk",
        "huf",
        "inr",
        "krw",
        "cny",
        "brl",
        "mxn",
        "zar",
        "sgd",
        "hkd",
        "kr",
        "zł",
        "zl",
        "fr",
        "fr.",
        "chf.",
        "rs",
        "rs.",
        "us$",
        "c$",
        "a$",
        "nz$",
        "hk$",
        "s$",
        "r$",
    ]
)
_SEPARATORS_SPACE = str.maketrans("", "", " \u00a0\u202f\u2009'’")
_PLAIN = re.compile(r"^\s*([+-]?)(\d{1,9})(?:\.(\d+))?\s*$")
_NUMBER = re.compile(r"^(?P<sign>[+-])?(?P<num>[0-9.,]*[0-9])$")

TRUE_WORDS = frozenset(
    {
        "yes",
        "y",
        "true",
        "t",
        "1",
        "on",
        "x",
        "available",
        "in stock",
        "instock",
        "active",
        "published",
    }
)
FALSE_WORDS = frozenset(
    {
        "no",
        "n",
        "false",
        "f",
        "0",
        "off",
        "sold out",
        "soldout",
        "sold-out",
        "unavailable",
        "out of stock",
        "outofstock",
        "inactive",
        "hidden",
        "draft",
    }
)


class FieldError(ValueError):
    """One field's problem, as a sentence for the owner."""


class PriceStepError(FieldError):
    """A well-formed price that cannot be charged in its currency (Stripe takes it only in
    larger steps than its minor unit: a last digit of 0 for KWD, whole krónur for ISK)."""


# ---------------------------------------------------------------- prices


def parse_price(
    text: str, exponent: int, *, allow_negative: bool = False, currency: str = ""
) -> int:
    """``"$4.50"`` -> 450 (exponent 2); ``"4,50 €"`` -> 450; ``"1.234,50"`` -> 123450;
    ``"¥1,200"`` -> 1200 (exponent 0). ``currency`` (lowercase ISO 4217) adds its own rule:
    ISK in whole krónur. Raises :class:`FieldError` (:class:`PriceStepError` for a price the
    currency cannot be charged in)."""
    amount = _parse_amount(text, exponent, allow_negative)
    if exponent == 3 and amount % 10:
        # Stripe takes three-decimal currencies (KWD, BHD...) only with a last digit of 0.
        raise PriceStepError(
            f"{text.strip()!r} must end in 0: this currency is paid in steps of 0.010"
        )
    unit = WHOLE_UNITS_ONLY.get(currency)
    if unit and amount % 10**exponent:
        # Stripe counts ISK in hundredths but charges whole krónur only.
        raise PriceStepError(
            f"{text.strip()!r} is not a whole number of {unit}: {currency.upper()} prices must be"
            f" whole {unit}, without decimals"
        )
    return amount


def _parse_amount(text: str, exponent: int, allow_negative: bool) -> int:
    plain = _PLAIN.match(text)
    if plain:  # the common "4.50" / "+0.50": no separators or symbols to interpret
        sign, whole, frac = plain.groups()
        frac = frac or ""
        if (
            len(frac) <= exponent
            and int(whole) < MAX_PRICE_MAJOR
            and (sign != "-" or allow_negative)
        ):
            amount = int(whole) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
            return -amount if sign == "-" else amount
    raw = text.strip()
    if not raw:
        raise FieldError("price is empty")
    number = _strip_currency(raw)
    if number is None:
        raise FieldError(f"{raw!r} is not a price")
    m = _NUMBER.match(number)
    if not m:
        raise FieldError(f"{raw!r} is not a price")
    negative = m.group("sign") == "-"
    whole, frac = _split_decimal(m.group("num"), exponent, raw)
    if len(frac) > exponent:
        if exponent == 0:
            raise FieldError(f"{raw!r} has decimals, but this currency has no minor unit")
        raise FieldError(f"{raw!r} has more than {exponent} decimals")
    if int(whole or "0") >= MAX_PRICE_MAJOR:
        raise FieldError(f"{raw!r} is too large for a price")
    amount = int(whole or "0") * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    if negative and amount:
        if not allow_negative:
            raise FieldError(f"{raw!r} is negative; prices must be 0 or more")
        amount = -amount
    return amount


def _strip_currency(raw: str) -> str | None:
    """Remove a currency symbol or code before/after the number; None if something else is
    left (``4.50abc`` is not a price)."""
    text = raw.translate(_SEPARATORS_SPACE)
    sign = ""
    if text[:1] in "+-":
        sign, text = text[0], text[1:]
    start = 0
    while start < len(text) and not (text[start].isdigit() or text[start] in ".,"):
        start += 1
    end = len(text)
    while end > start and not text[end - 1].isdigit():
        end -= 1
    pre, body, post = text[:start], text[start:end], text[end:]
    if pre and pre[-1] in "+-" and not sign:
        sign, pre = pre[-1], pre[:-1]
    for affix in (pre, post):
        if affix and not _is_currency(affix):
            return None
    return sign + body


def _is_currency(affix: str) -> bool:
    a = affix.strip().lower()
    return a in CURRENCY_WORDS or all(c in CURRENCY_SYMBOLS for c in a)


def _split_decimal(num: str, exponent: int, raw: str) -> tuple[str, str]:
    """Tell the decimal separator from digit grouping: the last of ``.``/``,`` is the decimal
    mark when both appear; a single mark followed by exactly three digits is grouping unless the
    currency has three decimals."""
    dots, commas = num.count("."), num.count(",")
    if dots and commas:
        dec = "." if num.rfind(".") > num.rfind(",") else ","
        group = "," if dec == "." else "."
        if num.count(dec) > 1:
            raise FieldError(f"{raw!r} is not a price")
        whole, frac = num.split(dec)
        _check_grouping(whole, group, raw)
        return whole.replace(group, ""), frac
    mark = "." if dots else "," if commas else ""
    if not mark:
        return num, ""
    if num.count(mark) > 1:
        _check_grouping(num, mark, raw)
        return num.replace(mark, ""), ""
    whole, frac = num.split(mark)
    if len(frac) == 3 and exponent != 3 and whole:
        return whole + frac, ""
    return whole, frac


def _check_grouping(whole: str, group: str, raw: str) -> None:
    parts = whole.split(group)
    if not parts[0] or any(len(p) != 3 for p in parts[1:]):
        raise FieldError(f"{raw!r} is not a price")


# ---------------------------------------------------------------- options


_GROUP_HEAD = re.compile(
    r"^(?P<name>[^\[\]:]+?)\s*(?:\[\s*(?P<min>\d+)\s*(?:-\s*(?P<max>\d+)\s*)?\])?$"
)
_DELTA = re.compile(r"^(?P<name>.*\S)\s+(?P<sign>[+-])\s*(?P<amount>\S.*)$")


@lru_cache(maxsize=4096)
def parse_options(text: str, exponent: int, currency: str = "") -> tuple[OptionGroup, ...]:
    """Parse ``Size: Small | Large +0.50; Toppings[0-3]: Olives +1 | Basil``.

    A plain ``Name:`` group is single-choice with its first
    choice the default; ``Name[min-max]:`` is chosen explicitly (``[1-1]``: required, no
    default); ``Name[n]`` means exactly n; a maximum above the number of choices means "any of
    them". Price deltas follow :func:`parse_price` for ``currency``. Raises :class:`FieldError`
    on bad syntax. Cached: menus repeat the same option sets
    on many products, and the result is immutable."""
    groups: list[OptionGroup] = []
    seen: set[str] = set()
    for chunk in text.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        head, colon, body = chunk.partition(":")
        if not colon:
            raise FieldError(
                f"option group {chunk!r} needs a name and a colon, like 'Size: Small | Large +0.50'"
            )
        m = _GROUP_HEAD.match(head.strip())
        if not m:
            raise FieldError(
                f"{head.strip()!r} is not an option group name (write 'Name:' or 'Name[0-3]:')"
            )
        name = " ".join(m.group("name").split())
        if name.casefold() in seen:
            raise FieldError(f"option group {name!r} appears twice")
        seen.add(name.casefold())
        choices = _parse_choices(name, body, exponent, currency)
        if m.group("min") is None:
            group = OptionGroup(name, choices)
        else:
            lo = int(m.group("min"))
            hi = int(m.group("max")) if m.group("max") is not None else lo
            if hi < lo or hi == 0:
                raise FieldError(f"option group {name!r}: [{lo}-{hi}] is not a valid range")
            if lo > len(choices):
                raise FieldError(
                    f"option group {name!r} requires {lo} choices but lists only {len(choices)}"
                )
            hi = min(hi, len(choices))
            group = OptionGroup(name, choices, min_choices=lo, max_choices=hi, has_default=False)
        groups.append(group)
    if len(groups) > MAX_GROUPS:
        raise FieldError(f"too many option groups ({len(groups)}; at most {MAX_GROUPS})")
    return tuple(groups)


def _parse_choices(group: str, body: str, exponent: int, currency: str) -> tuple[Choice, ...]:
    choices: list[Choice] = []
    seen: set[str] = set()
    for part in body.split("|"):
        part = part.strip()
        if not part:
            raise FieldError(f"option group {group!r} has an empty choice")
        name, delta = part, 0
        m = _DELTA.match(part)
        if m:
            try:
                delta = parse_price(
                    m.group("sign") + m.group("amount"),
                    exponent,
                    allow_negative=True,
                    currency=currency,
                )
                name = m.group("name").strip()
            except PriceStepError as exc:  # a price, just not one this currency is paid in
                raise FieldError(f"option {part!r} in {group!r}: {exc}") from None
            except FieldError:
                if m.group("sign") == "+":
                    raise FieldError(
                        f"option {part!r} in {group!r}: {m.group('amount')!r} is not a price"
                    ) from None
                # "Decaf - no caffeine": a dash inside a name, not a discount.
        if name.casefold() in seen:
            raise FieldError(f"option group {group!r} lists {name!r} twice")
        seen.add(name.casefold())
        choices.append(Choice(name, delta))
    if not choices:
        raise FieldError(f"option group {group!r} has no choices")
    if len(choices) > MAX_CHOICES:
        raise FieldError(f"option group {group!r} has too many choices (at most {MAX_CHOICES})")
    return tuple(choices)


# ---------------------------------------------------------------- small fields


@lru_cache(maxsize=4096)
def parse_tags(text: str) -> tuple[str, ...]:
    """``"Vegan, Gluten-Free | hot"`` -> ``("vegan", "gluten-free", "hot")``."""
    out: dict[str, None] = {}
    for part in re.split(r"[,|;]", text):
        tag = " ".join(part.split()).lower()
        if tag:
            out.setdefault(tag, None)
    return tuple(out)


def parse_available(text: str) -> bool:
    """yes/no, true/false, 1/0, "sold out", "in stock"...; empty means available."""
    word = " ".join(text.split()).lower()
    if not word or word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise FieldError(
        f"{text.strip()!r} is not yes/no (use yes, no, true, false, 1, 0 or 'sold out')"
    )


def normalise_header(cell: str) -> str:
    """``"Image URL"`` -> ``"imageurl"``; ``"In stock?"`` -> ``"instock"``."""
    return re.sub(r"[^0-9a-z]+", "", cell.lower())


def slugify(text: str, max_length: int = 60) -> str:
    """``"Café Latte (large)"`` -> ``"cafe-latte-large"``; empty when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def strip_html(text: str) -> str:
    """Shopify and WooCommerce descriptions are HTML: keep the words."""
    import html

    no_tags = re.sub(r"<(br|p|/p|li|/li|div|/div)[^>]*>", " ", text, flags=re.I)
    no_tags = re.sub(r"<[^>]+>", "", no_tags)
    return " ".join(html.unescape(no_tags).split())


# ---------------------------------------------------------------- collecting problems

MAX_ERRORS = 200
MAX_WARNINGS_PER_KIND = 10


class Issues:
    """Errors and warnings of one file, each ``{"line", "column", "message"}``.

    Errors stop at :data:`MAX_ERRORS` (one more says so); a repeated kind of warning is
    summarised after :data:`MAX_WARNINGS_PER_KIND`."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self._warning_kinds: dict[str, int] = {}
        self.truncated = False

    def error(self, line: int | None, column: str | None, message: str) -> None:
        if len(self.errors) >= MAX_ERRORS:
            if not self.truncated:
                self.truncated = True
                self.errors.append(
                    {
                        "line": None,
                        "column": None,
                        "message": f"more than {MAX_ERRORS} problems; fix these first",
                    }
                )
            return
        self.errors.append({"line": line, "column": column, "message": message})

    def warn(self, line: int | None, column: str | None, message: str, kind: str = "") -> None:
        kind = kind or message
        seen = self._warning_kinds.get(kind, 0)
        self._warning_kinds[kind] = seen + 1
        if seen < MAX_WARNINGS_PER_KIND:
            self.warnings.append({"line": line, "column": column, "message": message})

    def summarise(self) -> None:
        """Add one line per warning kind that was cut short."""
        for kind, count in self._warning_kinds.items():
            if count > MAX_WARNINGS_PER_KIND:
                extra = count - MAX_WARNINGS_PER_KIND
                self.warnings.append(
                    {"line": None, "column": None, "message": f"{extra} more like: {kind}"}
                )


@dataclass
class Draft:
    """A product read from one row, before ids are assigned and duplicates checked."""

    line: int
    product: Product
    explicit_id: str = ""
    id_column: str = "id"
    name_column: str = "name"
