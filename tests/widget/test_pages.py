"""The loader, the versioned chat assets, the embed page and the hosted page over HTTP."""

from __future__ import annotations

import gzip
import http.client
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.models import Shop
from server.shops import pages
from server.shops.pages import minify_css, minify_js, safe_origins
from tests.conftest import LiveServer
from tests.widget.conftest import MEASURED_SIZES, MakeShop

LOADER_BUDGET = 3 * 1024
FIRST_OPEN_BUDGET = 16 * 1024


def asset_urls(html: str) -> tuple[str, str]:
    js = re.search(r'src="(/w/[0-9a-f]+/chat\.js)"', html)
    css = re.search(r'href="(/w/[0-9a-f]+/chat\.css)"', html)
    assert js and css, html
    return js.group(1), css.group(1)


def config_of(html: str) -> dict[str, object]:
    m = re.search(r'<script type="application/json" id="sa-config">(.*?)</script>', html, re.S)
    assert m, html
    return json.loads(m.group(1))


def test_loader_is_short_cached_javascript(client: TestClient) -> None:
    r = client.get("/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=300"
    assert "'use strict'" in r.text
    assert "!important" not in r.text
    assert client.get("/widget.js", headers={"If-None-Match": r.headers["etag"]}).status_code == 304


def test_assets_are_sent_precompressed_only_to_clients_that_accept_gzip(client: TestClient) -> None:
    plain = client.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    zipped = client.get("/widget.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.content == plain.content  # the client decoded it back to the same bytes


def test_chat_assets_live_under_a_content_hash_and_are_cached_for_a_year(
    client: TestClient, shop: Shop
) -> None:
    js_url, css_url = asset_urls(client.get(f"/embed/{shop.id}").text)
    for url, kind in ((js_url, "text/javascript"), (css_url, "text/css")):
        r = client.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(kind)
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = client.get("/w/000000000000/chat.js")
    assert stale.status_code == 200
    assert "immutable" not in stale.headers["cache-control"]
    assert client.get(js_url.replace("chat.js", "other.js")).status_code == 404


def test_embed_page_may_be_framed_anywhere_when_the_shop_names_no_origin(
    client: TestClient, shop: Shop
) -> None:
    r = client.get(f"/embed/{shop.id}?lang=fr&origin=https://bakery.example")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors *" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "x-frame-options" not in r.headers
    cfg = config_of(r.text)
    assert cfg["shop_id"] == shop.id
    assert cfg["lang"] == "fr"
    assert cfg["parent"] == "https://bakery.example"
    assert cfg["greeting"] == "Welcome! Coffee or tea?"


def test_embed_page_is_framed_only_by_the_shops_allowed_origins(
    client: TestClient, make_shop: MakeShop
) -> None:
    shop = make_shop(
        allowed_origins=["https://bakery.example", "http://localhost:5000", "bad value\r\nX: y"]
    )
    r = client.get(f"/embed/{shop.id}?origin=https://evil.example")
    csp = r.headers["content-security-policy"]
    assert csp.endswith("frame-ancestors https://bakery.example http://localhost:5000")
    assert config_of(r.text)["parent"] == ""  # an origin the owner did not allow gets no messages
    ok = client.get(f"/embed/{shop.id}?origin=https://bakery.example")
    assert config_of(ok.text)["parent"] == "https://bakery.example"


@pytest.mark.parametrize(
    ("origins", "expected"),
    [
        (["https://a.example"], ["https://a.example"]),
        (["https://a.example/"], ["https://a.example"]),
        (["http://127.0.0.1:8001"], ["http://127.0.0.1:8001"]),
        (["https://a.example/path"], []),
        (["javascript:alert(1)"], []),
        (["https://a.example;script-src *"], []),
        (["ftp://a.example"], []),
        ([""], []),
    ],
)
def test_only_well_formed_origins_reach_the_csp_header(
    origins: list[str], expected: list[str]
) -> None:
    assert safe_origins(origins) == expected


def test_unknown_shop_is_a_404_page(client: TestClient) -> None:
    assert client.get("/embed/shp_nope").status_code == 404
    assert client.get("/s/nope").status_code == 404


def test_hosted_page_has_open_graph_tags_and_escapes_the_shop_name(
    client: TestClient, make_shop: MakeShop
) -> None:
    shop = make_shop(name='Bob\'s <script>alert(1)</script> "Bar"', slug="bobs-bar", currency="jpy")
    r = client.get("/s/bobs-bar", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert '<meta property="og:title" content="Bob&#39;s &lt;script&gt;' in r.text
    assert '<meta property="og:url" content="http://testserver/s/bobs-bar">' in r.text
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    cfg = config_of(r.text)
    assert cfg == {
        **cfg,
        "mode": "page",
        "lang": "de",
        "currency": "jpy",
        "exponent": 0,
        "shop_id": shop.id,
    }
    # The JSON island cannot close its own <script> element.
    assert "</script>alert" not in r.text.split('id="sa-config">')[1].split("</script>")[0]


def test_a_paused_shop_still_opens_and_says_so(client: TestClient, make_shop: MakeShop) -> None:
    shop = make_shop(paused=True)
    for url in (f"/embed/{shop.id}", f"/s/{shop.slug}"):
        cfg = config_of(client.get(url).text)
        assert (cfg["paused"], cfg["open"], cfg["closed_notice"]) == (True, True, "")


# Monday 23 November 2026, 09:30 UTC.
MONDAY_MORNING = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "lang", "notice"),
    [
        ({"mon": [["07:00", "09:00"], ["17:00", "22:00"]]}, "en", "Closed now — opens today at 17:00"),
        ({"mon": [], "tue": [["07:00", "12:00"]]}, "en", "Closed now — opens Tuesday at 07:00"),
        ({"mon": [], "tue": [["07:00", "12:00"]]}, "es", "Cerrado ahora — abre el martes a las 07:00"),
        ({"mon": [], "sun": [["08:00", "12:00"]]}, "fr", "Fermé pour le moment — ouvre dimanche à 08:00"),
        ({"mon": [["10:00", "12:00"]]}, "de", "Jetzt geschlossen — öffnet heute um 10:00"),
        ({"mon": [], "tue": []}, "en", "Closed now"),
        ({"mon": [["09:00", "12:00"]]}, "en", ""),  # open
    ],
)  # fmt: skip
def test_a_closed_shop_says_when_it_opens_in_the_pages_language(
    client: TestClient,
    make_shop: MakeShop,
    monkeypatch: pytest.MonkeyPatch,
    hours: dict[str, object],
    lang: str,
    notice: str,
) -> None:
    monkeypatch.setattr(pages, "utcnow", lambda: MONDAY_MORNING)
    shop = make_shop(opening_hours={**hours, "tz": "UTC"})
    for url in (f"/embed/{shop.id}?lang={lang}", f"/s/{shop.slug}?lang={lang}"):
        cfg = config_of(client.get(url).text)
        assert (cfg["open"], cfg["closed_notice"], cfg["paused"]) == (not notice, notice, False)


def test_minifiers_keep_code_and_drop_comments() -> None:
    js = (
        "/* head\n * more */\nvar a = 1; // gone\n  // gone\n"
        "  /** @type {number} */ var b = 'https://x';\n"
        "var c = 'a // b'; // gone\nvar d = \"n'a // x\";\n"
    )
    assert minify_js(js) == (
        "var a = 1;\nvar b = 'https://x';\nvar c = 'a // b';\nvar d = \"n'a // x\";\n"
    )
    assert minify_css("a  {\n color: red; /* c */ }\n") == "a{color:red}\n"


def wire_size(server: LiveServer, path: str) -> int:
    """Bytes on the wire for ``path`` with ``Accept-Encoding: gzip`` (what a browser downloads)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, path
    assert resp.getheader("Content-Encoding") == "gzip", path
    gzip.decompress(body)  # really gzip
    return len(body)


def test_size_budgets_gzip_as_served(
    app: Starlette, shop: Shop, live_server: Callable[..., LiveServer], client: TestClient
) -> None:
    server = live_server(app)
    html = client.get(f"/embed/{shop.id}?lang=en&origin=https://bakery.example").text
    js_url, css_url = asset_urls(html)
    sizes = {
        "loader /widget.js": wire_size(server, "/widget.js"),
        "embed HTML": wire_size(server, f"/embed/{shop.id}?lang=en&origin=https://bakery.example"),
        "chat.js": wire_size(server, js_url),
        "chat.css": wire_size(server, css_url),
    }
    total = sum(sizes.values())
    MEASURED_SIZES.update({**sizes, "first open total": total})
    for name, size in MEASURED_SIZES.items():
        print(f"widget size (gzip): {name:<18} {size:>6} B")
    assert sizes["loader /widget.js"] <= LOADER_BUDGET
    assert total <= FIRST_OPEN_BUDGET


def test_loader_source_fits_the_budget_before_minifying() -> None:
    """The commented source itself, gzip -9, stays within the loader budget: its usage notes
    live in widget/README.md, not in the file every site could fetch."""
    source = (Path(__file__).parents[2] / "widget" / "loader.js").read_bytes()
    assert len(gzip.compress(source, 9)) <= LOADER_BUDGET
