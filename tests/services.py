"""Optional services for tests (PostgreSQL, Redis, Chromium): skip with a printed reason, or
fail when ``SHOP_ASSIST_REQUIRE`` names the service (CI sets postgres,redis,browser)."""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

REQUIRED = {s.strip() for s in os.environ.get("SHOP_ASSIST_REQUIRE", "").split(",") if s.strip()}


def unavailable(service: str, reason: str) -> None:
    """Skip, or fail when the service is required."""
    if service in REQUIRED:
        pytest.fail(f"{service} is required (SHOP_ASSIST_REQUIRE) but unavailable: {reason}")
    pytest.skip(f"{service} unavailable: {reason}")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        unavailable("postgres", "TEST_DATABASE_URL is not set")
    p = urlparse(url)
    if not _port_open(p.hostname or "127.0.0.1", p.port or 5432):
        unavailable("postgres", f"nothing listens on {p.hostname}:{p.port or 5432}")
    return url


def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    p = urlparse(url)
    if not _port_open(p.hostname or "127.0.0.1", p.port or 6379):
        unavailable("redis", f"nothing listens on {p.hostname}:{p.port or 6379}")
    return url


def chromium_path() -> str:
    path = (
        os.environ.get("CHROMIUM_PATH")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        unavailable("browser", "Debian's chromium is not installed (apt-get install chromium)")
    return path  # type: ignore[return-value]
