"""Benchmark: a burst of 500 signed Stripe webhook deliveries, 20% of them duplicates, against a
live uvicorn server (its own process) on SQLite. Reports drain time, handling time (p50/p99,
measured in the server) and double fulfilments (must be 0: one move to ``paid`` and one order
file per order). Baseline: the same burst against a bare endpoint that only verifies the
signature, served the same way.

``python -m tests.perf.bench_webhooks`` prints the rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from server import models
from server.app import create_app
from server.db import Database
from server.ids import hash_token, new_id
from server.migrate import upgrade
from server.payments.gateway import verify_stripe_signature
from server.settings import Settings
from tests.fakes.fake_stripe import make_event, signed_event

DELIVERIES = 500
DUPLICATE_SHARE = 0.20
CONCURRENCY = 50  # connections the sender keeps open at once (Stripe delivers in parallel)
SECRET = "whsec_bench_0123456789abcdef"


class Timed:
    """ASGI wrapper: how long the server spent on each request, first byte in to last byte out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.samples: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        await self.app(scope, receive, send)
        self.samples.append(time.perf_counter() - start)


def _orders(db: Database, n: int) -> list[tuple[str, str, int]]:
    with db.write() as s:
        shop = models.Shop(id=new_id("shp"), name="Bench", slug=new_id("b"))
        s.add(shop)
        s.flush()
        out = []
        for i in range(n):
            thread = models.Thread(id=new_id("thr"), shop_id=shop.id, token_hash=hash_token(str(i)))
            s.add(thread)
            s.flush()
            total = 500 + i
            order_id = new_id("ord")
            order = models.Order(
                id=order_id,
                shop_id=shop.id,
                number=i + 1,
                thread_id=thread.id,
                currency="usd",
                items=[
                    {
                        "line_id": "l1",
                        "product_id": "latte",
                        "name": "Latte",
                        "quantity": 1,
                        "options": [],
                        "note": None,
                        "unit_price": total,
                        "line_total": total,
                    }
                ],
                subtotal=total,
                total=total,
                catalog_version=1,
                checkout_session_id="cs_" + order_id,  # the session _deliveries() completes
                payment_mode="stripe",
            )
            s.add(order)
            out.append((order.id, shop.id, total))
        shop.order_seq = n
    return out


def _deliveries(orders: list[tuple[str, str, int]]) -> list[tuple[bytes, dict[str, str]]]:
    rng = random.Random(7)
    unique = []
    for order_id, shop_id, total in orders:
        session = {
            "id": "cs_" + order_id,
            "object": "checkout.session",
            "payment_status": "paid",
            "amount_total": total,
            "currency": "usd",
            "metadata": {"order_id": order_id, "shop_id": shop_id},
            "payment_intent": "pi_" + order_id,
        }
        unique.append(signed_event(make_event("checkout.session.completed", session), SECRET))
    duplicates = [rng.choice(unique) for _ in range(DELIVERIES - len(unique))]
    burst = unique + duplicates
    rng.shuffle(burst)
    return burst


async def _burst(url: str, burst: list[tuple[bytes, dict[str, str]]]) -> tuple[float, list[int]]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(body: bytes, headers: dict[str, str]) -> int:
            async with sem:
                return (await client.post(url, content=body, headers=headers)).status_code

        start = time.perf_counter()
        codes = await asyncio.gather(*(one(b, h) for b, h in burst))
        return time.perf_counter() - start, list(codes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
        payments="demo",
        assistant="offline",
        stripe_webhook_secret=SECRET,
        orders_dir=str(Path(tmp) / "orders"),
        data_dir=tmp,
        log_level="warning",
    )


def _bare_app() -> Starlette:
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        verify_stripe_signature(body, request.headers.get("stripe-signature"), SECRET)
        return JSONResponse({"received": True})

    return Starlette(routes=[Route("/api/stripe/webhook", webhook, methods=["POST"])])


def _serve(kind: str, tmp: str, port: int) -> None:
    """Child process: serve the full app or the bare endpoint; on exit, dump the timings."""
    app = create_app(_settings(tmp)) if kind == "app" else _bare_app()
    timed = Timed(app)
    config = uvicorn.Config(
        timed,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=60,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it stopped on
        pass
    finally:
        Path(tmp, f"samples-{kind}.json").write_text(json.dumps(timed.samples))


def _measure(
    kind: str, tmp: str, burst: list[tuple[bytes, dict[str, str]]]
) -> tuple[float, list[float], list[int]]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.perf.bench_webhooks", "--serve", kind, tmp, str(port)],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the benchmark server did not start") from None
                time.sleep(0.05)
        drain, codes = asyncio.run(_burst(f"http://127.0.0.1:{port}/api/stripe/webhook", burst))
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    samples = json.loads(Path(tmp, f"samples-{kind}.json").read_text())
    return drain, samples, codes


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(tmp)
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        orders = _orders(db, round(DELIVERIES * (1 - DUPLICATE_SHARE)))
        burst = _deliveries(orders)
        drain, samples, codes = _measure("app", tmp, burst)
        base_drain, base_samples, _ = _measure("bare", tmp, burst)
        with db.read() as s:
            paid_moves = Counter(
                s.exec(
                    select(models.OrderStatusChange.order_id).where(
                        models.OrderStatusChange.to_status == "paid"
                    )
                ).all()
            )
            events = len(s.exec(select(models.PaymentEvent.id)).all())
        files = len(list((Path(tmp) / "orders").rglob("*.json")))
        db.dispose()

    doubles = sum(1 for n in paid_moves.values() if n > 1)
    errors = sum(1 for c in codes if c != 200)
    note = f"{DELIVERIES} deliveries ({len(orders)} orders, {DELIVERIES - len(orders)} duplicates), {CONCURRENCY} at a time; uvicorn in its own process, SQLite"
    return [
        {
            "benchmark": "webhooks: drain time",
            "value": round(drain, 2),
            "unit": "s",
            "baseline": round(base_drain, 2),
            "note": note + "; baseline: a bare endpoint that only checks the signature",
        },
        {
            "benchmark": "webhooks: throughput",
            "value": round(DELIVERIES / drain),
            "unit": "deliveries/s",
            "baseline": round(DELIVERIES / base_drain),
            "note": "baseline: signature check only",
        },
        {
            "benchmark": "webhooks: p50 handling time",
            "value": round(_pct(samples, 0.50), 1),
            "unit": "ms",
            "baseline": round(_pct(base_samples, 0.50), 1),
            "note": "in the server, request in to response out, queueing included",
        },
        {
            "benchmark": "webhooks: p99 handling time",
            "value": round(_pct(samples, 0.99), 1),
            "unit": "ms",
            "baseline": round(_pct(base_samples, 0.99), 1),
            "note": "in the server, request in to response out, queueing included",
        },
        {
            "benchmark": "webhooks: double fulfilments",
            "value": doubles,
            "unit": "orders",
            "baseline": 0,
            "note": f"must be 0; orders paid {len(paid_moves)}/{len(orders)}, order files {files}, events stored {events}, non-200 answers {errors}",
        },
    ]


def _print(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(
            f"{row['benchmark']:<32} {row['value']!s:>8} {row['unit']:<13} baseline {row['baseline']!s:>8}   {row['note']}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        _print(run())
