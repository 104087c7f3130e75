"""Every public POST/PATCH route answers a malformed body with a clear 4xx JSON error, never 500."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.db import Database
from server.http import MAX_REQUEST_BYTES, BodyLimitMiddleware
from server.owners.tokens import create_api_token
from server.settings import Settings
from tests.owners.helpers import (
    make_catalog,
    make_order,
    make_payable_order,
    make_shop,
    owner_id_of,
    signup,
)

FORM = "application/x-www-form-urlencoded"
BODIES: list[Any] = [
    5,
    "text",
    [],
    None,
    {"message": 5},
    {"message": ["a"]},
    {"message": {"a": 1}},
    {"message": "hi", "thread_id": []},
    {"message": "hi", "thread_id": 5, "thread_token": 5},
    {"message": "hi", "thread_id": "thr_x", "thread_token": {"a": 1}},
    {"message": "hi", "action": 5},
    {"message": "hi", "action": "checkout", "thread_id": None},
    {"message": None},
    {"message": "x" * 100_000},
    {"order_id": 5, "thread_token": []},
    {"order_id": [], "thread_token": "x"},
    {"order_id": {"a": 1}},
    {"order_id": "ord_x", "thread_token": "t", "items": "abc"},
    {"order_id": "ord_x", "thread_token": "t", "items": [5]},
    {"status": 5},
    {"status": []},
    {"status": {"a": 1}},
    {"status": None},
    {"status": "paid"},
    {"status": "nonsense"},
]
RAW: list[bytes] = [
    b"",
    b"{",
    b"\xff\xfe",
    b"null",
    b"[1,2]",
    b'{"a": NaN}',
    b"9" * 5000,
    b'{"a": ' + b"9" * 5000 + b"}",
    b" " * 200_000,
    b"[" * 5000,
    b'{"message": ' + b"[" * 5000 + b"}",
    # A lone surrogate is valid JSON but cannot be stored, hashed or logged as UTF-8.
    b'{"message": "\\ud800"}',
    b'{"message": "hi", "thread_id": "thr_x", "thread_token": "\\udfff"}',
    b'{"order_id": "ord_x", "thread_token": "\\ud800"}',
    b'{"status": "\\ud800"}',
]


@pytest.fixture
def world(client: TestClient, db: Database) -> dict[str, str]:
    signup(client, "fuzz@example.com")
    owner_id = owner_id_of(db, "fuzz@example.com")
    shop_id = make_shop(db, owner_id)
    make_catalog(db, shop_id)
    order_id = make_order(db, shop_id)
    payable, thread_token = make_payable_order(db, shop_id)
    with db.write() as s:
        _, api_token = create_api_token(s, owner_id, "fuzz")
    return {
        "shop": shop_id,
        "order": order_id,
        "payable": payable,
        "thread_token": thread_token,
        "api": api_token,
    }


def _routes(w: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    bearer = {"Authorization": f"Bearer {w['api']}"}
    return [
        ("POST", f"/api/chat/{w['shop']}", {}),
        ("POST", "/api/chat/shp_missing", {}),
        ("POST", f"/api/order/{w['shop']}", {}),
        ("PATCH", f"/api/orders/{w['order']}", bearer),
        ("PATCH", "/api/orders/ord_missing", bearer),
        ("POST", "/api/stripe/webhook", {}),
        ("POST", f"/pay/demo/{w['payable']}", {}),
        ("POST", "/api/catalog/upload", bearer),
    ]


def test_malformed_json_bodies_get_a_4xx(
    settings: Settings, db: Database, world: dict[str, str]
) -> None:
    app = create_app(settings.with_(stripe_webhook_secret="whsec_test"), db=db)
    failures = []
    with TestClient(app, raise_server_exceptions=False) as http:
        for method, path, headers in _routes(world):
            cases = [("json", b) for b in BODIES] + [("raw", r) for r in RAW]
            for kind, body in cases:
                kw: dict[str, Any] = {"headers": {**headers, "content-type": "application/json"}}
                if kind == "json":
                    kw["json"] = body
                else:
                    kw["content"] = body
                r = http.request(method, path, **kw)
                if r.status_code >= 500 or (r.status_code >= 400 and "error" not in _json(r)):
                    failures.append((method, path, repr(body)[:60], r.status_code, r.text[:120]))
    assert not failures, "\n".join(map(str, failures))


def _json(r: Any) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def test_a_lone_surrogate_is_a_400_not_a_failed_turn_or_a_500(
    app: Starlette, world: dict[str, str]
) -> None:
    """``"\\ud800"`` is valid JSON, but no database, hash or log can encode it as UTF-8."""
    with TestClient(app, raise_server_exceptions=False) as http:
        for path, body in [
            (f"/api/chat/{world['shop']}", b'{"message": "hi \\ud800"}'),
            (
                f"/api/order/{world['shop']}",
                b'{"order_id": "%s", "thread_token": "\\ud800"}' % world["payable"].encode(),
            ),
        ]:
            r = http.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:200])
            assert r.json()["detail"] == "Request body is not valid UTF-8 text."


def test_a_huge_chunked_body_is_refused_before_it_is_all_read() -> None:
    """Without a Content-Length the cap is checked while reading, not after."""
    import asyncio

    from starlette.requests import Request

    from server.errors import PayloadTooLarge
    from server.http import read_json

    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1  # 640 MB if it were all read
        return {"type": "http.request", "body": b" " * 65_536, "more_body": pulled < 10_000}

    scope = {"type": "http", "method": "POST", "headers": [], "path": "/", "query_string": b""}
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_json(Request(scope, receive), max_bytes=64_000))
    assert pulled <= 2


def test_a_body_over_the_cap_is_refused_before_any_form_is_parsed(app: Starlette) -> None:
    """``/login`` parses its form for the CSRF check before anyone is signed in: a large body
    must be a 413, not gigabytes in memory or in the temporary directory."""
    big = b"x" * (MAX_REQUEST_BYTES + 1)
    with TestClient(app, raise_server_exceptions=False) as http:
        r = http.post("/login", files={"file": ("big.bin", big)}, data={"email": "a@b.co"})
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
        r = http.post("/login", content=b"email=" + big, headers={"content-type": FORM})
        assert r.status_code == 413


def test_a_chunked_body_over_the_cap_is_cut_off_while_it_is_read(app: Starlette) -> None:
    import asyncio

    pulled = 0
    sent: list[dict[str, Any]] = []

    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1  # a 640 MB file if it were all read
        body = head if pulled == 1 else b"x" * 65_536
        return {"type": "http.request", "body": body, "more_body": pulled < 10_000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "path": "/login",
        "raw_path": b"/login", "root_path": "", "scheme": "http", "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b"), (b"host", b"testserver")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {},
    }  # fmt: skip
    asyncio.run(BodyLimitMiddleware(app)(scope, receive, send))
    assert sent[0]["status"] == 413, sent
    assert (pulled - 1) * 65_536 <= MAX_REQUEST_BYTES + 65_536
