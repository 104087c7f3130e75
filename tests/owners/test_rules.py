"""Pure rules: passwords, the shop settings form, redirects after login."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from server.owners.auth import hash_password, password_problems, verify_password
from server.owners.pages import safe_next
from server.owners.shop_form import parse_opening_hours, parse_origins, parse_shop_settings
from server.shops.hours import next_opening


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("correct horse 42", True),
        ("Tr0ub4dor&3x", True),
        ("ALLCAPS-WITH-DASH", True),
        ("short1!", False),
        ("onlylowercaseletters", False),
        ("12345678901234", False),
        ("ana@example.com", False),
        ("ANA@EXAMPLE.COM", False),
        ("ana", False),
        ("x" * 257, False),
    ],
)
def test_password_rules(password: str, ok: bool) -> None:
    assert (password_problems(password, "ana@example.com") == []) is ok


def test_passwords_are_argon2id_and_verify() -> None:
    stored = hash_password("correct horse 42")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse 42")
    assert not verify_password(stored, "correct horse 43")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "anything")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/dashboard/shops/shp_1/orders", "/dashboard/shops/shp_1/orders"),
        (None, "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("//evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
    ],
)
def test_login_only_returns_to_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@pytest.mark.parametrize(
    ("fields", "hours", "error"),
    [
        ({}, {}, None),
        ({"hours_mon": "08:00-17:00", "hours_tz": "UTC"}, {"mon": [["08:00", "17:00"]]}, None),
        (
            {
                "hours_sat": "closed",
                "hours_tue": "09:00-12:00,14:00-18:30",
                "hours_tz": "Europe/Paris",
            },
            {"sat": [], "tue": [["09:00", "12:00"], ["14:00", "18:30"]]},
            None,
        ),
        ({"hours_fri": "22:00-24:00", "hours_tz": "UTC"}, {"fri": [["22:00", "24:00"]]}, None),
        # Past midnight, as the shop's open/closed state reads it.
        ({"hours_fri": "22:00-02:00", "hours_tz": "UTC"}, {"fri": [["22:00", "02:00"]]}, None),
        ({"hours_mon": "17:00 - 08:00", "hours_tz": "UTC"}, {"mon": [["17:00", "08:00"]]}, None),
        ({"hours_mon": "9:00-17:30,", "hours_tz": "UTC"}, {"mon": [["09:00", "17:30"]]}, None),
        (
            {"hours_wed": "9-5", "hours_tz": "UTC"},
            None,
            "Wednesday: '9' is not a time from 00:00 to 24:00. Write hours like 08:00-12:00",
        ),
        (
            {"hours_thu": "08:00-12:00, 13:00-25:00", "hours_tz": "UTC"},
            None,
            "Thursday: '25:00' is not a time from 00:00 to 24:00.",
        ),
        (
            {"hours_sat": "24:00-02:00", "hours_tz": "UTC"},
            None,
            "Saturday: '24:00-02:00' starts at 24:00; start at 00:00 instead.",
        ),
        (
            {"hours_sun": "08:00", "hours_tz": "UTC"},
            None,
            "Sunday: '08:00' is not a range like 08:00-12:00.",
        ),
        (
            {"hours_tue": "08:00-12:00, 14:00-14:00", "hours_tz": "UTC"},
            None,
            "Tuesday: '14:00-14:00' opens and closes at the same time; use 00:00-24:00 for all day.",
        ),
        ({"hours_mon": "00:00-24:00", "hours_tz": "UTC"}, {"mon": [["00:00", "24:00"]]}, None),
        ({"hours_mon": "8am-5pm", "hours_tz": "UTC"}, None, "Monday: '8am' is not a time"),
        ({"hours_mon": "08:00-17:00"}, None, "Choose the time zone"),
        ({"hours_mon": "08:00-17:00", "hours_tz": "Mars/Olympus"}, None, "is not a time zone name"),
    ],
)
def test_opening_hours(
    fields: dict[str, str], hours: dict[str, Any] | None, error: str | None
) -> None:
    parsed, problem = parse_opening_hours(fields)
    if error:
        assert problem and error in problem
        return
    assert problem is None
    for day, ranges in (hours or {}).items():
        assert parsed[day] == ranges
    if hours:
        assert set(parsed) == {"mon", "tue", "wed", "thu", "fri", "sat", "sun", "tz"}


@pytest.mark.parametrize(
    "text",
    [
        "08:00-17:00",
        "22:00-02:00",
        "9:00-17:00",
        "00:00-24:00",
        "23:59-00:00",
        "24:00-02:00",
        "24:00-24:00",
        "25:00-02:00",
        "08:60-09:00",
        "08:00-24:01",
        "8-17",
        "08.00-17.00",
        "08:00",
        "08:00--09:00",
        "-",
    ],
)
def test_the_form_takes_exactly_the_ranges_the_open_state_understands(text: str) -> None:
    """One parser: a range the form refuses is one the shop's hours would ignore, and the other
    way round (except a zero-length range, below)."""
    parsed, problem = parse_opening_hours({"hours_mon": text, "hours_tz": "UTC"})
    start, _, end = text.partition("-")
    sunday = datetime(2026, 11, 29, 12, tzinfo=UTC)
    understood = next_opening({"mon": [[start, end]], "tz": "UTC"}, sunday) is not None
    assert (problem is None) is understood
    if understood:  # and what the form stores opens at the same time
        assert next_opening(parsed, sunday) == next_opening({"mon": [[start, end]]}, sunday)


@pytest.mark.parametrize("text", ["08:00-08:00", "00:00-00:00", "8:00 - 08:00", "23:59-23:59"])
def test_a_range_that_opens_and_closes_at_the_same_time_is_refused(text: str) -> None:
    """Most likely a typo: it is not taken as a day-long schedule; 00:00-24:00 says that."""
    parsed, problem = parse_opening_hours({"hours_mon": text, "hours_tz": "UTC"})
    assert parsed == {}
    assert problem == (
        f"Monday: {text!r} opens and closes at the same time; use 00:00-24:00 for all day. "
        "Write hours like 08:00-12:00, 13:00-17:00 (22:00-02:00 closes after midnight), "
        "or leave the day empty."
    )


@pytest.mark.parametrize(
    ("text", "origins", "ok"),
    [
        ("", [], True),
        ("https://www.example.com", ["https://www.example.com"], True),
        (
            "https://A.example.com/ , http://localhost:3000",
            ["https://a.example.com", "http://localhost:3000"],
            True,
        ),
        ("https://x.com\nhttps://x.com", ["https://x.com"], True),
        ("example.com", [], False),
        ("https://example.com/page", [], False),
        ("javascript:alert(1)", [], False),
        ("https://user@example.com", [], False),
    ],
)
def test_allowed_origins(text: str, origins: list[str], ok: bool) -> None:
    parsed, problem = parse_origins(text)
    assert (problem is None) is ok
    assert parsed == origins


BASE = {"name": "Cafe", "fulfillment_modes": ["pickup"]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"currency": "euro"}, "currency"),
        ({"currency": "usb"}, "currency"),
        ({"currency": "xxx"}, "currency"),
        ({"greeting": "x" * 501}, "greeting"),
        ({"theme_color": "blue"}, "theme_color"),
        ({"fulfillment_modes": []}, "fulfillment_modes"),
        ({"fulfillment_modes": ["pickup", "drone"]}, "fulfillment_modes"),
        ({"notify_webhook_url": "ftp://example.com"}, "notify_webhook_url"),
        ({"notify_webhook_url": "http://169.254.169.254/latest/meta-data"}, "notify_webhook_url"),
        ({"notify_webhook_url": "http://localhost:6379/"}, "notify_webhook_url"),
        ({"notify_webhook_url": "http://127.1:8000/api/stripe/webhook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "http://2130706433/"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://10.0.0.7/hook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://[::1]/hook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://[::ffff:192.168.0.1]/hook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://[fec0::1]/hook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://[64:ff9b:1::7f00:1]/hook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://[2002:7f00:1::1]/hook"}, "notify_webhook_url"),
        ({"notify_webhook_url": "https://192.0.2.10/hook"}, "notify_webhook_url"),
        (
            {"notify_webhook_url": "https://h.example.com", "notify_webhook_secret": "short"},
            "notify_webhook_secret",
        ),
        ({"stripe_account_id": "sk_live_123"}, "stripe_account_id"),
        ({"payments_mode": "free"}, "payments_mode"),
    ],
)
def test_each_bad_setting_is_named(changes: dict[str, Any], field: str) -> None:
    _, errors = parse_shop_settings({**BASE, **changes})
    assert list(errors) == [field]


def test_good_settings_become_columns() -> None:
    values, errors = parse_shop_settings(
        {
            **BASE,
            "theme_color": "#AABBCC",
            "paused": "on",
            "currency": "EUR",
            "payments_mode": "live",
        }
    )
    assert errors == {}
    assert (
        values["theme_color"] == "#aabbcc"
        and values["paused"] is True
        and values["require_name"] is False
    )
    assert values["currency"] == "eur" and values["payments_mode"] == "live"


def test_a_currency_that_is_not_iso_4217_is_named_in_the_error() -> None:
    _, errors = parse_shop_settings({**BASE, "currency": "ABC"})
    assert errors["currency"] == (
        "Currency 'abc' is not an ISO 4217 currency code; use one such as usd, eur or jpy."
    )


def test_locked_currency_is_left_alone() -> None:
    values, errors = parse_shop_settings({**BASE, "currency": "nope"}, currency_locked=True)
    assert errors == {} and "currency" not in values


@pytest.mark.parametrize(
    ("url", "ok_in_production"),
    [
        ("https://hooks.example.com/orders", True),
        ("https://8.8.8.8/hook", True),
        ("http://127.0.0.1:9000/hook", False),
        ("http://192.168.1.20/hook", False),
    ],
)
def test_a_local_notification_url_only_in_development(url: str, ok_in_production: bool) -> None:
    fields = {**BASE, "notify_webhook_url": url}
    _, errors = parse_shop_settings(fields)
    assert ("notify_webhook_url" not in errors) is ok_in_production
    _, errors = parse_shop_settings(fields, allow_private_urls=True)
    assert errors == {}
