"""Currency facts: which codes a shop can sell in, and how many decimals their amounts carry."""

from __future__ import annotations

import pytest

from server.catalog.money import EXPONENTS, currency_problem, exponent, format_amount
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
        ("iqd", 3),
        ("lyd", 3),
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


def test_stripes_currencies_are_all_accepted() -> None:
    assert [c for c in STRIPE_CURRENCIES.split() if currency_problem(c)] == []
    assert all(len(c) == 3 and c.isalpha() and c.islower() for c in EXPONENTS)


@pytest.mark.parametrize("code", ["usb", "xxx", "xts", "xau", "xdr", "clf", "eu", "euro", "€", ""])
def test_codes_that_are_not_a_shop_currency(code: str) -> None:
    problem = currency_problem(code)
    assert problem is not None and problem.startswith("Currency ") and "ISO 4217" in problem


def test_a_three_decimal_currency_prices_and_prints_in_thousandths() -> None:
    result = parse_catalog(b"name,price\nFalafel,1.250\n", "menu.csv", "iqd")
    assert [p.price for p in result.products] == [1250]
    assert format_amount(1250, "iqd") == "1.250 IQD"
