"""The owner's orders: list and filters, status buttons along the state machine, flagged
orders, the CSV export, and the live stream."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.db import Database
from server.ids import utcnow
from server.models import Order
from server.owners.orders import csv_safe, owner_next_statuses, parse_order_filter
from tests.owners.helpers import (
    make_catalog,
    make_order,
    make_payable_order,
    make_shop,
    owner_id_of,
    pay_in_demo_checkout,
    session_csrf,
    signup,
)


@pytest.fixture
def shop(client: TestClient, db: Database) -> str:
    signup(client, "ana@example.com")
    return make_shop(db, owner_id_of(db, "ana@example.com"))


def _patch(c: TestClient, order_id: str, status: str) -> httpx.Response:
    return c.patch(
        f"/api/orders/{order_id}",
        json={"status": status},
        headers={"X-CSRF-Token": session_csrf(c)},
    )


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1 555", "'+1 555"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("Ana", "Ana"),
        ("4.50", "4.50"),
        (None, ""),
        ("a=b", "a=b"),
    ],
)
def test_csv_cells_never_start_like_a_formula(value: str | None, cell: str) -> None:
    assert csv_safe(value) == cell


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        ("awaiting_payment", ["cancelled"]),
        ("paid", ["preparing", "ready", "completed"]),
        ("preparing", ["ready", "completed"]),
        ("ready", ["completed"]),
        ("completed", []),
        ("cancelled", []),
        ("refunded", []),
        ("expired", ["cancelled"]),
    ],
)
def test_status_buttons_follow_the_state_machine(status: str, buttons: list[str]) -> None:
    assert owner_next_statuses(status) == buttons


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"status": "shipped"}, "status: unknown status"),
        ({"since": "yesterday"}, "since: use an ISO time"),
        ({"limit": "0"}, "limit: must be between"),
        ({"limit": "x"}, "limit: must be a whole number"),
        ({"cursor": "!!!"}, "cursor:"),
    ],
)
def test_bad_list_parameters_are_named(params: dict[str, str], problem: str) -> None:
    from server.errors import Unprocessable

    with pytest.raises(Unprocessable, match=problem):
        parse_order_filter(params)


def test_orders_move_through_preparation_to_completion(
    client: TestClient, db: Database, shop: str
) -> None:
    order_id = make_order(db, shop, status="paid")
    page = client.get(f"/dashboard/shops/{shop}/orders/{order_id}").text
    assert (
        "Mark preparing" in page and "Cancel order" not in page
    )  # a paid order is not cancelled here
    for target in ("preparing", "ready"):
        r = client.post(
            f"/dashboard/shops/{shop}/orders/{order_id}/status",
            data={"csrf_token": session_csrf(client), "status": target},
            follow_redirects=False,
        )
        assert r.status_code == 303
    r = _patch(client, order_id, "completed")
    assert (
        r.status_code == 200
        and r.json()["status"] == "completed"
        and r.json()["next_statuses"] == []
    )
    assert _patch(client, order_id, "completed").status_code == 200  # a double click is harmless
    r = _patch(client, order_id, "preparing")
    assert r.status_code == 409 and "cannot become preparing" in r.json()["detail"]
    assert _patch(client, order_id, "paid").status_code == 422  # not an owner move
    page = client.get(f"/dashboard/shops/{shop}/orders/{order_id}").text
    assert "paid → preparing" in page and "ready → completed" in page


def test_unpaid_order_can_be_cancelled_but_not_prepared(
    client: TestClient, db: Database, shop: str
) -> None:
    order_id = make_order(db, shop, status="awaiting_payment")
    assert _patch(client, order_id, "preparing").status_code == 409
    assert _patch(client, order_id, "cancelled").json()["status"] == "cancelled"


def test_flagged_order_is_shown_plainly(client: TestClient, db: Database, shop: str) -> None:
    order_id = make_order(
        db,
        shop,
        status="paid",
        flagged=True,
        flag_reason="amount paid 500 differs from total 900",
        amount_paid=500,
    )
    listing = client.get(f"/dashboard/shops/{shop}/orders").text
    assert "Check payment: amount paid 500 differs from total 900" in listing
    detail = client.get(f"/dashboard/shops/{shop}/orders/{order_id}").text
    assert (
        "Check this payment before you hand anything over." in detail
        and "paid $5.00 of $9.00" in detail
    )
    assert client.get(f"/api/orders/{order_id}").json()["flagged"] is True


def test_orders_page_lists_paid_orders_newest_first(
    client: TestClient, db: Database, shop: str
) -> None:
    first = make_order(db, shop, status="paid", name="First")
    second = make_order(db, shop, status="ready", name="Second")
    unpaid = make_order(db, shop, status="awaiting_payment", name="Browsing")
    page = client.get(f"/dashboard/shops/{shop}/orders").text
    assert page.index(second) < page.index(first) and unpaid not in page
    assert unpaid in client.get(f"/dashboard/shops/{shop}/orders?all=1").text


def test_the_owner_sees_each_orders_short_number(
    client: TestClient, db: Database, shop: str
) -> None:
    ids = [make_order(db, shop, status="paid", name=name) for name in ("Ana", "Ben", "Cy")]
    listing = client.get(f"/dashboard/shops/{shop}/orders").text
    for number, order_id in enumerate(ids, start=1):
        assert f'/orders/{order_id}">#{number}</a>' in listing
    detail = client.get(f"/dashboard/shops/{shop}/orders/{ids[1]}").text
    assert "<title>Order #2" in detail and '<span class="order-no">#2</span>' in detail
    assert f'<p class="muted small order-id">{ids[1]}</p>' in detail  # the id, smaller

    api = client.get(f"/api/shops/{shop}/orders").json()["orders"]
    assert [(o["number"], o["order_id"]) for o in api] == [(3, ids[2]), (2, ids[1]), (1, ids[0])]
    assert client.get(f"/api/orders/{ids[0]}").json()["number"] == 1
    # The number the customer says finds the order.
    found = client.get(f"/api/shops/{shop}/orders", params={"q": "#2"}).json()["orders"]
    assert [o["order_id"] for o in found] == [ids[1]]
    found = client.get(f"/api/shops/{shop}/orders", params={"q": "3"}).json()["orders"]
    assert ids[2] in [o["order_id"] for o in found]

    export = client.get(f"/dashboard/shops/{shop}/orders.csv").text.lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(export)))
    assert [(r["number"], r["order_id"], r["name"]) for r in rows] == [
        ("3", ids[2], "Cy"),
        ("2", ids[1], "Ben"),
        ("1", ids[0], "Ana"),
    ]


def test_api_filters_and_pages(client: TestClient, db: Database, shop: str) -> None:
    ids = [make_order(db, shop, status="paid", name=f"Guest {i}") for i in range(7)]
    make_order(db, shop, status="ready", name="Zoe")
    with db.write() as s:  # spread creation times so "since" has something to cut
        for n, oid in enumerate(ids):
            o = s.get(Order, oid)
            assert o is not None
            o.created_at = utcnow() - timedelta(hours=10 - n)
            s.add(o)
    base = f"/api/shops/{shop}/orders"
    seen, cursor = [], None
    while True:
        body = client.get(
            base, params={"status": "paid", "limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [o["order_id"] for o in body["orders"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, each once
    assert [
        o["fulfillment"]["name"] for o in client.get(base, params={"q": "zoe"}).json()["orders"]
    ] == ["Zoe"]
    since = (utcnow() - timedelta(hours=4, minutes=30)).isoformat()
    assert len(client.get(base, params={"since": since, "status": "paid"}).json()["orders"]) == 1
    assert client.get(base, params={"status": "bogus"}).status_code == 422


def test_csv_export_is_formula_safe(client: TestClient, db: Database, shop: str) -> None:
    make_order(db, shop, status="paid", name="=cmd|' /C calc'!A0", customer_note="@SUM(1+1)")
    r = client.get(f"/dashboard/shops/{shop}/orders.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert rows[0]["name"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["customer_note"] == "'@SUM(1+1)"
    assert rows[0]["total"] == "9.00" and rows[0]["items"] == "2 x Latte"


def test_a_paid_order_arrives_on_the_live_stream(
    app: Starlette, db: Database, live_server: Any
) -> None:
    server = live_server(app)
    with (
        httpx.Client(base_url=server.url, timeout=10) as owner,
        httpx.Client(base_url=server.url, timeout=10) as customer,
    ):
        token = owner.get("/signup").text.split('name="csrf_token" value="')[1].split('"')[0]
        owner.post(
            "/signup",
            data={"email": "ana@example.com", "password": "correct horse 42", "csrf_token": token},
        )
        shop_id = make_shop(db, owner_id_of(db, "ana@example.com"))
        make_catalog(db, shop_id)
        order_id, thread_token = make_payable_order(db, shop_id)
        with owner.stream(
            "GET", f"/dashboard/shops/{shop_id}/events", headers={"Accept": "text/event-stream"}
        ) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert _next_event(lines)[0] == "ready"
            pay_in_demo_checkout(customer, shop_id, order_id, thread_token)
            event, data = _next_event(lines)
            assert (
                event == "order_paid" and data["order_id"] == order_id and data["status"] == "paid"
            )
            # The owner moves it on; the stream says so too.
            csrf = (
                owner.get("/dashboard").text.split('name="csrf-token" content="')[1].split('"')[0]
            )
            r = owner.patch(
                f"/api/orders/{order_id}",
                json={"status": "preparing"},
                headers={"X-CSRF-Token": csrf},
            )
            assert r.status_code == 200
            event, data = _next_event(lines)
            assert (event, data["status"]) == ("order_status", "preparing")


def _next_event(lines: object) -> tuple[str, dict]:  # type: ignore[type-arg]
    event, data = "", ""
    for line in lines:  # type: ignore[attr-defined]
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
        elif line == "" and event:
            return event, json.loads(data)
    raise AssertionError("stream ended")


def test_the_stream_asks_the_page_to_re_read_after_a_bus_gap(
    app: Starlette, db: Database, live_server: Any
) -> None:
    """With Redis, a reconnect can lose messages; the page is told to re-read the list."""
    bus = app.state.bus
    server = live_server(app)
    with httpx.Client(base_url=server.url, timeout=10) as owner:
        token = owner.get("/signup").text.split('name="csrf_token" value="')[1].split('"')[0]
        owner.post(
            "/signup",
            data={"email": "ana@example.com", "password": "correct horse 42", "csrf_token": token},
        )
        shop_id = make_shop(db, owner_id_of(db, "ana@example.com"))
        order_id = make_order(db, shop_id, status="paid")
        with owner.stream(
            "GET", f"/dashboard/shops/{shop_id}/events", headers={"Accept": "text/event-stream"}
        ) as stream:
            lines = stream.iter_lines()
            assert _next_event(lines)[0] == "ready"
            for sub in list(bus._subs[f"shop:{shop_id}"]):
                sub.reconnects += 1  # what the Redis bus does after it lost its link
            csrf = (
                owner.get("/dashboard").text.split('name="csrf-token" content="')[1].split('"')[0]
            )
            owner.patch(
                f"/api/orders/{order_id}",
                json={"status": "preparing"},
                headers={"X-CSRF-Token": csrf},
            )
            assert _next_event(lines)[0] == "resync"
            event, data = _next_event(lines)
            assert (event, data["order_id"], data["status"]) == (
                "order_status",
                order_id,
                "preparing",
            )
