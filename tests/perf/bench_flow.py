"""The whole order flow with the offline assistant, over HTTP against a server process:
chat ("two large oat lattes and a croissant, my name is Ana") -> "that's all" (Cashier, order)
-> open the demo checkout -> pay. Orders per second with 20 customers at once, on SQLite and on
PostgreSQL; beside each, the same flow one customer at a time, in the same run."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from typing import Any

import httpx

from server.db import Database
from tests.perf._support import (
    Subprocess,
    bench_settings,
    cpu_seconds,
    database,
    free_port,
    percentile,
    postgres_admin_url,
    settings_env,
    uvicorn_args,
)
from tests.scale.seed import seed_shop

CONCURRENT = 20
ORDERS = 100
SEQUENTIAL_ORDERS = 15
FIRST_MESSAGE = "two large oat lattes and a croissant, my name is Ana"


RETRIES = {"409": 0}


async def read_sse(
    http: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """POST and read the event stream to its end: ``[(event, data), ...]``."""
    for _ in range(50):
        async with http.stream("POST", url, json=body) as r:
            if r.status_code == 409:  # the previous reply is still being stored: retry
                RETRIES["409"] += 1
                await r.aread()
                await asyncio.sleep(0.02)
                continue
            return await _events(r, url)
    raise RuntimeError(f"{url}: still 409 after 50 tries")


async def _events(r: httpx.Response, url: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    if r.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {r.status_code} {(await r.aread())[:200]!r}")
    async for line in r.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:].strip() or "{}")))
        elif not line:
            name = "message"
    return events


async def one_order(http: httpx.AsyncClient, shop_id: str) -> float:
    """One customer's whole flow; returns its duration in seconds."""
    started = time.perf_counter()
    first = await read_sse(http, f"/api/chat/{shop_id}", {"message": FIRST_MESSAGE})
    thread = next(d for e, d in first if e == "thread")
    ids = {"thread_id": thread["thread_id"], "thread_token": thread["thread_token"]}
    second = await read_sse(http, f"/api/chat/{shop_id}", {"message": "that's all", **ids})
    orders = [d["order"] for e, d in second if e == "order"]
    if not orders:
        raise RuntimeError(f"no order after checkout: {[e for e, _ in second]}")
    order_id = orders[0]["order_id"]
    r = await http.post(
        f"/api/order/{shop_id}", json={"order_id": order_id, "thread_token": ids["thread_token"]}
    )
    r.raise_for_status()
    order_token = r.json()["order_token"]
    r = await http.post(f"/pay/demo/{order_id}", data={"token": order_token, "action": "pay"})
    if r.status_code != 303:
        raise RuntimeError(f"demo pay: HTTP {r.status_code}")
    status = (await http.get(f"/api/order/status/{order_id}", params={"token": order_token})).json()
    if status["status"] != "paid":
        raise RuntimeError(f"order {order_id} is {status['status']} after paying")
    return time.perf_counter() - started


async def burst(
    base_url: str, shop_id: str, total: int, concurrency: int
) -> tuple[float, list[float]]:
    """``total`` flows, ``concurrency`` at a time; (wall seconds, per-flow seconds)."""
    queue = list(range(total))
    durations: list[float] = []
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:

        async def customer() -> None:
            while queue:
                queue.pop()
                durations.append(await one_order(http, shop_id))

        started = time.perf_counter()
        await asyncio.gather(*(customer() for _ in range(concurrency)))
        return time.perf_counter() - started, durations


def measure(kind: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, database(kind) as url:
        settings = bench_settings(url, tmp)
        db = Database(url)
        shop_id, _ = seed_shop(db)
        db.dispose()
        port = free_port()
        with Subprocess(
            uvicorn_args("server.app:app_from_env", port),
            port,
            env=settings_env(settings),
            health="/healthz",
        ) as app:
            asyncio.run(burst(app.url, shop_id, 3, 1))  # warm-up
            seq_wall, _ = asyncio.run(burst(app.url, shop_id, SEQUENTIAL_ORDERS, 1))
            RETRIES["409"] = 0
            cpu_before = cpu_seconds(app.pid)
            wall, durations = asyncio.run(burst(app.url, shop_id, ORDERS, CONCURRENT))
            cpu = cpu_seconds(app.pid) - cpu_before
    return {
        "ops": ORDERS / wall,
        "seq_ops": SEQUENTIAL_ORDERS / seq_wall,
        "p50": percentile(durations, 50),
        "p99": percentile(durations, 99),
        "cpu_ms": cpu / ORDERS * 1000,
        "retries": RETRIES["409"],
    }


def rows_for(label: str, m: dict[str, float]) -> list[dict[str, Any]]:
    return [
        {
            "benchmark": f"order flow: orders/s ({label})",
            "value": round(m["ops"], 1),
            "baseline": round(m["seq_ops"], 1),
            "unit": "orders/s",
            "note": (
                f"{CONCURRENT} customers at once, {ORDERS} orders (chat, checkout, order, demo pay); "
                f"baseline: one customer at a time; flow p50 {m['p50'] * 1000:.0f} ms, p99 {m['p99'] * 1000:.0f} ms"
            ),
        },
        {
            "benchmark": f"order flow: server CPU per order ({label})",
            "value": round(m["cpu_ms"], 1),
            "baseline": "",
            "unit": "ms CPU",
            "note": (
                "user+system time of the server process / orders (6 HTTP requests each); "
                f"{m['retries']} second messages got 409 (previous reply still closing) and were retried"
            ),
        },
    ]


def run() -> list[dict[str, Any]]:
    rows = rows_for("SQLite", measure("sqlite"))
    if postgres_admin_url() is None:
        rows.append(
            {
                "benchmark": "order flow: orders/s (PostgreSQL)",
                "value": "skipped",
                "unit": "",
                "baseline": "",
                "note": "PostgreSQL not reachable (TEST_DATABASE_URL)",
            }
        )
    else:
        rows += rows_for("PostgreSQL", measure("postgres"))
    return rows
