"""Customer-facing pages: the widget loader, the chat app in its iframe and on the hosted page.

``GET /widget.js``             the loader an owner pastes (short cache, ETag)
``GET /w/{version}/{name}``    chat.js / chat.css under a content hash (cached for a year)
``GET /embed/{shop_id}``       the chat app inside the loader's iframe
``GET /s/{slug}``              the same chat app full page (the QR target)

Static assets are lightly minified once and kept gzip-compressed in memory, so each request
sends ready bytes with ``Content-Encoding: gzip`` when the client accepts it.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from server.catalog.money import exponent
from server.db import Database
from server.ids import utcnow
from server.models import Shop
from server.shops.hours import is_open, next_opening

WIDGET_DIR = Path(__file__).resolve().parents[2] / "widget"
ASSETS = {"widget.js": "loader.js", "chat.js": "chat.js", "chat.css": "chat.css"}
LANGS = ("en", "es", "fr", "de")
LOADER_CACHE = "public, max-age=300"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    """One static file, minified, with its gzip form and a content hash for versioned URLs."""

    body: bytes
    gz: bytes
    version: str
    media_type: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


_INLINE_DOC = re.compile(r"/\*\*? ?@[^*]*\*/ ?")


def _strip_trailing_comment(line: str) -> str:
    """``code; // why`` -> ``code;`` unless the `` // `` might sit inside a string."""
    cut = line.find(" // ")
    while cut > 0:
        head = line[:cut]
        if not any(head.count(q) % 2 for q in "'\"`"):
            return head.rstrip()
        cut = line.find(" // ", cut + 1)
    return line


def minify_js(source: str) -> str:
    """Drop comment-only lines, block comments that start a line, inline ``/** @type */``
    casts, and indentation.

    Deliberately simple and safe for our own sources, which keep comments on their own lines
    and never use multi-line template strings."""
    out: list[str] = []
    in_block = False
    for raw in source.splitlines():
        line = raw.strip()
        if in_block:
            in_block = "*/" not in line
            continue
        if line.startswith("/*"):
            in_block = "*/" not in line
            line = "" if in_block else line.split("*/", 1)[1].strip()
        if not line or line.startswith("//"):
            continue
        out.append(_strip_trailing_comment(_INLINE_DOC.sub("", line)))
    return "\n".join(out) + "\n"


def minify_css(source: str) -> str:
    """Remove comments and collapse whitespace (our CSS has no strings containing them)."""
    text = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*([{};:,>])\s*", r"\1", text)
    return text.replace(";}", "}").strip() + "\n"


_cache: dict[str, tuple[float, Asset]] = {}


def load_asset(name: str) -> Asset:
    """The named widget asset, re-read only when its file changed."""
    path = WIDGET_DIR / ASSETS[name]
    mtime = path.stat().st_mtime
    hit = _cache.get(name)
    if hit and hit[0] == mtime:
        return hit[1]
    source = path.read_text(encoding="utf-8")
    is_css = name.endswith(".css")
    text = minify_css(source) if is_css else minify_js(source)
    body = text.encode()
    asset = Asset(
        body=body,
        gz=gzip.compress(body, compresslevel=9, mtime=0),
        version=hashlib.sha256(body).hexdigest()[:12],
        media_type="text/css; charset=utf-8" if is_css else "text/javascript; charset=utf-8",
    )
    _cache[name] = (mtime, asset)
    return asset


def asset_response(request: Request, asset: Asset, cache_control: str) -> Response:
    """Send the asset precompressed when accepted; answer 304 to a matching ETag."""
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gz, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def widget_js(request: Request) -> Response:
    return asset_response(request, load_asset("widget.js"), LOADER_CACHE)


async def versioned_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ("chat.js", "chat.css"):
        return Response("Not found.", status_code=404, media_type="text/plain")
    asset = load_asset(name)
    # A page rendered before a deploy may ask for the previous version: serve the current
    # file, but only briefly cached, so the immutable URL never holds the wrong bytes.
    fresh = request.path_params["version"] == asset.version
    return asset_response(request, asset, IMMUTABLE_CACHE if fresh else "public, max-age=60")


def safe_origins(origins: list[str]) -> list[str]:
    """Well-formed ``scheme://host[:port]`` origins only: they go into a response header."""
    good = []
    for origin in origins or []:
        parts = urlsplit(str(origin).strip())
        if (
            parts.scheme in ("http", "https")
            and parts.hostname
            and re.fullmatch(r"[A-Za-z0-9.\-:\[\]*]+", parts.netloc)
            and not parts.path.strip("/")
        ):
            good.append(f"{parts.scheme}://{parts.netloc}")
    return good


def page_csp(frame_ancestors: str) -> str:
    """Our pages run only our own script and style; talk only to our own origin."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors}"
    )


def pick_lang(request: Request) -> str:
    """``?lang=`` from the loader, else the browser's Accept-Language, else English."""
    wanted = request.query_params.get("lang", "")[:2].lower()
    if wanted in LANGS:
        return wanted
    for part in request.headers.get("accept-language", "").split(","):
        code = part.strip()[:2].lower()
        if code in LANGS:
            return code
    return "en"


# The closed banner in the page's language: (closed, "opens {when} at {time}", today, weekdays).
CLOSED_TEXT = {
    "en": ("Closed now", "opens {when} at {time}", "today",
           ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")),
    "es": ("Cerrado ahora", "abre {when} a las {time}", "hoy",
           ("el lunes", "el martes", "el miércoles", "el jueves", "el viernes", "el sábado",
            "el domingo")),
    "fr": ("Fermé pour le moment", "ouvre {when} à {time}", "aujourd'hui",
           ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")),
    "de": ("Jetzt geschlossen", "öffnet {when} um {time}", "heute",
           ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")),
}  # fmt: skip


def closed_notice(lang: str, opening: tuple[int, int, str] | None) -> str:
    """The closed banner's text, e.g. "Closed now — opens today at 07:00" (``opening`` is
    :func:`server.shops.hours.next_opening`'s answer)."""
    closed, opens, today, weekdays = CLOSED_TEXT.get(lang, CLOSED_TEXT["en"])
    if opening is None:
        return closed
    days, day, clock = opening
    return f"{closed} — " + opens.format(when=today if days == 0 else weekdays[day], time=clock)


def app_config(shop: Shop, *, mode: str, lang: str, parent: str) -> dict[str, Any]:
    """What the chat app needs at start; rendered as inert JSON inside the page.

    ``paused`` (by the owner) or not ``open`` (outside the opening hours): the chat still
    answers questions but takes no orders, and the app says so in a banner; ``closed_notice``
    is that banner's text for a closed shop, in the page's language."""
    currency = (shop.currency or "usd").lower()
    now = utcnow()
    open_now, closed_reason = is_open(shop.opening_hours, now)
    notice = "" if open_now else closed_notice(lang, next_opening(shop.opening_hours, now))
    return {
        "shop_id": shop.id,
        "name": shop.name,
        "greeting": shop.greeting or "",
        "currency": currency,
        "exponent": exponent(currency),
        "color": shop.theme_color
        if re.fullmatch(r"#[0-9a-fA-F]{3,8}", shop.theme_color or "")
        else "#2f6f4f",
        "paused": bool(shop.paused),
        # Outside opening hours the chat still answers questions but takes no orders.
        "open": open_now,
        "closed_reason": closed_reason,
        "closed_notice": notice,
        "mode": mode,
        "lang": lang,
        "parent": parent,
    }


def render(
    request: Request, template: str, shop: Shop, config: dict[str, Any], csp: str
) -> HTMLResponse:
    js, css = load_asset("chat.js"), load_asset("chat.css")
    settings = request.app.state.settings
    response = request.app.state.templates.TemplateResponse(
        request,
        template,
        {
            "shop": shop,
            "config": config,
            "lang": config["lang"],
            "js_url": f"/w/{js.version}/chat.js",
            "css_url": f"/w/{css.version}/chat.css",
            "page_url": f"{settings.public_base_url.rstrip('/')}/s/{shop.slug}",
        },
    )
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def not_found() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>Not found</title><p>This shop does not exist.</p>",
        status_code=404,
    )


async def embed_page(request: Request) -> Response:
    db: Database = request.app.state.db
    with db.read() as session:
        shop = session.get(Shop, request.path_params["shop_id"])
        if shop is None:
            return not_found()
        session.expunge(shop)
    origins = safe_origins(shop.allowed_origins)
    parent = request.query_params.get("origin", "")
    parent = safe_origins([parent])[0] if safe_origins([parent]) else ""
    if origins and parent not in origins:
        parent = ""  # never post our messages to a page the owner did not allow
    config = app_config(shop, mode="embed", lang=pick_lang(request), parent=parent)
    return render(request, "embed.html", shop, config, page_csp(" ".join(origins) or "*"))


async def hosted_page(request: Request) -> Response:
    db: Database = request.app.state.db
    with db.read() as session:
        shop = session.exec(select(Shop).where(Shop.slug == request.path_params["slug"])).first()
        if shop is None:
            return not_found()
        session.expunge(shop)
    config = app_config(shop, mode="page", lang=pick_lang(request), parent="")
    return render(request, "hosted.html", shop, config, page_csp("'self'"))


routes: list[BaseRoute] = [
    Route("/widget.js", widget_js),
    Route("/w/{version}/{name}", versioned_asset),
    Route("/embed/{shop_id}", embed_page),
    Route("/s/{slug}", hosted_page),
]
