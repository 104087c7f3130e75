"""Shared pieces of the benchmarks: throwaway settings and databases, servers in threads or
subprocesses, percentiles and peak memory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from server.migrate import upgrade
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far. Unlike latency, CPU per request
    barely moves when other work shares the machine, so benchmarks report it too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_admin_url() -> str | None:
    """``TEST_DATABASE_URL`` (or the CI default) when a PostgreSQL answers there."""
    url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=2
        ):
            return url.replace("postgresql+psycopg://", "postgresql://")
    except Exception:
        return None


@contextlib.contextmanager
def database(kind: str = "sqlite") -> Iterator[str]:
    """A fresh migrated database (``sqlite`` in a temp dir, or ``postgres``), dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sa-bench-") as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            upgrade(url)
            yield url
        return
    import psycopg

    admin = postgres_admin_url()
    if admin is None:
        raise RuntimeError("PostgreSQL is not reachable (TEST_DATABASE_URL)")
    name = f"sa_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    root = admin.rpartition("/")[0].removeprefix("postgresql://")
    url = f"postgresql+psycopg://{root}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(database_url: str, data_dir: str, **changes: object) -> Settings:
    settings = Settings(
        app_env="development",
        public_base_url="http://127.0.0.1:8000",
        database_url=database_url,
        secret_key=SECRET,
        assistant="offline",
        payments="demo",
        orders_dir=str(Path(data_dir) / "orders"),
        data_dir=data_dir,
        log_level="warning",
        # Load tests come from one address: lift the per-IP and per-thread limits.
        ip_rate_per_minute=1_000_000,
        checkout_rate_per_ip=1_000_000,
        thread_rate_per_minute=1_000_000,
        shop_daily_tokens=1_000_000_000,
    )
    return settings.with_(**changes)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make ``Settings.from_env()`` equal ``settings`` (enough of
    them for a server subprocess)."""
    return {
        "APP_ENV": settings.app_env,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "ASSISTANT": settings.assistant,
        "OPENAI_API_KEY": settings.openai_api_key,
        "OPENAI_BASE_URL": settings.openai_base_url,
        "OPENAI_MODEL": settings.openai_model,
        "PAYMENTS": settings.payments,
        "REDIS_URL": settings.redis_url,
        "ORDERS_DIR": settings.orders_dir,
        "DATA_DIR": settings.data_dir,
        "LOG_LEVEL": settings.log_level,
        "IP_RATE_PER_MINUTE": str(settings.ip_rate_per_minute),
        "CHECKOUT_RATE_PER_IP": str(settings.checkout_rate_per_ip),
        "THREAD_RATE_PER_MINUTE": str(settings.thread_rate_per_minute),
        "SHOP_DAILY_TOKENS": str(settings.shop_daily_tokens),
        "LLM_MAX_RETRIES": "0",
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Subprocess:
    """A server in its own process (so its memory and CPU are its own), stopped on exit."""

    def __init__(
        self, args: list[str], port: int, env: dict[str, str] | None = None, health: str = "/"
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + health, timeout=1)
                return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"{args} did not start: {err[-2000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Subprocess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def uvicorn_args(target: str, port: int, *, factory: bool = True) -> list[str]:
    args = ["-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    args += [
        "--log-level",
        "warning",
        "--no-access-log",
        "--backlog",
        "4096",
        "--timeout-graceful-shutdown",
        "3",
    ]
    return [*args, "--factory"] if factory else args
