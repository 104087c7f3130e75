"""The documented multi-worker command, for real: ``uvicorn --factory server.app:app_from_env
--workers 2`` on PostgreSQL + Redis serves a whole order, and a rolling restart (SIGHUP) moves
an open stream to a fresh worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.db import Database
from server.migrate import upgrade
from tests import services
from tests.conftest import TEST_SECRET, free_port
from tests.scale.seed import seed_shop
from tests.scale.sse import iter_events

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workers(
    pg_database_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    upgrade(pg_database_url)
    db = Database(pg_database_url)
    shop_id, _ = seed_shop(db)
    db.dispose()
    port = free_port()
    redis = services.redis_url()
    env = {
        **os.environ,
        "DATABASE_URL": pg_database_url,
        "REDIS_URL": redis,
        "SECRET_KEY": TEST_SECRET,
        "DATA_DIR": str(tmp_path),
        "ASSISTANT": "offline",
        "PAYMENTS": "demo",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "warning",
        "IP_RATE_PER_MINUTE": "1000",
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "server.app:app_from_env", "--workers", "2",
        "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "10",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"workers did not start: {proc.communicate()[1][-2000:]!r}")
        time.sleep(0.1)
    try:
        yield proc, url, shop_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chat(http: httpx.Client, url: str, body: dict) -> list:  # type: ignore[type-arg]
    for _ in range(50):  # the previous reply may still be closing on the other worker
        with http.stream("POST", url, json=body) as r:
            if r.status_code == 409:
                r.read()
                time.sleep(0.05)
                continue
            assert r.status_code == 200, r.read()
            return list(iter_events(r))
    raise AssertionError("still 409")


def follow_and_pay(
    http: httpx.Client, url: str, order_id: str, token: str, paying: bool
) -> tuple[dict | None, bool]:  # type: ignore[type-arg]
    """One connection to the order stream: pay once it shows the order unpaid; returns the paid
    order (or None when the stream ended first) and whether payment was sent."""
    with http.stream("GET", f"{url}/api/order/{order_id}/events", params={"token": token}) as r:
        for event in iter_events(r):
            if event.event == "error":
                assert event.data["code"] == "shutdown"
                return None, paying
            if event.data["status"] == "awaiting_payment" and not paying:
                pay = http.post(
                    f"{url}/pay/demo/{order_id}", data={"token": token, "action": "pay"}
                )
                assert pay.status_code in (200, 303), pay.text
                paying = True
            if event.data["status"] == "paid":
                return event.data, paying
    return None, paying


def test_two_workers_take_an_order_and_survive_a_rolling_restart(
    workers: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    proc, url, shop_id = workers
    name = f"Ana{uuid.uuid4().hex[:4]}"
    with httpx.Client(timeout=30) as http:
        first = chat(
            http, f"{url}/api/chat/{shop_id}", {"message": f"two lattes please, I'm {name}"}
        )
        thread = first[0].data
        ids = {"thread_id": thread["thread_id"], "thread_token": thread["thread_token"]}
        second = chat(http, f"{url}/api/chat/{shop_id}", {"message": "that's all", **ids})
        order = next(e.data["order"] for e in second if e.event == "order")
        r = http.post(
            f"{url}/api/order/{shop_id}",
            json={"order_id": order["order_id"], "thread_token": ids["thread_token"]},
        )
        order_token = r.json()["order_token"]

        seen = []
        with http.stream(
            "GET", f"{url}/api/order/{order['order_id']}/events", params={"token": order_token}
        ) as r:
            for event in iter_events(r):
                seen.append(event)
                if len(seen) == 1:
                    proc.send_signal(signal.SIGHUP)  # replace the workers one by one
        assert seen[0].data["status"] == "awaiting_payment"
        assert seen[-1].event == "error" and seen[-1].data["code"] == "shutdown"

    # Reconnect like EventSource does (again if it lands on the other old worker while it is
    # being replaced, or if the connection is cut as that worker stops); the payment, handled by
    # whichever worker gets it (paying twice changes nothing), reaches the stream.
    paid, paying = None, False
    fresh = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
    with fresh:
        for _ in range(10):
            try:
                paid, paying = follow_and_pay(fresh, url, order["order_id"], order_token, paying)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if paid is not None:
                break
    assert paid is not None and paid["fulfillment"]["name"] == name
    assert proc.poll() is None  # the master kept running through the restart
