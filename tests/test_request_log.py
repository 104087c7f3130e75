"""One structured log line per request: with the request id, never the query string or tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from server.http import JsonFormatter


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    logger = logging.getLogger("shop_assist.http")
    handler = _Lines()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_request_line_has_the_id_and_no_secrets(client: TestClient, log_lines: list[str]) -> None:
    r = client.get(
        "/api/menu/shp_x?token=secret-order-token&thread_token=tt-secret",
        headers={"Authorization": "Bearer sa_secret_api_token", "X-Thread-Token": "hdr-secret"},
    )
    (line,) = [json.loads(x) for x in log_lines if json.loads(x)["msg"] == "request"]
    assert line["request_id"] == r.headers["x-request-id"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/menu/shp_x", 404)
    assert isinstance(line["ms"], float)
    raw = "\n".join(log_lines)
    for secret in ("secret-order-token", "tt-secret", "sa_secret_api_token", "hdr-secret", "?"):
        assert secret not in raw


def test_each_request_gets_its_own_id(client: TestClient, log_lines: list[str]) -> None:
    client.get("/healthz")
    client.get("/healthz")
    ids = [json.loads(x)["request_id"] for x in log_lines]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_sign_in_link_token_is_not_logged(client: TestClient, log_lines: list[str]) -> None:
    """Whoever reads the log within 15 minutes could otherwise sign in with the link."""
    client.get("/login/magic/magic-link-secret-token")
    (line,) = [json.loads(x) for x in log_lines if json.loads(x)["msg"] == "request"]
    assert line["path"] == "/login/magic/[redacted]"
    assert "magic-link-secret-token" not in "\n".join(log_lines)
