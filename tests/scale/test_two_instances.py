"""Two app instances (two uvicorn servers) sharing one PostgreSQL database and one Redis: what
a customer or owner starts on one is seen and finished on the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import delete

from server import models
from server.app import create_app
from server.chat import runner as runner_module
from server.db import Database
from server.ids import hash_token, new_id, new_token
from server.migrate import upgrade
from server.owners.service import create_owner
from server.owners.tokens import create_api_token
from server.redis_bus import RedisBus, RedisRateLimiter
from server.settings import Settings
from server.shops.service import create_shop
from tests import services
from tests.conftest import LiveServer
from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.fake_stripe import make_event, signed_event
from tests.scale.redis_process import RedisProcess
from tests.scale.seed import EXAMPLES
from tests.scale.sse import StreamWatcher, iter_events

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

WHSEC = "whsec_two_instances_test"
IP_LIMIT = 3
REPLY = " ".join(f"w{i}" for i in range(30))


@dataclass
class Pair:
    a: LiveServer
    b: LiveServer
    db: Database
    settings: Settings
    fake: FakeOpenAI
    shop_id: str
    owner_token: str


@pytest.fixture
def start_pair(
    pg_database_url: str,
    settings: Settings,
    fake_openai: FakeOpenAI,
    live_server: Callable[..., LiveServer],
) -> Iterator[Callable[..., Pair]]:
    """Factory: two servers on one fresh PostgreSQL database and one Redis (``redis_url``,
    default the shared test Redis), with a shop, its owner and an API token."""
    upgrade(pg_database_url)
    databases: list[Database] = []

    def start(redis_url: str | None = None, **changes: object) -> Pair:
        redis = redis_url or services.redis_url()
        prefix = f"t{uuid.uuid4().hex[:8]}:"
        shared = settings.with_(
            database_url=pg_database_url,
            redis_url=redis,
            assistant="openai",
            openai_base_url=fake_openai.base_url,
            openai_api_key="sk-test",
            llm_max_retries=0,
            stripe_webhook_secret=WHSEC,
            ip_rate_per_minute=IP_LIMIT,
            **changes,
        )
        db = Database(pg_database_url)
        databases.append(db)
        with db.write() as s:
            owner = create_owner(
                s, f"owner-{uuid.uuid4().hex[:6]}@example.com", "correct horse battery"
            )
            shop = create_shop(s, name="Two Instance Cafe", currency="usd", owner_id=owner.id)
            from server.catalog.service import import_catalog

            import_catalog(s, shop, (EXAMPLES / "coffee.csv").read_bytes(), "coffee.csv")
            _, owner_token = create_api_token(s, owner.id, "test")
            shop_id = shop.id

        servers = []
        for _ in range(2):
            # Each instance: its own app, engine and Redis connections; a per-test key prefix
            # keeps parallel runs apart.
            app_db = Database(pg_database_url)
            databases.append(app_db)
            app = create_app(shared, db=app_db, bus=RedisBus(redis, prefix=prefix))
            app.state.limiter = RedisRateLimiter(redis, prefix=prefix)
            servers.append(live_server(app))
        return Pair(servers[0], servers[1], db, shared, fake_openai, shop_id, owner_token)

    yield start
    for database in databases:
        database.dispose()


@pytest.fixture
def pair(start_pair: Callable[..., Pair]) -> Pair:
    return start_pair()


def test_a_reply_started_on_a_is_resumed_from_b(pair: Pair) -> None:
    pair.fake.add_text(REPLY, delay=0.03)
    seen = []
    with httpx.Client(timeout=30) as http:
        with http.stream(
            "POST", f"{pair.a.url}/api/chat/{pair.shop_id}", json={"message": "hi"}
        ) as r:
            assert r.status_code == 200
            for event in iter_events(r):
                seen.append(event)
                if sum(e.event == "delta" for e in seen) == 3:
                    break  # the customer's connection drops mid-reply
        thread = seen[0].data
        resumed = []
        with http.stream(
            "GET",
            f"{pair.b.url}/api/chat/{pair.shop_id}/threads/{thread['thread_id']}/events",
            headers={"X-Thread-Token": thread["thread_token"], "Last-Event-ID": seen[-1].id or "0"},
        ) as r:
            assert r.status_code == 200
            for event in iter_events(r):
                resumed.append(event)
                if event.event in ("done", "error"):
                    break
    ids = [int(e.id) for e in seen + resumed if e.id]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no repeat across instances
    text = "".join(e.data["text"] for e in seen + resumed if e.event == "delta")
    assert text == REPLY
    assert resumed[-1].event == "done"


def make_payable_order(pair: Pair) -> tuple[str, str, int]:
    """An order on a cashier thread (as the Cashier leaves it); (order_id, thread token, total)."""
    from server.catalog.service import load_menu
    from server.orders.create import create_order, price_items

    token = new_token()
    with pair.db.write() as s:
        shop = s.get(models.Shop, pair.shop_id)
        menu = load_menu(s, pair.shop_id)
        assert shop is not None and menu is not None
        thread = models.Thread(
            id=new_id("thr"), shop_id=shop.id, token_hash=hash_token(token), role="cashier"
        )
        s.add(thread)
        s.flush()
        lines = price_items(menu, [{"product_id": "latte", "quantity": 2}])
        order = create_order(
            s,
            shop=shop,
            menu=menu,
            lines=lines,
            thread_id=thread.id,
            fulfillment={"type": "pickup", "name": "Ana"},
        )
        return order.id, token, order.total


def deliver_paid_webhook(
    http: httpx.Client, server: LiveServer, pair: Pair, order_id: str, total: int
) -> None:
    """Stripe's ``checkout.session.completed`` for the order's checkout session, signed,
    delivered to ``server``."""
    with pair.db.read() as s:
        order = s.get(models.Order, order_id)
        assert order is not None and order.checkout_session_id
        session_id = order.checkout_session_id
    session = {
        "id": session_id,
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": total,
        "currency": "usd",
        "client_reference_id": order_id,
        "metadata": {"order_id": order_id, "shop_id": pair.shop_id},
        "payment_intent": f"pi_{order_id}",
    }
    body, headers = signed_event(make_event("checkout.session.completed", session), WHSEC)
    r = http.post(f"{server.url}/api/stripe/webhook", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "paid"


def _events_on(
    http: httpx.Client, server: LiveServer, pair: Pair, thread: dict[str, Any], after: str
) -> list[Any]:
    """``GET .../events`` on ``server`` until the turn ends (a new thread may take a moment
    to be stored: 404 is retried briefly)."""
    url = f"{server.url}/api/chat/{pair.shop_id}/threads/{thread['thread_id']}/events"
    headers = {"X-Thread-Token": thread["thread_token"], "Last-Event-ID": after}
    deadline = time.monotonic() + 5
    while True:
        with http.stream("GET", url, headers=headers) as r:
            if r.status_code == 404 and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            assert r.status_code == 200
            events = []
            for event in iter_events(r):
                events.append(event)
                if event.event in ("done", "error"):
                    break
            return events


def test_a_follower_on_b_before_a_stored_any_event_follows_the_reply_to_its_end(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn stores its events in batches; a customer whose stream moved to B before the
    first batch (nothing stored yet) still gets the whole reply from A, live."""
    monkeypatch.setattr(runner_module, "FLUSH_SECONDS", 30.0)  # A stores only at the end
    pair.fake.add_text(REPLY, delay=0.03)
    with httpx.Client(timeout=30) as http:
        with http.stream(
            "POST", f"{pair.a.url}/api/chat/{pair.shop_id}", json={"message": "hi"}
        ) as r:
            first = next(iter_events(r))  # the thread event; then the connection drops
        assert first.event == "thread"
        resumed = _events_on(http, pair.b, pair, first.data, first.id or "0")
    assert [e.event for e in resumed][-1] == "done"
    assert "".join(e.data["text"] for e in resumed if e.event == "delta") == REPLY
    ids = [int(e.id) for e in [first, *resumed] if e.id]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_a_new_thread_asked_on_b_before_a_stored_it_is_waited_for(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread event comes as the first turn starts; the thread row is stored just after.
    Asked on B in between, the thread is waited for (A's turn holds its claim), not 404."""
    store = runner_module.ChatRunner._open_turns

    def slow_store(self: runner_module.ChatRunner, loop: Any) -> None:
        time.sleep(0.5)  # on A's writer thread: the thread row lands half a second late
        store(self, loop)

    monkeypatch.setattr(runner_module.ChatRunner, "_open_turns", slow_store)
    pair.fake.add_text("Hello there, what can I get you?", delay=0.01)
    with httpx.Client(timeout=30) as http:
        with http.stream(
            "POST", f"{pair.a.url}/api/chat/{pair.shop_id}", json={"message": "hi"}
        ) as r:
            first = next(iter_events(r))
        thread = first.data
        url = f"{pair.b.url}/api/chat/{pair.shop_id}/threads/{thread['thread_id']}"
        view = http.get(url, headers={"X-Thread-Token": thread["thread_token"]})
        assert view.status_code == 200, view.text
        assert view.json()["messages"][0]["content"] == "hi"
        wrong = http.get(url, headers={"X-Thread-Token": "not-the-token"})
        assert wrong.status_code == 404


def test_a_turn_whose_worker_died_ends_its_followers_at_once_as_interrupted(pair: Pair) -> None:
    """No claim and no stored end: the turn was cut short (its worker died). A follower on
    another worker says so within a second or two instead of waiting out the idle timeout."""
    pair.fake.add_text("Hello there, what can I get you?")
    with httpx.Client(timeout=30) as http:
        with http.stream(
            "POST", f"{pair.a.url}/api/chat/{pair.shop_id}", json={"message": "hi"}
        ) as r:
            events = list(iter_events(r))
        assert events[-1].event == "done"
        thread = events[0].data
        with pair.db.write() as s:  # as if A died after storing the reply's text
            s.execute(
                delete(models.ThreadEvent).where(
                    models.ThreadEvent.thread_id == thread["thread_id"],
                    models.ThreadEvent.event == "done",
                )
            )
        start = time.monotonic()
        replay = _events_on(http, pair.b, pair, thread, "0")
    assert time.monotonic() - start < 5
    assert [e.event for e in replay[:-1]] == [e.event for e in events[:-1]]
    assert replay[-1].event == "error" and replay[-1].data["code"] == "interrupted"


def test_an_order_opened_on_a_and_paid_by_a_webhook_on_b_reaches_streams_on_a(pair: Pair) -> None:
    order_id, thread_token, total = make_payable_order(pair)
    with httpx.Client(timeout=30) as http:
        r = http.post(
            f"{pair.a.url}/api/order/{pair.shop_id}",
            json={"order_id": order_id, "thread_token": thread_token},
        )
        assert r.status_code == 200, r.text
        order_token = r.json()["order_token"]

        widget = StreamWatcher(
            http,
            "GET",
            f"{pair.a.url}/api/order/{order_id}/events",
            until=lambda e: e.event == "status" and e.data["status"] == "paid",
            kwargs={"params": {"token": order_token}},
        ).start()
        dashboard = StreamWatcher(
            http,
            "GET",
            f"{pair.a.url}/dashboard/shops/{pair.shop_id}/events",
            until=lambda e: e.event == "order_paid" and e.data["order_id"] == order_id,
            kwargs={"headers": {"Authorization": f"Bearer {pair.owner_token}"}},
        ).start()
        assert widget.first.wait(10) and dashboard.first.wait(10)
        assert widget.events[0].data["status"] == "awaiting_payment"

        deliver_paid_webhook(http, pair.b, pair, order_id, total)

        assert widget.matched.wait(15), (widget.error, [e.event for e in widget.events])
        assert dashboard.matched.wait(15), (dashboard.error, [e.event for e in dashboard.events])
        status = http.get(
            f"{pair.a.url}/api/order/status/{order_id}", params={"token": order_token}
        ).json()
    assert status["status"] == "paid"


def test_rate_limits_hold_across_both_instances(pair: Pair) -> None:
    codes = []
    with httpx.Client(timeout=30) as http:
        for i in range(IP_LIMIT + 2):
            server = pair.a if i % 2 == 0 else pair.b
            with http.stream(
                "POST", f"{server.url}/api/chat/{pair.shop_id}", json={"message": "hi"}
            ) as r:
                codes.append(r.status_code)
                r.read()
    # Together the two instances allow the per-IP limit once, not once each.
    assert codes == [200] * IP_LIMIT + [429, 429]


def test_a_payment_during_a_redis_outage_still_reaches_both_streams(
    start_pair: Callable[..., Pair], tmp_path: Path
) -> None:
    """Redis down then up: the payment lands on B while Redis is down; A's order stream finds
    it in the database on its next ping, and A's dashboard stream tells the page to reload its
    list (``resync``), which shows the order paid."""
    redis_proc = RedisProcess(tmp_path).start()
    try:
        pair = start_pair(redis_proc.url, sse_ping_seconds=1)
        order_id, thread_token, total = make_payable_order(pair)
        auth = {"Authorization": f"Bearer {pair.owner_token}"}
        with httpx.Client(timeout=30) as http:
            r = http.post(
                f"{pair.a.url}/api/order/{pair.shop_id}",
                json={"order_id": order_id, "thread_token": thread_token},
            )
            order_token = r.json()["order_token"]
            widget = StreamWatcher(
                http,
                "GET",
                f"{pair.a.url}/api/order/{order_id}/events",
                until=lambda e: e.event == "status" and e.data["status"] == "paid",
                kwargs={"params": {"token": order_token}},
            ).start()
            dashboard = StreamWatcher(
                http,
                "GET",
                f"{pair.a.url}/dashboard/shops/{pair.shop_id}/events",
                until=lambda e: e.event == "resync",
                kwargs={"headers": auth},
            ).start()
            assert widget.first.wait(10) and dashboard.first.wait(10)

            redis_proc.stop()
            deliver_paid_webhook(http, pair.b, pair, order_id, total)  # the bus message is lost
            assert widget.matched.wait(15), [e.data for e in widget.events]

            redis_proc.start()
            assert dashboard.matched.wait(15), [e.event for e in dashboard.events]
            listed = http.get(f"{pair.a.url}/api/shops/{pair.shop_id}/orders", headers=auth)
            statuses = {o["order_id"]: o["status"] for o in listed.json()["orders"]}
        assert statuses[order_id] == "paid"
    finally:
        redis_proc.stop()
