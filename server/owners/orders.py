"""The owner's view of orders: the filtered, paginated list (a query), the status buttons (a
command following ``server.orders.status``), the shop notification's delivery log (a query of
``WebhookDelivery`` rows), and the CSV export (formula-injection safe)."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, cast, or_
from sqlmodel import Session, col, select

from server.catalog.money import exponent, format_amount
from server.errors import Conflict, Unprocessable
from server.ids import iso
from server.models import Order, WebhookDelivery
from server.orders.create import order_to_json
from server.orders.fulfil import StatusChange, change_status
from server.orders.status import OWNER_TARGETS, STATUSES, can_move

# What the orders page lists by default: orders that were paid (unpaid checkouts are noise).
PAID_VIEW = ("paid", "preparing", "ready", "completed", "refunded")
MAX_PAGE = 200
DEFAULT_PAGE = 50


def owner_order_json(order: Order, *, notification_failed: bool = False) -> dict[str, Any]:
    """The order JSON plus what only the owner sees (flag, amount paid, next moves, and
    whether the shop's notification of it was given up)."""
    return {
        **order_to_json(order),
        "flagged": order.flagged,
        "flag_reason": order.flag_reason,
        "amount_paid": order.amount_paid,
        "payment_mode": order.payment_mode,
        "updated_at": iso(order.updated_at),
        "total_display": format_amount(order.total, order.currency),
        "next_statuses": owner_next_statuses(order.status),
        "notification_failed": notification_failed,
    }


def owner_orders_json(session: Session, orders: list[Order]) -> list[dict[str, Any]]:
    """:func:`owner_order_json` of each order, with its notification's outcome looked up."""
    failed = failed_notifications(session, (o.id for o in orders))
    return [owner_order_json(o, notification_failed=o.id in failed) for o in orders]


def owner_next_statuses(status: str) -> list[str]:
    """The buttons to show: owner moves the state machine allows from ``status``, in order."""
    return [
        s
        for s in ("preparing", "ready", "completed", "cancelled")
        if s in OWNER_TARGETS and can_move(status, s)
    ]


# ---------------------------------------------------------------- the list


@dataclass(frozen=True)
class OrderFilter:
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    q: str = ""
    limit: int = DEFAULT_PAGE
    cursor: tuple[datetime, str] | None = None


def parse_order_filter(params: Mapping[str, str]) -> OrderFilter:
    """``status=paid,preparing`` ``since=ISO`` ``q=text`` ``limit=N`` ``cursor=...`` -> filter.
    Raises Unprocessable naming the parameter."""
    statuses = tuple(s.strip() for s in params.get("status", "").split(",") if s.strip())
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise Unprocessable(
            f"status: unknown status {unknown[0]!r} (one of {', '.join(STATUSES)})."
        )
    since = _parse_time(params["since"], "since") if params.get("since") else None
    try:
        limit = int(params.get("limit") or DEFAULT_PAGE)
    except ValueError:
        raise Unprocessable("limit: must be a whole number.") from None
    if not 1 <= limit <= MAX_PAGE:
        raise Unprocessable(f"limit: must be between 1 and {MAX_PAGE}.")
    cursor = decode_cursor(params["cursor"]) if params.get("cursor") else None
    return OrderFilter(statuses, since, params.get("q", "").strip()[:100], limit, cursor)


def list_orders(session: Session, shop_id: str, f: OrderFilter) -> tuple[list[Order], str | None]:
    """Newest first. Returns a page and the cursor of the next page (None on the last)."""
    stmt = select(Order).where(Order.shop_id == shop_id)
    if f.statuses:
        stmt = stmt.where(col(Order.status).in_(f.statuses))
    if f.since:
        stmt = stmt.where(col(Order.created_at) >= f.since)
    if f.q:
        like = f"%{f.q.replace('%', '').replace('_', '')}%"
        found = [
            col(Order.id).ilike(like),
            cast(Order.fulfillment, String).ilike(like),
            col(Order.customer_note).ilike(like),
        ]
        if (number := order_number_query(f.q)) is not None:
            found.append(col(Order.number) == number)
        stmt = stmt.where(or_(*found))
    if f.cursor:
        at, oid = f.cursor
        stmt = stmt.where(
            or_(col(Order.created_at) < at, (col(Order.created_at) == at) & (col(Order.id) < oid))
        )
    stmt = stmt.order_by(col(Order.created_at).desc(), col(Order.id).desc()).limit(f.limit + 1)
    rows = list(session.exec(stmt).all())
    if len(rows) <= f.limit:
        return rows, None
    last = rows[f.limit - 1]
    return rows[: f.limit], encode_cursor(last.created_at, last.id)


def order_number_query(q: str) -> int | None:
    """``"42"`` or ``"#42"`` -> 42: a search that may be the order number the customer says."""
    digits = q.strip().removeprefix("#").strip()
    return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 9 else None


def encode_cursor(at: datetime, order_id: str) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    raw = f"{at.astimezone(UTC).isoformat()}|{order_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, order_id = raw.split("|", 1)
        return datetime.fromisoformat(at), order_id
    except (ValueError, UnicodeDecodeError):
        raise Unprocessable("cursor: not a cursor this API gave out.") from None


def _parse_time(value: str, name: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Unprocessable(f"{name}: use an ISO time like 2026-01-01T12:00:00Z.") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# ---------------------------------------------------------------- notification log


@dataclass(frozen=True)
class NotificationAttempt:
    """One sent attempt of the shop's notification, as the owner's order page shows it."""

    attempt: int
    sent_at: datetime
    url: str
    result: str  # "HTTP 200", or the error ("refused: ... is not a public address")
    delivered: bool
    # What came of it: "delivered", "retry scheduled", "retried" or "gave up".
    then: str
    retry_at: datetime | None  # when "retry scheduled": when the next attempt is due


@dataclass(frozen=True)
class NotificationLog:
    """The delivery log of one order's notification. ``state`` is "delivered", "pending"
    (an attempt is waiting to be sent, first or retry) or "failed" (given up)."""

    state: str
    attempts: list[NotificationAttempt]
    due_at: datetime | None  # the waiting attempt's due time, when "pending"


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; the column holds UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _attempt_result(row: WebhookDelivery) -> str:
    if row.error:
        return row.error
    return f"HTTP {row.status_code}" if row.status_code is not None else "no answer"


def notification_log(rows: list[WebhookDelivery]) -> NotificationLog | None:
    """The log of one order's delivery rows (pure). None when it was never queued."""
    rows = sorted(rows, key=lambda r: r.attempt)
    if not rows:
        return None
    waiting = [r for r in rows if r.attempted_at is None and r.next_attempt_at is not None]
    attempts = []
    for n, row in enumerate(rows):
        if row.attempted_at is None:
            continue  # the attempt waiting to be sent: told by the one before it, or the state
        following = rows[n + 1] if n + 1 < len(rows) else None
        retry_at = None
        if row.delivered_at is not None:
            then = "delivered"
        elif following is None:
            then = "gave up"
        elif following.attempted_at is None and following.next_attempt_at is not None:
            then, retry_at = "retry scheduled", _utc(following.next_attempt_at)
        else:
            then = "retried"
        attempts.append(
            NotificationAttempt(
                attempt=row.attempt,
                sent_at=_utc(row.attempted_at),
                url=row.url,
                result=_attempt_result(row),
                delivered=row.delivered_at is not None,
                then=then,
                retry_at=retry_at,
            )
        )
    if any(a.delivered for a in attempts):
        return NotificationLog("delivered", attempts, None)
    if waiting:
        due = waiting[-1].next_attempt_at
        return NotificationLog("pending", attempts, _utc(due) if due else None)
    return NotificationLog("failed", attempts, None)


def order_notifications(session: Session, order_id: str) -> NotificationLog | None:
    """The delivery log of the order's notification to its shop (query)."""
    rows = session.exec(select(WebhookDelivery).where(WebhookDelivery.order_id == order_id)).all()
    return notification_log(list(rows))


def failed_notifications(session: Session, order_ids: Iterable[str]) -> set[str]:
    """Which of these orders' notifications were given up without being delivered (query)."""
    ids = list(order_ids)
    if not ids:
        return set()
    rows = session.exec(select(WebhookDelivery).where(col(WebhookDelivery.order_id).in_(ids))).all()
    by_order: dict[str, list[WebhookDelivery]] = {}
    for row in rows:
        by_order.setdefault(row.order_id, []).append(row)
    return {
        oid
        for oid, found in by_order.items()
        if (log := notification_log(found)) is not None and log.state == "failed"
    }


# ---------------------------------------------------------------- status buttons


def move_order(session: Session, order: Order, target: str, *, actor: str) -> StatusChange | None:
    """Move the order as the owner asks, through the shared status command. Returns None when
    it already has that status (a double click); raises Unprocessable for a status owners cannot
    set and Conflict for a move the state machine forbids. The caller runs ``after_commit``."""
    if target not in OWNER_TARGETS:
        raise Unprocessable(f"status: owners can set {', '.join(sorted(OWNER_TARGETS))}.")
    if order.status == target:
        return None
    if not can_move(order.status, target):
        raise Conflict(
            f"An order that is {order.status.replace('_', ' ')} cannot become {target}.",
            status=order.status,
        )
    return change_status(session, order, target, source=f"owner:{actor}")


# ---------------------------------------------------------------- CSV export

CSV_COLUMNS = (
    "number", "order_id", "created_at", "paid_at", "status", "fulfillment", "name", "phone", "table",
    "address", "items", "subtotal", "tax", "tip", "total", "currency", "amount_paid", "flagged",
    "flag_reason", "customer_note",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _decimal(amount: int | None, currency: str) -> str:
    if amount is None:
        return ""
    exp = exponent(currency)
    if not exp:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


def _items_text(items: Iterable[dict[str, Any]]) -> str:
    parts = []
    for item in items:
        opts = ", ".join(str(o.get("choice", "")) for o in item.get("options") or [])
        parts.append(
            f"{item.get('quantity', 1)} x {item.get('name', '')}" + (f" ({opts})" if opts else "")
        )
    return "; ".join(parts)


def orders_csv(orders: Iterable[Order]) -> str:
    """Orders as CSV, amounts in major units, every cell formula-safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for o in orders:
        ful = o.fulfillment or {}
        row = [
            o.number, o.id, iso(o.created_at), iso(o.paid_at), o.status, ful.get("type"),
            ful.get("name"), ful.get("phone"), ful.get("table"), ful.get("address"),
            _items_text(o.items or []),
            _decimal(o.subtotal, o.currency), _decimal(o.tax, o.currency), _decimal(o.tip, o.currency),
            _decimal(o.total, o.currency), o.currency, _decimal(o.amount_paid, o.currency),
            "yes" if o.flagged else "", o.flag_reason, o.customer_note,
        ]  # fmt: skip
        writer.writerow([csv_safe(v) for v in row])
    return out.getvalue()
