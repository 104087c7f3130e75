"""The shop notification's delivery log on the owner's order page, and the orders list marking
orders whose notification was given up."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from server.db import Database
from server.ids import utcnow
from server.models import Shop, WebhookDelivery
from server.orders import notify, webhook_client
from server.owners.orders import notification_log
from tests.owners.helpers import make_order, make_shop, owner_id_of, signup

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HOOK_HOST = "hooks.shop.test"
REFUSED = "refused: hooks.example.com resolves to 10.0.0.7, which is not a public address"


def row(
    attempt: int, *, sent: int | None, code: int | None = None, **extra: Any
) -> WebhookDelivery:
    """A delivery row; ``sent`` is seconds after T0, None for an attempt still waiting."""
    return WebhookDelivery(
        shop_id="shp_1",
        order_id="ord_1",
        url="https://hooks.example.com/orders",
        attempt=attempt,
        status_code=code,
        created_at=T0,
        attempted_at=None if sent is None else T0 + timedelta(seconds=sent),
        delivered_at=T0 + timedelta(seconds=sent) if code == 200 and sent is not None else None,
        **extra,
    )


@pytest.mark.parametrize(
    ("rows", "state", "thens"),
    [
        ([row(1, sent=None, next_attempt_at=T0)], "pending", []),
        ([row(1, sent=0, code=200)], "delivered", ["delivered"]),
        (
            [
                row(1, sent=0, code=500),
                row(2, sent=None, next_attempt_at=T0 + timedelta(seconds=2)),
            ],
            "pending",
            ["retry scheduled"],
        ),
        (
            [row(3, sent=12, code=200), row(1, sent=0, code=503), row(2, sent=2, code=429)],
            "delivered",
            ["retried", "retried", "delivered"],
        ),
        ([row(1, sent=0, code=410)], "failed", ["gave up"]),
        ([row(1, sent=0, error=REFUSED)], "failed", ["gave up"]),
        ([row(1, sent=0, error="no notification URL")], "failed", ["gave up"]),
    ],
)
def test_the_log_tells_what_came_of_each_attempt(
    rows: list[WebhookDelivery], state: str, thens: list[str]
) -> None:
    log = notification_log(rows)
    assert log is not None
    assert log.state == state
    assert [a.then for a in log.attempts] == thens
    assert [a.attempt for a in log.attempts] == sorted(a.attempt for a in log.attempts)


def test_an_order_never_notified_has_no_log() -> None:
    assert notification_log([]) is None


def test_a_scheduled_retry_says_when() -> None:
    due = T0 + timedelta(seconds=10)
    log = notification_log([row(1, sent=0, code=502), row(2, sent=None, next_attempt_at=due)])
    assert log is not None and log.attempts[0].retry_at == due and log.due_at == due
    assert log.attempts[0].result == "HTTP 502"


# ---------------------------------------------------------------- the pages


class Receiver:
    """The shop's webhook endpoint: answers each order with its scripted status code."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    async def hook(self, request: Request) -> Response:
        order_id = json.loads(await request.body())["order"]["order_id"]
        return Response(status_code=self.codes[order_id])

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


def resolve_to(*addresses: str) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses) if host == HOOK_HOST else []

    return resolve


def notify_shop(db: Database, shop_id: str, order_id: str, *, allow_private: bool = True) -> None:
    """Queue the paid order's notification and run its attempts, as fulfilment does."""

    async def run() -> None:
        with db.write() as s:
            shop = s.get(Shop, shop_id)
            assert shop is not None
            delivery_id = notify.enqueue_delivery(s, shop, order_id, utcnow())
        notify.spawn(notify.deliver(db, delivery_id, allow_private=allow_private))
        await notify.wait_for_notifications()

    asyncio.run(run())


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def notification_section(page: str) -> tuple[str, list[list[str]]]:
    """The summary line and the table rows (cell texts) of the order page's delivery log."""
    assert "<h3>Shop notification</h3>" in page, "no delivery log on the page"
    section = page.split("<h3>Shop notification</h3>", 1)[1].split("</div>", 1)[0]
    summary = _text(section.split("<table", 1)[0])
    rows = [
        [_text(cell) for cell in re.findall(r"<td>(.*?)</td>", tr, re.S)]
        for tr in re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>", 1)[-1], re.S)
    ]
    return summary, rows


WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def test_the_order_page_shows_each_delivery_attempt(
    client: TestClient,
    app: Starlette,
    db: Database,
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signup(client, "ana@example.com")
    shop = make_shop(db, owner_id_of(db, "ana@example.com"))
    receiver = Receiver()
    port = live_server(receiver.app).port
    url = f"http://{HOOK_HOST}:{port}/hook"
    with db.write() as s:
        row_ = s.get(Shop, shop)
        assert row_ is not None
        row_.notify_webhook_url, row_.notify_webhook_secret = url, "whsec_test"
        s.add(row_)
    monkeypatch.setattr(webhook_client, "resolve", resolve_to("127.0.0.1"))
    delivered, retrying, unreachable, refused = (make_order(db, shop) for _ in range(4))

    receiver.codes[delivered] = 200
    notify_shop(db, shop, delivered)

    receiver.codes[retrying] = 500
    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0, 3600))

    async def process_exits(delay: float) -> None:  # the retry waits for a later sweep
        raise asyncio.CancelledError

    monkeypatch.setattr(notify, "_sleep", process_exits)
    notify_shop(db, shop, retrying)

    monkeypatch.setattr(notify, "NOTIFY_BACKOFF", (0,))  # one attempt only: then it gives up
    monkeypatch.setattr(webhook_client, "resolve", resolve_to())
    notify_shop(db, shop, unreachable)

    monkeypatch.setattr(webhook_client, "resolve", resolve_to("10.0.0.7"))
    notify_shop(db, shop, refused, allow_private=False)  # production: public addresses only

    def page(order_id: str) -> tuple[str, list[list[str]]]:
        r = client.get(f"/dashboard/shops/{shop}/orders/{order_id}")
        assert r.status_code == 200
        return notification_section(r.text)

    summary, rows = page(delivered)
    assert summary == "Delivered"
    assert [(r[0], r[2], r[3]) for r in rows] == [("1", "HTTP 200", "Delivered")]
    assert re.fullmatch(f"{WHEN} {re.escape(url)}", rows[0][1])

    summary, rows = page(retrying)
    assert re.fullmatch(f"Not delivered yet Next attempt, due {WHEN}.", summary)
    [(attempt, _, result, then)] = rows
    assert (attempt, result) == ("1", "HTTP 500")
    assert re.fullmatch(f"Retry scheduled for {WHEN}", then)

    summary, rows = page(unreachable)
    assert summary.startswith("Notification failed Gave up after 1 attempt;")
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("1", f"ConnectError: cannot resolve {HOOK_HOST}: no address", "Gave up")
    ]

    summary, rows = page(refused)
    assert summary.startswith("Notification failed Gave up after 1 attempt;")
    assert [(r[0], r[2], r[3]) for r in rows] == [
        (
            "1",
            f"refused: {HOOK_HOST} resolves to 10.0.0.7, which is not a public address",
            "Gave up",
        )
    ]

    # The orders list marks the two given up, on the page and in the JSON its script re-reads.
    listing = client.get(f"/dashboard/shops/{shop}/orders").text
    marked = {
        oid
        for oid, cells in re.findall(r'<tr data-order-id="([^"]+)"(.*?)</tr>', listing, re.S)
        if "Notification failed" in cells
    }
    assert marked == {unreachable, refused}
    api = client.get(f"/api/shops/{shop}/orders").json()["orders"]
    assert {o["order_id"] for o in api if o["notification_failed"]} == {unreachable, refused}
    assert client.get(f"/api/orders/{refused}").json()["notification_failed"] is True
    assert client.get(f"/api/orders/{delivered}").json()["notification_failed"] is False

    # Another owner sees none of it.
    with TestClient(app) as other:
        signup(other, "bo@example.com")
        r = other.get(f"/dashboard/shops/{shop}/orders/{refused}", headers={"Accept": "text/html"})
        assert r.status_code == 404 and "10.0.0.7" not in r.text


def test_an_error_is_shown_as_text(client: TestClient, db: Database) -> None:
    signup(client, "ana@example.com")
    shop = make_shop(db, owner_id_of(db, "ana@example.com"))
    order = make_order(db, shop)
    with db.write() as s:
        s.add(
            WebhookDelivery(
                shop_id=shop,
                order_id=order,
                url="https://hooks.example.com/<b>",
                attempt=1,
                error="HTTPError: <script>alert(1)</script>",
                attempted_at=utcnow(),
            )
        )
    page = client.get(f"/dashboard/shops/{shop}/orders/{order}").text
    assert "<script>alert(1)</script>" not in page
    assert "HTTPError: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert notification_section(page)[1][0][2] == "HTTPError: <script>alert(1)</script>"


def test_a_shop_without_a_notification_url_says_nothing_of_it(
    client: TestClient, db: Database
) -> None:
    signup(client, "ana@example.com")
    shop = make_shop(db, owner_id_of(db, "ana@example.com"))
    order = make_order(db, shop, status="paid")
    page = client.get(f"/dashboard/shops/{shop}/orders/{order}").text
    assert '<h2>Order <span class="order-no">#1</span>' in page and order in page
    assert "notification" not in page.lower()
    listing = client.get(f"/dashboard/shops/{shop}/orders").text
    assert order[-6:] in listing and "Notification failed" not in listing
