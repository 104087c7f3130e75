"""Currency facts: how many minor units a currency has, and formatting for people."""

from __future__ import annotations


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Every currency a shop can sell in: the ones Stripe charges (its presentment currencies,
# lowercase ISO 4217 plus SLL and STD, which Stripe still takes). Other ISO codes (IRR, CUP,
# IQD, LYD...) are refused: a shop could take orders in them but never be paid.
SHOP_CURRENCIES = _codes(
    "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd"
    " bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp"
    " gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw"
    " kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad"
    " ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek"
    " sgd shp sle sll sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv"
    " wst xaf xcd xcg xof xpf yer zar zmw"
)
# ISO 4217 codes in use that Stripe does not charge: refused with their own reason.
_ISO_NOT_ON_STRIPE = _codes(
    "btn cup ern ghs iqd irr kpw lyd mru sdg ssp stn svc syp tmt ved ves zwg"
)
# The decimals an amount carries, as Stripe counts them: none for _ZERO_DECIMAL, three for
# _THREE_DECIMAL, two for every other code. Where that differs from ISO, Stripe's count stands:
# MGA whole ariary (ISO: 2), ISK hundredths (ISO: 0; whole krónur only, see WHOLE_UNITS_ONLY).
# Stored prices were read this way before currencies were checked, so a code never changes
# here: IQD and LYD (three decimals in ISO) were read with two and keep two.
_ZERO_DECIMAL = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf"
_THREE_DECIMAL = "bhd jod kwd omr tnd"
EXPONENTS: dict[str, int] = {
    **{code: 2 for code in SHOP_CURRENCIES},
    **{code: 0 for code in _codes(_ZERO_DECIMAL)},
    **{code: 3 for code in _codes(_THREE_DECIMAL)},
}
ZERO_DECIMAL = frozenset(c for c, e in EXPONENTS.items() if e == 0)
THREE_DECIMAL = frozenset(c for c, e in EXPONENTS.items() if e == 3)
# Currencies Stripe counts with decimals but charges only in whole major units: an ISK amount
# must be a multiple of 100 (whole krónur). The value names the major unit for messages.
WHOLE_UNITS_ONLY: dict[str, str] = {"isk": "krónur"}

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cny": "¥", "inr": "₹", "krw": "₩"}


def exponent(currency: str) -> int:
    """Number of decimal places of ``currency`` (lowercase ISO 4217); 2 for a code not listed
    (a shop made before currencies were checked keeps working)."""
    return EXPONENTS.get(currency.strip().lower(), 2)


def currency_problem(currency: str) -> str | None:
    """None when ``currency`` is a code a shop can sell in (one Stripe charges), else a sentence
    naming the field: "Currency 'usb' is not an ISO 4217 currency code; use one such as usd, eur
    or jpy."."""
    code = currency.strip().lower()
    if code in SHOP_CURRENCIES:
        return None
    if not code:
        return "Currency is missing; use an ISO 4217 currency code such as usd, eur or jpy."
    if code in _ISO_NOT_ON_STRIPE:
        return (
            f"Currency {code!r} cannot be charged through Stripe; use one such as usd, eur or jpy."
        )
    return (
        f"Currency {currency.strip()[:20]!r} is not an ISO 4217 currency code; "
        "use one such as usd, eur or jpy."
    )


def format_amount(amount: int, currency: str) -> str:
    """``format_amount(450, "usd") -> "$4.50"``; used in prompts, pages and logs."""
    exp = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp) if exp else (abs(amount), 0)
    text = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    symbol = SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"
