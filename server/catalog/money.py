"""Currency facts: how many minor units a currency has, and formatting for people."""

from __future__ import annotations

# Every currency a shop can sell in (lowercase ISO 4217: the codes in use, plus ANG, SLL and STD,
# which Stripe still charges), by the number of decimals its amounts carry. That is ISO's
# exponent, except where Stripe counts otherwise for a currency it charges: MGA in whole ariary
# (ISO: 2 decimals) and ISK in hundredths (ISO: 0; Stripe takes whole kronur as multiples of 100).
# Not listed: funds codes (CLF, UYW, USN...), precious metals, XDR, XTS and XXX, and withdrawn
# currencies (HRK, CUC, ZWL...).
_CURRENCIES_BY_EXPONENT = {
    0: "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf",
    2: (
        "aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd btn bwp byn"
        " bzd cad cdf chf cny cop crc cup cve czk dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs"
        " gip gmd gtq gyd hkd hnl htg huf idr ils inr irr isk jmd kes kgs khr kpw kyd kzt lak lbp"
        " lkr lrd lsl mad mdl mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd"
        " pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sdg sek sgd shp sle sll sos srd ssp"
        " std stn svc syp szl thb tjs tmt top try ttd twd tzs uah usd uyu uzs ved ves wst xcd xcg"
        " yer zar zmw zwg"
    ),
    3: "bhd iqd jod kwd lyd omr tnd",
}
EXPONENTS: dict[str, int] = {
    code: exp for exp, codes in _CURRENCIES_BY_EXPONENT.items() for code in codes.split()
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
    """None when ``currency`` is a code a shop can sell in, else a sentence naming the field:
    "Currency 'usb' is not an ISO 4217 currency code; use one such as usd, eur or jpy."."""
    code = currency.strip().lower()
    if code in EXPONENTS:
        return None
    if not code:
        return "Currency is missing; use an ISO 4217 currency code such as usd, eur or jpy."
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
