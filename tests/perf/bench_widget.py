"""Widget weight as a browser receives it: gzip bytes of the loader, the embed page, the chat
app's JS and CSS, over HTTP from the running app, against the budgets and the 110 KB reference
(the smallest full widget among well-known open-source ones)."""

from __future__ import annotations

import re
import tempfile
from typing import Any

import httpx

from server.app import create_app
from server.db import Database
from tests.conftest import LiveServer
from tests.perf._support import bench_settings, database
from tests.scale.seed import seed_shop

LOADER_BUDGET = 3 * 1024
FIRST_OPEN_BUDGET = 16 * 1024
REFERENCE_WIDGET = 110 * 1024


def served_size(http: httpx.Client, url: str) -> tuple[int, str, str]:
    """(bytes on the wire, content-encoding, decoded text) for a gzip-accepting browser."""
    with http.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as r:
        r.raise_for_status()
        raw = b"".join(r.iter_raw())
        encoding = r.headers.get("content-encoding", "identity")
    text = http.get(url, headers={"Accept-Encoding": "gzip"}).text
    return len(raw), encoding, text


def row(name: str, value: float, baseline: Any, note: str) -> dict[str, Any]:
    return {
        "benchmark": name,
        "value": round(value / 1024, 2),
        "unit": "KB gzip",
        "baseline": baseline,
        "note": note,
    }


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp, database("sqlite") as url:
        settings = bench_settings(url, tmp)
        db = Database(url)
        shop_id, _ = seed_shop(db)
        server = LiveServer(create_app(settings, db=db)).start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                loader, loader_enc, _ = served_size(http, "/widget.js")
                embed, embed_enc, html = served_size(http, f"/embed/{shop_id}")
                js_url = re.search(r'src="([^"]*chat\.js)"', html)
                css_url = re.search(r'href="([^"]*chat\.css)"', html)
                if not js_url or not css_url:
                    raise RuntimeError("the embed page does not reference chat.js and chat.css")
                js, js_enc, _ = served_size(http, js_url.group(1))
                css, css_enc, _ = served_size(http, css_url.group(1))
        finally:
            server.stop()
            db.dispose()
    total = loader + embed + js + css
    return [
        row(
            "widget: loader.js",
            loader,
            round(LOADER_BUDGET / 1024, 2),
            f"budget; served {loader_enc}",
        ),
        row("widget: embed HTML", embed, "", f"served {embed_enc}"),
        row("widget: chat.js", js, "", f"served {js_enc}"),
        row("widget: chat.css", css, "", f"served {css_enc}"),
        row(
            "widget: first open (all four)",
            total,
            round(REFERENCE_WIDGET / 1024, 2),
            f"baseline: 110 KB smallest well-known open-source widget; budget {FIRST_OPEN_BUDGET // 1024} KB",
        ),
    ]
