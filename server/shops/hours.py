"""Opening hours: is the shop open at a given moment, and if not, when does it open again.

``Shop.opening_hours`` is what the dashboard's settings form writes
(:func:`server.owners.shop_form.parse_opening_hours`, each range through :func:`parse_range`)::

    {"tz": "Europe/Paris", "mon": [["08:00", "12:00"], ["13:00", "17:00"]], "tue": [], ...}

An empty mapping means no schedule: always open. A day with no ranges (or missing) is closed.
A range ending at ``24:00`` runs to midnight; one that ends before its start (``22:00-02:00``)
runs past midnight into the next day. The settings form refuses a range that ends when it starts
(``08:00-08:00``, most likely a typo; ``00:00-24:00`` is all day), but one stored before it did
is still read as 24 hours from its start, as it always was. Pure functions, no I/O; a malformed
range is ignored rather than failing a customer's message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_MINUTES = 24 * 60
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


def _minutes(text: Any) -> int | None:
    m = _TIME.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    value = int(m.group(1)) * 60 + int(m.group(2))
    return value if value <= DAY_MINUTES else None


def _range(start_text: Any, end_text: Any) -> tuple[int, int] | None:
    """``(start, end)`` in minutes from midnight, the end past ``DAY_MINUTES`` when the range
    runs past midnight; None when it is not a range."""
    start, end = _minutes(start_text), _minutes(end_text)
    if start is None or end is None or start >= DAY_MINUTES:
        return None
    if end <= start:
        end += DAY_MINUTES  # 22:00-02:00 closes at 02:00 the next day
    return start, end


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_range(text: str) -> list[str]:
    """``"22:00-02:00"`` -> ``["22:00", "02:00"]``: a range as the settings form takes it,
    checked by the very rules :func:`is_open` reads stored ranges with (``9:00`` is ``09:00``,
    ``24:00`` only ends a day, an end before the start runs past midnight), and refusing a range
    that closes when it opens.

    Raises ValueError with a sentence for the owner."""
    start_text, dash, end_text = text.strip().partition("-")
    if not dash:
        raise ValueError(f"{text.strip()!r} is not a range like 08:00-12:00")
    for part in (start_text, end_text):
        if _minutes(part) is None:
            raise ValueError(f"{part.strip()!r} is not a time from 00:00 to 24:00")
    pair = _range(start_text, end_text)
    if pair is None:
        raise ValueError(f"{text.strip()!r} starts at 24:00; start at 00:00 instead")
    if _minutes(start_text) == _minutes(end_text):  # 24:00 never starts a range
        raise ValueError(
            f"{text.strip()!r} opens and closes at the same time; use 00:00-24:00 for all day"
        )
    start, end = pair
    return [_clock(start), _clock(end if end <= DAY_MINUTES else end - DAY_MINUTES)]


def _ranges(hours: Mapping[str, Any], day: int) -> list[tuple[int, int]]:
    """The day's ranges as minutes from midnight; an overnight end is past ``DAY_MINUTES``.
    A malformed range is skipped (the settings form never writes one)."""
    out = []
    raw = hours.get(DAYS[day % 7])
    for pair in raw if isinstance(raw, list) else []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            parsed = _range(pair[0], pair[1])
            if parsed is not None:
                out.append(parsed)
    return sorted(out)


def _zone(hours: Mapping[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(str(hours.get("tz") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_open(hours: Mapping[str, Any] | None, now: datetime) -> tuple[bool, str]:
    """``(True, "")`` when open at ``now`` (an aware datetime), else ``(False, reason)`` with a
    sentence for the customer: "We're closed; we open again Tuesday at 08:00."

    Times are the shop's local wall-clock times in ``hours["tz"]``.
    """
    if not hours or not any(d in hours for d in DAYS):
        return True, ""  # no schedule: always open
    zone = _zone(hours)
    local = now.astimezone(zone)
    # Local wall-clock minutes since midnight; compared with the schedule's wall-clock times.
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    for start, end in _ranges(hours, weekday):
        if start <= minute < end:
            return True, ""
    for _start, end in _ranges(hours, weekday - 1):
        if end > DAY_MINUTES and minute < end - DAY_MINUTES:
            return True, ""  # yesterday's overnight range
    opening = next_opening(hours, now)
    if opening is None:
        return False, "We're closed."
    days, day, clock = opening
    when = "today" if days == 0 else DAY_NAMES[day]
    return False, f"We're closed; we open again {when} at {clock}."


def next_opening(hours: Mapping[str, Any] | None, now: datetime) -> tuple[int, int, str] | None:
    """The next opening after ``now`` in the shop's time zone: ``(days from today, weekday
    (0 is Monday), "HH:MM")``, or None when the schedule opens on no day."""
    if not hours:
        return None
    local = now.astimezone(_zone(hours))
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    for offset in range(8):
        for start, _end in _ranges(hours, weekday + offset):
            if offset == 0 and start <= minute:
                continue
            return offset, (weekday + offset) % 7, _clock(start)
    return None
