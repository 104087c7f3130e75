"""Opening hours: open or closed at a moment, and what the customer is told when closed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server import models
from server.chat.handoff import paused_reply
from server.chat.threads import shop_context
from server.db import Database
from server.owners.shop_form import parse_opening_hours
from server.shops.hours import DAY_NAMES, DAYS, is_open, parse_range
from tests.chat.helpers import make_shop, post_chat
from tests.orders.menus import coffee_menu

WEEKDAYS = {day: [["08:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
# What the dashboard writes: every day present, closed days empty, the time zone.
PARIS = {**WEEKDAYS, "sat": [["10:00", "14:00"]], "sun": [], "tz": "Europe/Paris"}
LUNCH_BREAK = {**PARIS, "mon": [["08:00", "12:00"], ["13:00", "17:00"]]}
BAR = {
    **{d: [] for d in ("mon", "tue", "wed", "thu", "sun")},
    "fri": [["22:00", "02:00"]],
    "sat": [["18:00", "20:00"], ["22:00", "02:00"]],
    "tz": "UTC",
}
LATE = {**{d: [["18:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
LATE["tz"] = "UTC"


def utc(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A moment in 2026 (23 November 2026 is a Monday; Paris is UTC+1 then)."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


CLOSED = "We're closed; we open again "


@pytest.mark.parametrize(
    ("hours", "now", "expected"),
    [
        # No schedule at all: always open.
        ({}, utc(23, 3), (True, "")),
        (None, utc(29, 3), (True, "")),
        ({"tz": "Europe/Paris"}, utc(29, 3), (True, "")),
        # Paris time, not UTC: 07:30 UTC is 08:30 in Paris, 16:30 UTC is 17:30.
        (PARIS, utc(23, 7, 30), (True, "")),
        (PARIS, utc(23, 6, 30), (False, CLOSED + "today at 08:00.")),
        (PARIS, utc(23, 15, 59), (True, "")),
        (PARIS, utc(23, 16, 0), (False, CLOSED + "Tuesday at 08:00.")),
        ({**PARIS, "tz": "UTC"}, utc(23, 16, 0), (True, "")),
        # Friday evening: Saturday's hours; Saturday afternoon: Sunday has none, so Monday.
        (PARIS, utc(27, 18), (False, CLOSED + "Saturday at 10:00.")),
        (PARIS, utc(28, 14), (False, CLOSED + "Monday at 08:00.")),
        (PARIS, utc(29, 12), (False, CLOSED + "Monday at 08:00.")),
        # Two ranges in a day: closed over lunch, open again this afternoon.
        (LUNCH_BREAK, utc(23, 11, 30), (False, CLOSED + "today at 13:00.")),
        (LUNCH_BREAK, utc(23, 12), (True, "")),
        # Overnight ranges (22:00-02:00) run into the next day.
        (BAR, utc(27, 23, 30), (True, "")),
        (BAR, utc(28, 1, 59), (True, "")),  # Saturday night, from Friday's range
        (BAR, utc(28, 2), (False, CLOSED + "today at 18:00.")),
        (BAR, utc(28, 21), (False, CLOSED + "today at 22:00.")),
        (BAR, utc(29, 1), (True, "")),  # Sunday night, from Saturday's range
        (BAR, utc(29, 3), (False, CLOSED + "Friday at 22:00.")),
        (BAR, utc(26, 23), (False, CLOSED + "Friday at 22:00.")),
        # Until midnight.
        (LATE, utc(23, 23, 59), (True, "")),
        (LATE, utc(24, 0, 0), (False, CLOSED + "today at 18:00.")),
        # New York in summer is UTC-4: 12:30 UTC is 08:30 there.
        ({**WEEKDAYS, "tz": "America/New_York"}, utc(6, 12, 30, month=7), (True, "")),
        (
            {**WEEKDAYS, "tz": "America/New_York"},
            utc(6, 11, 30, month=7),
            (False, CLOSED + "today at 08:00."),
        ),
        # Every day closed: no next opening to announce.
        (
            {**{d: [] for d in WEEKDAYS}, "sat": [], "sun": [], "tz": "UTC"},
            utc(23, 9),
            (False, "We're closed."),
        ),
        # A bad time zone counts as UTC and a malformed range is ignored, never an error.
        ({"mon": [["08:00", "17:00"]], "tz": "Mars/Olympus"}, utc(23, 9), (True, "")),
        (
            {"mon": [["8am", "5pm"], ["09:00", "10:00"], "x"], "tz": "UTC"},
            utc(23, 9, 30),
            (True, ""),
        ),
    ],
)
def test_open_or_closed(hours: Any, now: datetime, expected: tuple[bool, str]) -> None:
    assert is_open(hours, now) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08:00-17:00", ["08:00", "17:00"]),
        ("00:00-24:00", ["00:00", "24:00"]),  # all day
        ("22:00-02:00", ["22:00", "02:00"]),  # past midnight
        ("23:59-00:00", ["23:59", "24:00"]),
        ("9:00 - 9:01", ["09:00", "09:01"]),
        ("08:00-08:00", "'08:00-08:00' opens and closes at the same time; use 00:00-24:00"),
        ("00:00-00:00", "'00:00-00:00' opens and closes at the same time"),
        ("9:30-09:30", "'9:30-09:30' opens and closes at the same time"),
        ("24:00-24:00", "'24:00-24:00' starts at 24:00; start at 00:00 instead"),
    ],
)
def test_parse_range(text: str, expected: list[str] | str) -> None:
    if isinstance(expected, list):
        assert parse_range(text) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)):
            parse_range(text)


def test_a_range_stored_before_the_form_refused_zero_length_ones_still_reads_all_day() -> None:
    """Shops saved with 08:00-08:00 are not closed without their owner knowing; the settings
    form asks for 00:00-24:00 the next time they are saved."""
    hours = {**{d: [] for d in DAYS}, "mon": [["08:00", "08:00"]], "tz": "UTC"}
    assert is_open(hours, utc(23, 8)) == (True, "")  # Monday 08:00
    assert is_open(hours, utc(24, 7, 59)) == (True, "")  # until Tuesday 08:00
    assert is_open(hours, utc(24, 8)) == (False, CLOSED + "Monday at 08:00.")


def test_what_the_dashboard_writes_is_understood() -> None:
    fields = {f"hours_{d}": "08:00-12:00, 13:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    hours, error = parse_opening_hours(
        {**fields, "hours_sat": "closed", "hours_tz": "Europe/Paris"}
    )
    assert error is None
    assert is_open(hours, utc(23, 8)) == (True, "")  # 09:00 in Paris
    assert is_open(hours, utc(27, 17)) == (False, CLOSED + "Monday at 08:00.")


def test_a_friday_night_range_saved_in_the_settings_form_is_open_early_saturday(
    client: TestClient, db: Database
) -> None:
    from tests.owners.helpers import make_shop as make_owned_shop
    from tests.owners.helpers import owner_id_of, session_csrf, signup

    signup(client, "ana@example.com")
    shop_id = make_owned_shop(db, owner_id_of(db, "ana@example.com"), name="Night Bar")
    form = {
        "csrf_token": session_csrf(client),
        "name": "Night Bar",
        "fulfillment_modes": ["pickup"],
        "hours_fri": "22:00-02:00",
        "hours_tz": "Europe/Paris",
    }
    r = client.post(f"/dashboard/shops/{shop_id}/settings", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        shop = s.get(models.Shop, shop_id)
        assert shop is not None
        # 28 November 2026 is a Saturday; Paris is UTC+1: 01:00 there is 00:00 UTC.
        assert shop_context(shop, utc(28, 0)).paused is False  # Saturday 01:00: Friday's range
        assert shop_context(shop, utc(27, 20, 59)).paused_reason == CLOSED + "today at 22:00."
        assert shop_context(shop, utc(28, 1)).paused_reason == CLOSED + "Friday at 22:00."
    page = client.get(f"/dashboard/shops/{shop_id}/settings").text
    assert 'value="22:00-02:00"' in page  # shown back as the owner wrote it


def config_of(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="sa-config">(.*?)</script>', html, re.S)
    assert m, html
    return json.loads(m.group(1))


def _closed_until_in_three_days() -> tuple[dict[str, Any], str]:
    """Hours that open only three days from now (UTC), whatever day the test runs."""
    day = (datetime.now(UTC).weekday() + 3) % 7
    hours: dict[str, Any] = {d: [] for d in DAYS}
    hours[DAYS[day]] = [["08:00", "17:00"]]
    hours["tz"] = "UTC"
    return hours, f"We're closed; we open again {DAY_NAMES[day]} at 08:00."


def test_a_closed_shop_answers_but_takes_no_order(
    app: Starlette, live_server: Callable[..., Any], db: Database
) -> None:
    hours, reason = _closed_until_in_three_days()
    shop = make_shop(db, coffee_menu(), opening_hours=hours)
    base = str(live_server(app).url)
    first = post_chat(base, shop.id, message="an espresso please")
    assert first.text == (
        f"Sorry, we're not taking orders right now. {reason} "
        "I'm happy to answer questions about the menu."
    )
    assert not first.of("cart")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    price = post_chat(base, shop.id, message="how much is an espresso?", **ids)
    assert "$3.00" in price.text
    done = post_chat(base, shop.id, message="that's all", **ids)
    assert not done.of("order") and not done.of("handoff")


def test_a_shop_open_around_the_clock_takes_orders(
    app: Starlette, live_server: Callable[..., Any], db: Database
) -> None:
    hours = {**{d: [["00:00", "24:00"]] for d in DAYS}, "tz": "Pacific/Auckland"}
    shop = make_shop(db, coffee_menu(), opening_hours=hours)
    base = str(live_server(app).url)
    first = post_chat(base, shop.id, message="an espresso")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    order = post_chat(base, shop.id, message="that's all", **ids).of("order")[0].data["order"]
    assert order["total"] == 300


def test_the_pages_say_whether_the_shop_is_open(client: TestClient, db: Database) -> None:
    hours, reason = _closed_until_in_three_days()
    closed = make_shop(db, coffee_menu(), opening_hours=hours)
    always = make_shop(db, coffee_menu())
    for shop, expected in ((closed, (False, reason)), (always, (True, ""))):
        for url in (f"/embed/{shop.id}", f"/s/{shop.slug}"):
            cfg = config_of(client.get(url).text)
            assert (cfg["open"], cfg["closed_reason"]) == expected
            assert cfg["paused"] is False  # the chat stays usable for questions


def test_the_assistants_see_a_closed_shop_as_paused_with_the_reason() -> None:
    shop = models.Shop(id="shp_x", name="X", slug="x", currency="eur", opening_hours=PARIS)
    closed = shop_context(shop, utc(23, 16))
    assert closed.paused and closed.paused_reason == CLOSED + "Tuesday at 08:00."
    assert closed.not_taking_orders == (
        "Sorry, we're not taking orders right now. We're closed; we open again Tuesday at 08:00."
    )
    assert paused_reply(closed).endswith("We're closed; we open again Tuesday at 08:00.")
    assert shop_context(shop, utc(23, 9)).paused is False
    shop.paused = True  # paused by the owner: no half sentence after the apology
    owner = shop_context(shop, utc(23, 9))
    assert owner.paused and owner.not_taking_orders == "Sorry, we're not taking orders right now."
