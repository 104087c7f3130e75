"""The owner's upload and the public menu over HTTP."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image
from starlette.testclient import TestClient

from server.catalog import parse as parse_module

COFFEE = b"name,price,category,description,options\nLatte,4.50,Coffee,Milky,Size: Small | Large +0.50\nTea,3,Tea,Hot,\n"


def upload(client: TestClient, token: str, data: bytes, filename: str = "menu.csv", **fields: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/catalog/upload",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": (filename, data, "text/csv")},
        data=fields,
    )


def test_upload_then_menu_then_qr_code_decodes_to_the_hosted_page(
    client: TestClient, owner_token: tuple[str, str]
) -> None:
    r = upload(client, owner_token[1], COFFEE, name="Corner Cafe", currency="USD")
    assert r.status_code == 201, r.text
    body = r.json()
    shop_id = body["shop_id"]
    assert body["slug"] == "corner-cafe"
    assert body["link"] == "http://testserver/s/corner-cafe"
    assert (
        body["embed_snippet"]
        == f'<script src="http://testserver/widget.js" data-shop="{shop_id}" async></script>'
    )
    assert body["qr_png"] == f"http://testserver/api/shops/{shop_id}/qr.png"
    assert body["qr_svg"] == f"http://testserver/api/shops/{shop_id}/qr.svg"
    assert (body["version"], body["products"], body["warnings"]) == (1, 2, [])

    menu = client.get(f"/api/menu/{shop_id}")
    assert menu.status_code == 200
    assert menu.json()["currency"] == "usd"
    coffee = menu.json()["categories"][0]
    assert coffee["name"] == "Coffee"
    assert coffee["products"][0]["price"] == 450

    png = client.get(body["qr_png"].removeprefix("http://testserver"))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert code.text == "http://testserver/s/corner-cafe"
    svg = client.get(f"/api/shops/{shop_id}/qr.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.content.lstrip().startswith(b"<?xml") or b"<svg" in svg.content[:200]


def test_a_rejected_upload_lists_every_line_and_the_old_menu_keeps_serving(
    client: TestClient, owner_token: tuple[str, str]
) -> None:
    shop_id = upload(client, owner_token[1], COFFEE, name="Corner Cafe").json()["shop_id"]
    bad = b"name,price,options\nLatte,abc,\nTea,-1,\nMocha,4,Size Small | Large\nScone,2,\n"
    r = upload(client, owner_token[1], bad, shop_id=shop_id)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "CatalogInvalid"
    assert body["detail"] == "The catalog has 3 problems; nothing was changed."
    assert [(e["line"], e["column"]) for e in body["errors"]] == [
        (2, "price"),
        (3, "price"),
        (4, "options"),
    ]
    assert body["errors"][0]["message"] == "'abc' is not a price"
    menu = client.get(f"/api/menu/{shop_id}").json()
    assert menu["version"] == 1
    assert [p["name"] for c in menu["categories"] for p in c["products"]] == ["Latte", "Tea"]


def test_an_isk_menu_with_decimals_is_refused_and_the_old_one_keeps_serving(
    client: TestClient, owner_token: tuple[str, str]
) -> None:
    menu = "name,price,options\nKaffi,450,Stærð: Lítill | Stór +100\nKleina,350,\n".encode()
    r = upload(client, owner_token[1], menu, name="Kaffihús", currency="ISK")
    assert r.status_code == 201, r.text
    shop_id = r.json()["shop_id"]
    bad = "name,price,options\nKaffi,450,Stærð: Lítill | Stór +99.50\nKleina,349.90,\n".encode()
    r = upload(client, owner_token[1], bad, shop_id=shop_id)
    assert r.status_code == 422
    assert [(e["line"], e["column"], e["message"]) for e in r.json()["errors"]] == [
        (
            2,
            "options",
            "option 'Stór +99.50' in 'Stærð': '+99.50' is not a whole number of krónur: ISK"
            " prices must be whole krónur, without decimals",
        ),
        (
            3,
            "price",
            "'349.90' is not a whole number of krónur: ISK prices must be whole krónur, without"
            " decimals",
        ),
    ]
    served = client.get(f"/api/menu/{shop_id}").json()
    assert served["currency"] == "isk" and served["version"] == 1
    assert [p["price"] for c in served["categories"] for p in c["products"]] == [45000, 35000]


def test_new_upload_becomes_a_new_version(client: TestClient, owner_token: tuple[str, str]) -> None:
    shop_id = upload(client, owner_token[1], COFFEE, name="Corner Cafe").json()["shop_id"]
    r = upload(client, owner_token[1], b"name,price,description\nMocha,5,Rich\n", shop_id=shop_id)
    assert r.status_code == 201
    assert (r.json()["shop_id"], r.json()["version"]) == (shop_id, 2)
    assert client.get(f"/api/menu/{shop_id}").json()["version"] == 2


def test_a_rejected_new_shop_is_not_created(
    client: TestClient, owner_token: tuple[str, str], db
) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import select

    from server.models import Shop

    assert upload(client, owner_token[1], b"name,price\nA,x\n", name="Nope").status_code == 422
    with db.read() as s:
        assert s.exec(select(Shop)).all() == []


def test_upload_needs_a_valid_token_and_the_owners_shop(
    client: TestClient, owner_token: tuple[str, str], db
) -> None:  # type: ignore[no-untyped-def]
    assert upload(client, "sa_wrong", COFFEE, name="X").status_code == 401
    no_auth = client.post(
        "/api/catalog/upload", files={"file": ("m.csv", COFFEE)}, data={"name": "X"}
    )
    assert no_auth.status_code == 401
    shop_id = upload(client, owner_token[1], COFFEE, name="Mine").json()["shop_id"]
    from server.ids import new_id
    from server.models import Owner
    from server.owners.tokens import create_api_token

    with db.write() as s:
        other = Owner(id=new_id("own"), email="other@example.com")
        s.add(other)
        s.flush()
        _, other_token = create_api_token(s, other.id, "t")
    r = upload(client, other_token, COFFEE, shop_id=shop_id)
    assert r.status_code == 404
    assert upload(client, owner_token[1], COFFEE, shop_id="shp_unknown").status_code == 404


def test_upload_field_problems(client: TestClient, owner_token: tuple[str, str]) -> None:
    token = owner_token[1]
    no_file = client.post(
        "/api/catalog/upload", headers={"Authorization": f"Bearer {token}"}, data={"name": "X"}
    )
    assert no_file.status_code == 422
    assert upload(client, token, COFFEE).status_code == 422  # neither shop_id nor name
    assert upload(client, token, COFFEE, name="X", currency="dollars").status_code == 422


@pytest.mark.parametrize("currency", ["usb", "xxx", "dollars"])
def test_a_new_shop_needs_an_iso_4217_currency(
    client: TestClient, owner_token: tuple[str, str], currency: str
) -> None:
    r = upload(client, owner_token[1], COFFEE, name="X", currency=currency)
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "currency"
    assert body["detail"] == (
        f"Currency {currency!r} is not an ISO 4217 currency code; use one such as usd, eur or jpy."
    )


def test_too_large_upload_is_413(
    client: TestClient, owner_token: tuple[str, str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from server.catalog import routes, service

    monkeypatch.setattr(routes, "MAX_BYTES", 1000)
    monkeypatch.setattr(service, "MAX_BYTES", 1000)
    monkeypatch.setattr(parse_module, "MAX_BYTES", 1000)
    r = upload(client, owner_token[1], b"name,price\n" + b"A,1\n" * 400, name="Big")
    assert r.status_code == 413
    assert r.json()["error"] == "PayloadTooLarge"


def test_menu_is_public_with_cors_etag_and_short_cache(
    client: TestClient, owner_token: tuple[str, str]
) -> None:
    shop_id = upload(client, owner_token[1], COFFEE, name="Corner Cafe").json()["shop_id"]
    r = client.get(f"/api/menu/{shop_id}", headers={"Origin": "https://someone-else.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert r.headers["cache-control"] == "public, max-age=30"
    etag = r.headers["etag"]
    again = client.get(f"/api/menu/{shop_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert (
        client.get(f"/api/menu/{shop_id}", headers={"If-None-Match": f"W/{etag}"}).status_code
        == 304
    )
    preflight = client.options(
        f"/api/menu/{shop_id}",
        headers={
            "Origin": "https://x.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    upload(client, owner_token[1], b"name,price,description\nMocha,5,Rich\n", shop_id=shop_id)
    assert client.get(f"/api/menu/{shop_id}", headers={"If-None-Match": etag}).status_code == 200


def test_unknown_shop_menu_is_404_with_cors(client: TestClient) -> None:
    r = client.get("/api/menu/shp_nope")
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == "*"
    assert client.get("/api/shops/shp_nope/qr.png").status_code == 404


async def test_upload_body_stops_at_the_limit_without_reading_the_rest() -> None:
    from starlette.requests import Request

    from server.catalog.routes import _body_limited
    from server.errors import PayloadTooLarge

    pulled = 0

    async def receive() -> dict:  # type: ignore[type-arg]
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": pulled < 1000}

    scope = {"type": "http", "method": "POST", "headers": [], "path": "/", "query_string": b""}
    limited = _body_limited(Request(scope, receive), 250)
    with pytest.raises(PayloadTooLarge):
        await limited.body()
    assert pulled == 3  # 300 bytes: the third chunk crosses the limit, the other 997 stay unread
