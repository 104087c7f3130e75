"""Fixtures for the widget: shops, the browser, and our server plus a third-party page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from starlette.applications import Starlette

from server.db import Database
from server.ids import new_id
from server.models import Shop
from tests import services
from tests.conftest import LiveServer
from tests.widget.fakes import ScriptedChat, host_site

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

MakeShop = Callable[..., Shop]


@pytest.fixture
def make_shop(db: Database) -> MakeShop:
    """``make_shop(name=..., allowed_origins=[...], ...)`` stores a shop and returns it."""

    def make(**fields: Any) -> Shop:
        fields.setdefault("name", "Corner Café")
        fields.setdefault("slug", new_id("s", 8).lower().replace("_", "-"))
        fields.setdefault("currency", "usd")
        with db.write() as session:
            shop = Shop(id=new_id("shp"), **fields)
            session.add(shop)
            session.flush()
            session.expunge(shop)
        return shop

    return make


@pytest.fixture
def shop(make_shop: MakeShop) -> Shop:
    return make_shop(greeting="Welcome! Coffee or tea?")


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
MEASURED_SIZES: dict[str, int] = {}  # filled by the size test, shown in the run's summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED_SIZES:
        terminalreporter.section("widget sizes (gzip, as served)")
        for name, size in MEASURED_SIZES.items():
            terminalreporter.write_line(f"{name:<20} {size:>6} B")


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright (skips, or fails in CI, when it is missing)."""
    path = services.chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Site:
    """Our server and the third-party page embedding the widget, on two origins."""

    server: LiveServer
    host: LiveServer
    shop: Shop
    chat: ScriptedChat

    @property
    def page_url(self) -> str:
        return self.host.url + "/"


@pytest.fixture
def make_site(
    app: Starlette, shop: Shop, live_server: Callable[..., LiveServer]
) -> Callable[..., Site]:
    """``make_site(scripted=True)`` puts the scripted chat endpoints in front of the real ones;
    ``attrs`` are extra attributes on the host page's script tag."""

    def make(
        *, scripted: bool = False, attrs: str = 'data-z-index="5000"', for_shop: Shop | None = None
    ) -> Site:
        chat = ScriptedChat()
        if scripted:
            chat.install(app)
        server = live_server(app)
        target = for_shop or shop
        host = live_server(host_site(server.url, target.id, attrs))
        return Site(server=server, host=host, shop=target, chat=chat)

    return make


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh desktop browser context; console errors and page errors are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
