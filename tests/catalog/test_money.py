"""Currency facts: which codes a shop can sell in, and how many decimals their amounts carry."""

from __future__ import annotations

import pytest

from server.catalog.money import (
    EXPONENTS,
    SHOP_CURRENCIES,
    currency_problem,
    exponent,
    format_amount,
)
from server.catalog.parse import parse_catalog


@pytest.mark.parametrize(
    ("currency", "decimals"),
    [
        ("usd", 2),
        ("eur", 2),
        ("jpy", 0),
        ("krw", 0),
        ("clp", 0),
        ("mga", 0),  # ISO says 2; Stripe charges whole ariary
        ("isk", 2),  # ISO says 0; Stripe takes hundredths (whole kronur)
        ("kwd", 3),
        ("bhd", 3),
        ("tnd", 3),
        # ISO gives these three decimals, but prices stored for them were read with two, and
        # Stripe charges neither: they keep two.
        ("iqd", 2),
        ("lyd", 2),
        ("JPY", 0),
    ],
)
def test_decimals_per_currency(currency: str, decimals: int) -> None:
    assert exponent(currency) == decimals


def test_an_unlisted_code_on_an_old_shop_still_has_two_decimals() -> None:
    assert exponent("abc") == 2


# Stripe's presentment currencies (docs.stripe.com/currencies).
STRIPE_CURRENCIES = (
    "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd"
    " bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp"
    " gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw"
    " kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad"
    " ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek"
    " sgd shp sle sll sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv"
    " wst xaf xcd xcg xof xpf yer zar zmw"
)

# How amounts were read before currencies were checked (every code was accepted then): these
# were whole units, these had three decimals, every other code two. A stored price keeps the
# meaning it was entered with.
FORMER_ZERO_DECIMAL = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf"
FORMER_THREE_DECIMAL = "bhd jod kwd omr tnd"

# ISO 4217 codes in use that Stripe does not charge.
ISO_NOT_ON_STRIPE = "btn cup ern ghs iqd irr kpw lyd mru sdg ssp stn svc syp tmt ved ves zwg"


def test_shops_sell_in_exactly_the_currencies_stripe_charges() -> None:
    assert frozenset(STRIPE_CURRENCIES.split()) == SHOP_CURRENCIES
    assert [c for c in STRIPE_CURRENCIES.split() if currency_problem(c)] == []
    assert [c for c in STRIPE_CURRENCIES.split() if currency_problem(c.upper())] == []


@pytest.mark.parametrize("code", ISO_NOT_ON_STRIPE.split())
def test_an_iso_currency_stripe_cannot_charge_is_refused_by_name(code: str) -> None:
    assert currency_problem(code) == (
        f"Currency {code!r} cannot be charged through Stripe; use one such as usd, eur or jpy."
    )


def test_every_code_keeps_the_decimals_it_had_before_currencies_were_checked() -> None:
    def former(code: str) -> int:
        if code in FORMER_ZERO_DECIMAL.split():
            return 0
        return 3 if code in FORMER_THREE_DECIMAL.split() else 2

    codes = set(STRIPE_CURRENCIES.split()) | set(ISO_NOT_ON_STRIPE.split()) | set(EXPONENTS)
    assert {c: exponent(c) for c in codes} == {c: former(c) for c in codes}


@pytest.mark.parametrize("code", ["usb", "xxx", "xts", "xau", "xdr", "clf", "eu", "euro", "€", ""])
def test_codes_that_are_not_a_shop_currency(code: str) -> None:
    problem = currency_problem(code)
    assert problem is not None and problem.startswith("Currency ") and "ISO 4217" in problem


def test_a_three_decimal_currency_prices_and_prints_in_thousandths() -> None:
    result = parse_catalog(b"name,price\nMachboos,1.250\n", "menu.csv", "kwd")
    assert [p.price for p in result.products] == [1250]
    assert format_amount(1250, "kwd") == "1.250 KWD"
