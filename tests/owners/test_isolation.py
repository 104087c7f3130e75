"""Tenant isolation, table-driven over the app's own route list: every owner route or API with
an id in its path answers owner B with 404 for owner A's shop, catalog, orders, settings and
tokens, whether B signs in by session (with a valid CSRF token) or by API token. A new owner
route without the ownership check fails here; a route with a path parameter this table does not
know fails too, so it gets looked at."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from server.db import Database
from server.models import ApiToken, Order, Product, Shop
from server.owners.tokens import create_api_token
from tests.owners.helpers import (
    make_catalog,
    make_order,
    make_shop,
    owner_id_of,
    session_csrf,
    signup,
)

OWNER_PREFIXES = ("/dashboard/", "/api/shops/", "/api/orders/")
# Routes under those prefixes that are public on purpose, with the reason.
PUBLIC = {
    "/api/shops/{shop_id}/qr.svg": "the QR code only encodes the shop's public link",
    "/api/shops/{shop_id}/qr.png": "the QR code only encodes the shop's public link",
}
# Endless streams: checked for B's 404, but A's success is checked in the live test.
STREAMS = {"/dashboard/shops/{shop_id}/events"}


@dataclass
class World:
    a: TestClient
    b: TestClient
    b_csrf: str
    b_token: str
    params: dict[str, str]


def _owner_routes(app: Starlette) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if not isinstance(route, Route) or "{" not in route.path or route.path in PUBLIC:
            continue
        if route.path.startswith(OWNER_PREFIXES):
            found += [(route.path, m) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


@pytest.fixture
def world(app: Starlette, db: Database) -> World:
    a, b = TestClient(app), TestClient(app)
    signup(a, "a@example.com")
    signup(b, "b@example.com")
    a_id, b_id = owner_id_of(db, "a@example.com"), owner_id_of(db, "b@example.com")
    shop = make_shop(db, a_id, "A's Cafe")
    make_catalog(db, shop)
    order = make_order(db, shop, status="paid")
    make_shop(db, b_id, "B's Bakery")  # B has a shop of their own: ids exist, just not A's
    with db.write() as s:
        a_token, _ = create_api_token(s, a_id, "a's script")
        _, b_plain = create_api_token(s, b_id, "b's script")
        a_token_id = a_token.id
    params = {"shop_id": shop, "order_id": order, "product_id": "latte", "token_id": a_token_id}
    return World(a, b, session_csrf(b), b_plain, params)


def _fill(path: str, params: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)(?::\w+)?}", path)
    unknown = [n for n in names if n not in params]
    assert not unknown, f"{path}: add a value for {unknown} to the isolation table"
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: params[m.group(1)], path)


def _send(client: TestClient, method: str, url: str, csrf: str | None, auth: str | None) -> int:
    headers = {"Accept": "application/json"}
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if auth:
        headers["Authorization"] = f"Bearer {auth}"
    if method == "GET":
        return client.get(url, headers=headers).status_code
    if method == "PATCH":
        return client.patch(url, json={"status": "ready"}, headers=headers).status_code
    form = {
        "csrf_token": csrf or "", "status": "ready", "available": "0", "name": "Taken over",
        "currency": "usd", "fulfillment_modes": "pickup", "upload_id": "x" * 32,
    }  # fmt: skip
    files = {"file": ("menu.csv", b"name,price\nTea,1\n", "text/csv")}
    return client.request(method, url, data=form, files=files, headers=headers).status_code


def test_the_table_covers_the_owner_routes(app: Starlette) -> None:
    paths = {p for p, _ in _owner_routes(app)}
    for expected in (
        "/dashboard/shops/{shop_id}/orders",
        "/api/shops/{shop_id}/orders",
        "/api/orders/{order_id}",
    ):
        assert expected in paths
    assert len(paths) >= 12


def test_owner_b_gets_404_on_everything_of_owner_a(
    app: Starlette, db: Database, world: World
) -> None:
    routes = _owner_routes(app)
    failures = []
    for path, method in routes:
        url = _fill(path, world.params)
        by_session = _send(world.b, method, url, world.b_csrf, None)
        by_token = _send(TestClient(app), method, url, None, world.b_token)
        if by_session != 404 or by_token != 404:
            failures.append(f"{method} {path}: session {by_session}, token {by_token}")
    assert not failures, "owner B reached owner A's data:\n" + "\n".join(failures)

    # ...and nothing of A's changed.
    with db.read() as s:
        shop = s.get(Shop, world.params["shop_id"])
        assert shop is not None and shop.name == "A's Cafe" and shop.live_catalog_version == 1
        assert s.get(Order, world.params["order_id"]).status == "paid"  # type: ignore[union-attr]
        assert all(p.available for p in s.exec(select(Product)).all())
        assert s.get(ApiToken, world.params["token_id"]).revoked_at is None  # type: ignore[union-attr]


def test_owner_a_reaches_the_same_routes(app: Starlette, world: World) -> None:
    """The other half: the 404s above come from ownership, not from a broken route."""
    for path, method in _owner_routes(app):
        if method != "GET" or path in STREAMS:
            continue
        r = world.a.get(_fill(path, world.params), headers={"Accept": "application/json"})
        assert r.status_code == 200, f"GET {path} -> {r.status_code}"


def test_catalog_upload_refuses_another_owners_shop(app: Starlette, world: World) -> None:
    files = {"file": ("menu.csv", b"name,price\nTea,1\n", "text/csv")}
    by_session = world.b.post(
        "/api/catalog/upload", data={"shop_id": world.params["shop_id"]}, files=files,
        headers={"X-CSRF-Token": world.b_csrf},
    )  # fmt: skip
    assert by_session.status_code == 404
    r = TestClient(app).post(
        "/api/catalog/upload", data={"shop_id": world.params["shop_id"]}, files=files,
        headers={"Authorization": f"Bearer {world.b_token}"},
    )  # fmt: skip
    assert r.status_code == 404


def test_signed_out_requests_get_nothing(app: Starlette, world: World) -> None:
    anon = TestClient(app, follow_redirects=False)
    for path, method in _owner_routes(app):
        status = _send(anon, method, _fill(path, world.params), None, None)
        assert status in (401, 403) or (method == "GET" and status == 303), (
            f"{method} {path} -> {status}"
        )


def test_a_browser_gets_a_404_page_not_json(world: World) -> None:
    r = world.b.get(
        f"/dashboard/shops/{world.params['shop_id']}/settings", headers={"Accept": "text/html"}
    )
    assert r.status_code == 404 and "belongs to another account" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
