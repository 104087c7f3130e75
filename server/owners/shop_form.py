"""The shop settings form, parsed and checked without I/O.

``parse_shop_settings(fields, shop_has_catalog)`` turns the posted fields into column values and
a sentence per invalid field; ``settings_form_values(shop)`` does the reverse for the page.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.catalog.money import currency_problem
from server.orders.webhook_client import is_public_address
from server.shops.hours import DAY_NAMES as WEEKDAY_NAMES
from server.shops.hours import DAYS, parse_range

DAY_NAMES = dict(zip(DAYS, WEEKDAY_NAMES, strict=True))
FULFILLMENT_MODES = ("pickup", "delivery", "table")
PAYMENTS_MODES = ("auto", "live", "demo")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{6,60}$")


def _private_host(host: str) -> bool:
    """``localhost`` or a literal IP that is not a public unicast address."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the resolver also reads "2130706433", "127.1" and "0x7f.1" as IPv4 addresses
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    return not is_public_address(ip)


def parse_shop_settings(
    fields: Mapping[str, Any], *, currency_locked: bool = False, allow_private_urls: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """Column values for :class:`server.models.Shop` and errors by field name.

    Checkboxes are present when ticked; ``fulfillment_modes`` may be a list. ``currency_locked``
    keeps the currency once a catalog exists (its prices are minor units of that currency).
    ``allow_private_urls`` (development) lets the notification webhook point at this machine
    or the local network."""
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}

    name = _text(fields, "name")
    if not name:
        errors["name"] = "Give the shop a name."
    elif len(name) > 120:
        errors["name"] = "Keep the name under 120 characters."
    out["name"] = name

    if not currency_locked and "currency" in fields:
        currency = _text(fields, "currency").lower()
        problem = currency_problem(currency)
        if problem:
            errors["currency"] = problem
        out["currency"] = currency

    greeting = _text(fields, "greeting")
    if len(greeting) > 500:
        errors["greeting"] = "Keep the greeting under 500 characters."
    out["greeting"] = greeting

    color = _text(fields, "theme_color") or "#2f6f4f"
    if not _COLOR.match(color):
        errors["theme_color"] = "Use a colour like #2f6f4f."
    out["theme_color"] = color.lower()

    raw_modes = fields.get("fulfillment_modes", [])
    modes = [raw_modes] if isinstance(raw_modes, str) else list(raw_modes)
    chosen = [m for m in FULFILLMENT_MODES if m in modes]
    if not chosen or len(chosen) != len(set(modes)):
        errors["fulfillment_modes"] = "Choose at least one of pickup, delivery or table service."
    out["fulfillment_modes"] = chosen

    out["require_name"] = _ticked(fields, "require_name")
    out["paused"] = _ticked(fields, "paused")

    hours, hours_error = parse_opening_hours(fields)
    if hours_error:
        errors["opening_hours"] = hours_error
    out["opening_hours"] = hours

    origins, origins_error = parse_origins(_text(fields, "allowed_origins"))
    if origins_error:
        errors["allowed_origins"] = origins_error
    out["allowed_origins"] = origins

    url = _text(fields, "notify_webhook_url")
    if url and (
        urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc or len(url) > 500
    ):
        errors["notify_webhook_url"] = "Use a full http(s) URL, or leave it empty."
    elif url and not allow_private_urls and _private_host(urlparse(url).hostname or ""):
        # The server POSTs there: anyone who can sign up must not reach our own network.
        errors["notify_webhook_url"] = "Use a public address; local and private ones are refused."
    out["notify_webhook_url"] = url
    secret = _text(fields, "notify_webhook_secret")
    if len(secret) > 100:
        errors["notify_webhook_secret"] = "Keep the secret under 100 characters."
    elif url and secret and len(secret) < 16:
        errors["notify_webhook_secret"] = (
            "Use at least 16 characters, or leave it empty to get one made for you."
        )
    out["notify_webhook_secret"] = secret

    account = _text(fields, "stripe_account_id")
    if account and not _STRIPE_ACCOUNT.match(account):
        errors["stripe_account_id"] = "A Stripe Connect account id looks like acct_1A2b3C4d5E6f."
    out["stripe_account_id"] = account

    mode = _text(fields, "payments_mode") or "auto"
    if mode not in PAYMENTS_MODES:
        errors["payments_mode"] = "Choose automatic, live or demo payments."
    out["payments_mode"] = mode
    return out, errors


def parse_opening_hours(fields: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Fields ``hours_mon`` ... ``hours_sun`` (``08:00-12:00, 13:00-17:00``; ``22:00-02:00``
    runs past midnight; ``closed`` or empty = closed, all empty = no schedule) and ``hours_tz``
    -> ``{"mon": [["08:00","12:00"], ...], "tz": ...}``. Each range goes through
    :func:`server.shops.hours.parse_range`, so the form takes exactly what the shop's open or
    closed state understands."""
    hours: dict[str, Any] = {}
    for day in DAYS:
        text = _text(fields, f"hours_{day}")
        if not text:
            continue
        if text.lower() == "closed":
            hours[day] = []
            continue
        ranges = []
        for part in text.split(","):
            if not part.strip():
                continue  # "08:00-12:00," has nothing after its comma
            try:
                ranges.append(parse_range(part))
            except ValueError as exc:
                return (
                    {},
                    f"{DAY_NAMES[day]}: {exc}. Write hours like 08:00-12:00, 13:00-17:00 "
                    "(22:00-02:00 closes after midnight), or leave the day empty.",
                )
        hours[day] = ranges
    tz = _text(fields, "hours_tz")
    if hours:
        if not tz:
            return {}, "Choose the time zone the opening hours are in (e.g. Europe/Paris)."
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            return {}, f"{tz!r} is not a time zone name (e.g. Europe/Paris, America/New_York)."
        for day in DAYS:
            hours.setdefault(day, [])
        hours["tz"] = tz
    return hours, None


def parse_origins(text: str) -> tuple[list[str], str | None]:
    """One origin per line (or separated by spaces/commas): ``https://example.com[:port]``."""
    origins: list[str] = []
    for raw in re.split(r"[\s,]+", text.strip()):
        if not raw:
            continue
        p = urlparse(raw.rstrip("/"))
        if (
            p.scheme not in ("http", "https")
            or not p.netloc
            or p.path
            or p.query
            or "@" in p.netloc
        ):
            return [], f"{raw!r} is not a website origin like https://example.com."
        origin = f"{p.scheme}://{p.netloc.lower()}"
        if origin not in origins:
            origins.append(origin)
    if len(origins) > 20:
        return [], "List at most 20 websites."
    return origins, None


def settings_form_values(shop: Any) -> dict[str, Any]:
    """The current settings as the form shows them."""
    hours = shop.opening_hours or {}
    values: dict[str, Any] = {
        "name": shop.name,
        "currency": shop.currency,
        "greeting": shop.greeting,
        "theme_color": shop.theme_color,
        "fulfillment_modes": list(shop.fulfillment_modes or []),
        "require_name": shop.require_name,
        "paused": shop.paused,
        "allowed_origins": "\n".join(shop.allowed_origins or []),
        "notify_webhook_url": shop.notify_webhook_url,
        "notify_webhook_secret": shop.notify_webhook_secret,
        "stripe_account_id": shop.stripe_account_id,
        "payments_mode": shop.payments_mode,
        "hours_tz": hours.get("tz", ""),
    }
    for day in DAYS:
        ranges = hours.get(day)
        values[f"hours_{day}"] = (
            ""
            if ranges is None or not hours
            else ("closed" if not ranges else ", ".join(f"{a}-{b}" for a, b in ranges))
        )
    return values


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _ticked(fields: Mapping[str, Any], name: str) -> bool:
    return _text(fields, name) in ("on", "1", "true", "yes")
