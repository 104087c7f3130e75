"""SIGTERM while a customer follows their order: ``shop-assist serve`` sends the open stream a
final retryable event and exits within the grace period instead of hanging on the connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from server.db import Database
from server.settings import Settings
from tests.conftest import TEST_SECRET, free_port
from tests.scale.seed import seed_order, seed_shop

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 10


def start_serve(tmp_path: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """``shop-assist serve`` in a subprocess; returns it and its base URL once healthy."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "DATA_DIR": str(tmp_path),
        "ASSISTANT": "offline",
        "PAYMENTS": "demo",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "REDIS_URL": "",
        "LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            raise RuntimeError(f"server did not start:\n{out}")
        time.sleep(0.1)


def read_events_until(response: httpx.Response, on_event) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Parse the SSE stream to its end, calling ``on_event(events)`` after each event."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line:
            field, _, value = line.partition(":")
            current[field] = value.lstrip(" ")
            continue
        if current:
            events.append(current)
            current = {}
            on_event(events)
    return events


def test_sigterm_sends_a_final_event_and_exits_within_the_grace_period(
    tmp_path: Path, settings: Settings, database_url: str
) -> None:
    db = Database(database_url)
    try:
        shop_id, _ = seed_shop(db)
        order_id, token = seed_order(db, settings, shop_id)
    finally:
        db.dispose()
    proc, url = start_serve(tmp_path, database_url)
    sent_at = 0.0

    def on_event(events: list[dict[str, str]]) -> None:
        nonlocal sent_at
        if len(events) == 1:
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)

    try:
        with (
            httpx.Client(timeout=GRACE_SECONDS * 2) as http,
            http.stream("GET", f"{url}/api/order/{order_id}/events", params={"token": token}) as r,
        ):
            assert r.status_code == 200
            events = read_events_until(r, on_event)
        ended_at = time.monotonic()
        code = proc.wait(timeout=GRACE_SECONDS + 5)
        exited_at = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert events[0]["event"] == "status"
    assert json.loads(events[0]["data"])["status"] == "awaiting_payment"
    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"])["code"] == "shutdown"
    assert json.loads(events[-1]["data"])["retryable"] is True
    # uvicorn re-raises the captured SIGTERM after its clean shutdown, so -SIGTERM is clean too.
    assert code in (0, -signal.SIGTERM)
    # Generous bounds: the point is "within the grace period", not a stopwatch.
    assert ended_at - sent_at < GRACE_SECONDS
    assert exited_at - sent_at < GRACE_SECONDS + 2
