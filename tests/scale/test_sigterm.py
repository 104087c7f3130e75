"""SIGTERM while a customer's stream is open: the stream gets a final retryable event and the
process exits within the grace period instead of hanging on the open connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET, free_port

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 10


def start_server(tmp_path: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
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
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.scale.sigterm_app:build",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        str(GRACE_SECONDS),
        "--log-level",
        "warning",
    ]
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


def test_sigterm_sends_a_final_event_and_exits_within_the_grace_period(
    tmp_path: Path, database_url: str
) -> None:
    proc, url = start_server(tmp_path, database_url)
    try:
        events: list[dict[str, str]] = []
        with (
            httpx.Client(timeout=GRACE_SECONDS * 2) as http,
            http.stream("GET", f"{url}/test/ticker") as r,
        ):
            current: dict[str, str] = {}
            for line in r.iter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    field, _, value = line.partition(":")
                    current[field] = value.lstrip(" ")
                    continue
                events.append(current)
                current = {}
                if len(events) == 1:
                    sent_at = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
        ended_at = time.monotonic()
        code = proc.wait(timeout=GRACE_SECONDS + 5)
        exited_at = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert events[0]["event"] == "status"
    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"])["code"] == "shutdown"
    assert json.loads(events[-1]["data"])["retryable"] is True
    # uvicorn re-raises the captured SIGTERM after its clean shutdown, so -SIGTERM is clean too.
    assert code in (0, -signal.SIGTERM)
    # Generous bounds: the point is "within the grace period", not a stopwatch.
    assert ended_at - sent_at < GRACE_SECONDS
    assert exited_at - sent_at < GRACE_SECONDS + 2
