"""Single-field parsers: prices, the options grammar, tags, availability, slugs."""

from __future__ import annotations

import re

import pytest

from server.catalog.fields import (
    FieldError,
    PriceStepError,
    parse_available,
    parse_options,
    parse_price,
    parse_tags,
    slugify,
    strip_html,
)
from server.catalog.model import Choice, OptionGroup
from server.catalog.money import exponent as currency_exponent


@pytest.mark.parametrize(
    ("text", "exponent", "amount"),
    [
        ("4.50", 2, 450),
        ("4", 2, 400),
        ("0", 2, 0),
        (".5", 2, 50),
        ("$4.50", 2, 450),
        ("$ 4.50", 2, 450),
        ("4,50 €", 2, 450),
        ("€4,50", 2, 450),
        ("EUR 4.50", 2, 450),
        ("4.50 USD", 2, 450),
        ("1.234,50", 2, 123450),
        ("1,234.50", 2, 123450),
        ("1 234,50", 2, 123450),
        ("1\u00a0234,50", 2, 123450),
        ("1'234.50", 2, 123450),
        ("999,999.99", 2, 99999999),
        ("¥1,200", 0, 1200),
        ("1200", 0, 1200),
        ("1.250", 3, 1250),  # three-decimal currency: 1.250 KWD
        ("£12", 2, 1200),
    ],
)
def test_prices_in_minor_units(text: str, exponent: int, amount: int) -> None:
    assert parse_price(text, exponent) == amount


@pytest.mark.parametrize(
    ("text", "exponent", "message"),
    [
        ("abc", 2, "'abc' is not a price"),
        ("", 2, "price is empty"),
        ("4.50abc", 2, "is not a price"),
        ("-1", 2, "negative"),
        ("$-4.00", 2, "negative"),
        ("4.5", 0, "no minor unit"),
        ("4.5555", 2, "more than 2 decimals"),
        ("1,2,3", 2, "is not a price"),
        ("1.2.3,4,5", 2, "is not a price"),
        ("99999999", 2, "too large"),
        ("1,000,000", 2, "too large"),
        ("1.255", 3, "must end in 0"),  # Stripe refuses 1.255 KWD
    ],
)
def test_bad_prices_say_why(text: str, exponent: int, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        parse_price(text, exponent)


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("1500", "isk", 150000),  # Stripe counts ISK in hundredths
        ("1.500 kr", "isk", 150000),  # a dot before three digits groups them: 1500 krónur
        ("1.500,00", "isk", 150000),
        ("0", "isk", 0),
        ("1500.50", "usd", 150050),  # the rule is ISK's alone
        ("4.50", "", 450),
        ("1.250", "kwd", 1250),
    ],
)
def test_prices_the_currency_can_be_charged_in(text: str, currency: str, amount: int) -> None:
    assert parse_price(text, currency_exponent(currency), currency=currency) == amount


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("1500.50", "isk", "'1500.50' is not a whole number of krónur"),
        ("1500,5", "isk", "ISK prices must be whole krónur"),
        ("0.01", "isk", "ISK prices must be whole krónur"),
        ("kr 99.90", "isk", "ISK prices must be whole krónur"),
    ],
)
def test_prices_the_currency_cannot_be_charged_in(text: str, currency: str, message: str) -> None:
    with pytest.raises(PriceStepError, match=message):
        parse_price(text, currency_exponent(currency), currency=currency)


@pytest.mark.parametrize(
    ("text", "currency", "deltas"),
    [
        ("Size: Lítill | Stór +200", "isk", [0, 20000]),
        (
            "Size: Lítill | Stór +200; Extra[0-2]: Rjómi +150 | Síróp -50",
            "isk",
            [0, 20000, 15000, -5000],
        ),
        ("Size: S | L +0.50", "usd", [0, 50]),
    ],
)
def test_option_prices_in_whole_units(text: str, currency: str, deltas: list[int]) -> None:
    groups = parse_options(text, currency_exponent(currency), currency)
    assert [c.price_delta for g in groups for c in g.choices] == deltas


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        (
            "Size: Lítill | Stór +0.50",
            "isk",
            "option 'Stór +0.50' in 'Size': '+0.50' is not a whole number of krónur: ISK prices"
            " must be whole krónur",
        ),
        # A discount with decimals is an error too, not a choice named "Lítill -0.50".
        ("Size: Lítill -0.50 | Stór", "isk", "option 'Lítill -0.50' in 'Size': '-0.50'"),
        ("Size: S | L +0.255", "kwd", "option 'L +0.255' in 'Size': '+0.255' must end in 0"),
    ],
)
def test_option_prices_the_currency_cannot_be_charged_in(
    text: str, currency: str, message: str
) -> None:
    with pytest.raises(FieldError, match=re.escape(message)):
        parse_options(text, currency_exponent(currency), currency)


def test_option_deltas_may_be_negative() -> None:
    assert parse_price("-0.50", 2, allow_negative=True) == -50


def _single(name: str, *choices: tuple[str, int]) -> OptionGroup:
    return OptionGroup(name, tuple(Choice(n, d) for n, d in choices))


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("", ()),
        ("Size: Small | Large +0.50", (_single("Size", ("Small", 0), ("Large", 50)),)),
        (
            "Size: Small | Large +0.50; Milk: Whole | Oat +0.60",
            (
                _single("Size", ("Small", 0), ("Large", 50)),
                _single("Milk", ("Whole", 0), ("Oat", 60)),
            ),
        ),
        ("  Size :  Small|Large + 1  ;  ", (_single("Size", ("Small", 0), ("Large", 100)),)),
        ("Size: Small | Large +$0.50", (_single("Size", ("Small", 0), ("Large", 50)),)),
        ("Cheese: Regular | None -0.50", (_single("Cheese", ("Regular", 0), ("None", -50)),)),
        ("Decaf: No | Yes - no caffeine", (_single("Decaf", ("No", 0), ("Yes - no caffeine", 0)),)),
        ("Style: Half-and-half | Plain", (_single("Style", ("Half-and-half", 0), ("Plain", 0)),)),
        (
            "Toppings[0-3]: Olives +1 | Basil",
            (
                OptionGroup(
                    "Toppings", (Choice("Olives", 100), Choice("Basil", 0)), 0, 2, has_default=False
                ),
            ),
        ),
        (
            "Name[1-1]: Ana | Bo",
            (OptionGroup("Name", (Choice("Ana", 0), Choice("Bo", 0)), 1, 1, has_default=False),),
        ),
        (
            "Sauces[2]: A | B | C",
            (
                OptionGroup(
                    "Sauces",
                    (Choice("A", 0), Choice("B", 0), Choice("C", 0)),
                    2,
                    2,
                    has_default=False,
                ),
            ),
        ),
        (
            "Extras[0-1]: Egg +1.5",
            (OptionGroup("Extras", (Choice("Egg", 150),), 0, 1, has_default=False),),
        ),
    ],
)
def test_options_grammar(text: str, groups: tuple[OptionGroup, ...]) -> None:
    assert parse_options(text, 2) == groups


def test_plain_group_defaults_to_its_first_choice_and_bracket_group_is_chosen() -> None:
    size, toppings, name = parse_options(
        "Size: S | L +1; Toppings[0-3]: A | B; Name[1-1]: X | Y", 2
    )
    assert size.default == Choice("S", 0) and not size.required
    assert toppings.multi and toppings.default is None and not toppings.required
    assert name.required and name.default is None and not name.multi


def test_zero_decimal_currency_option_prices() -> None:
    (group,) = parse_options("Size: Small | Large +200", 0)
    assert group.choices[1].price_delta == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Size Small | Large", "needs a name and a colon"),
        ("Size: Small | | Large", "empty choice"),
        ("Size:", "empty choice"),
        ("Size: A +abc", "'abc' is not a price"),
        ("Size: A | a", "lists 'a' twice"),
        ("Size: A; size: B", "appears twice"),
        ("X[3-1]: a | b | c", "not a valid range"),
        ("X[0-0]: a", "not a valid range"),
        ("X[3-4]: a | b", "requires 3 choices but lists only 2"),
        ("X[a-b]: a", "is not an option group name"),
        ("X]: a", "is not an option group name"),
        ("X: " + " | ".join(f"c{i}" for i in range(60)), "too many choices"),
        ("; ".join(f"G{i}: a" for i in range(21)), "too many option groups"),
    ],
)
def test_bad_options_are_errors(text: str, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        parse_options(text, 2)


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("", ()),
        ("vegan", ("vegan",)),
        ("Vegan, Gluten-Free", ("vegan", "gluten-free")),
        ("vegan|gluten-free| spicy ", ("vegan", "gluten-free", "spicy")),
        ("vegan, VEGAN, Contains  Nuts", ("vegan", "contains nuts")),
    ],
)
def test_tags_are_lowercased_and_split_on_comma_or_bar(text: str, tags: tuple[str, ...]) -> None:
    assert parse_tags(text) == tags


@pytest.mark.parametrize(
    ("text", "available"),
    [
        ("", True),
        ("yes", True),
        ("Yes", True),
        ("TRUE", True),
        ("1", True),
        ("y", True),
        ("in stock", True),
        ("available", True),
        ("no", False),
        ("false", False),
        ("0", False),
        ("Sold out", False),
        ("SOLD-OUT", False),
        ("out of stock", False),
        ("unavailable", False),
    ],
)
def test_available_words(text: str, available: bool) -> None:
    assert parse_available(text) is available


def test_unknown_available_word_is_an_error() -> None:
    with pytest.raises(FieldError, match="'maybe' is not yes/no"):
        parse_available("maybe")


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Café Latte (large)", "cafe-latte-large"),
        ("  Flat   White ", "flat-white"),
        ("☕", ""),
        ("A&B", "a-b"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_strip_html_keeps_words() -> None:
    assert (
        strip_html("<p>Our <strong>house</strong> blend &amp; more</p><p>Two</p>")
        == "Our house blend & more Two"
    )
