"""The owner's path in a real browser: log in, create a shop, upload a CSV with its preview,
copy the embed snippet, then watch an order paid in the demo checkout appear on the orders page
without a reload, and mark it ready."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from server.app import create_app
from server.db import Database
from server.owners.service import create_owner
from server.settings import Settings
from tests import services
from tests.conftest import LiveServer, free_port
from tests.owners.helpers import PASSWORD, make_payable_order, pay_in_demo_checkout

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MENU = Path(__file__).resolve().parents[2] / "examples" / "coffee.csv"
LOADED_MACHINE_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = services.chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def server(settings: Settings, db: Database, live_server: Any) -> LiveServer:
    port = free_port()
    app = create_app(settings.with_(public_base_url=f"http://127.0.0.1:{port}"), db=db)
    return live_server(app, port)  # type: ignore[no-any-return]


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[tuple[Page, list[str]]]:
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(
        ["clipboard-read", "clipboard-write", "notifications"], origin=server.url
    )
    page = context.new_page()
    problems: list[str] = []  # console errors, CSP violations included
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    yield page, problems
    context.close()


def test_owner_goes_from_login_to_a_live_paid_order(
    page: tuple[Page, list[str]], server: LiveServer, db: Database
) -> None:
    from playwright.sync_api import Expect

    # Generous waits: on a loaded machine a page or a live update can take seconds; a passing
    # run is no slower for it.
    expect = Expect()
    expect.set_options(timeout=LOADED_MACHINE_MS)
    p, problems = page
    with db.write() as s:
        create_owner(s, "owner@example.com", PASSWORD)

    # Log in.
    p.goto("/dashboard")
    expect(p).to_have_url(f"{server.url}/login?next=/dashboard")
    p.fill("input[name=email]", "owner@example.com")
    p.fill("input[name=password]", PASSWORD)
    p.click("form[action='/login'] button[type=submit]")
    expect(p.locator("h1")).to_have_text("Your shops")

    # Create a shop and upload its menu: preview first, then publish.
    p.fill("input[name=name]", "Browser Beans")
    p.click("text=Create shop")
    p.set_input_files("input[type=file]", str(MENU))
    p.click("text=Preview")
    expect(p.locator("h2")).to_contain_text("Preview of coffee.csv")
    expect(p.locator("ul.changes.added")).to_contain_text("Latte")
    p.click("text=Publish this menu")
    expect(p.locator(".notice")).to_contain_text("Menu version 1 is live")
    expect(p.locator("table.products")).to_contain_text("Latte")
    shop_id = p.url.split("/dashboard/shops/")[1].split("/")[0]
    # Sold out, without leaving the page; the public menu says so.
    latte = p.locator("tr:has(span.muted:text-is('latte'))")
    latte.locator("text=Mark sold out").click()
    expect(latte.locator(".state")).to_have_text("Sold out")
    menu = httpx.get(f"{server.url}/api/menu/{shop_id}").json()
    assert not next(x for c in menu["categories"] for x in c["products"] if x["id"] == "latte")[
        "available"
    ]

    # Copy the embed snippet. "Copied" shows for 1.5 s only, which a loaded machine can miss
    # between two polls: record every label the button takes, then wait for that record.
    p.click("nav.tabs >> text=Share")
    copy = p.locator("button[data-copy='#embed-snippet']")
    copy.evaluate(
        "b => { window.__labels = []; new MutationObserver(() => window.__labels.push("
        "b.textContent)).observe(b, {childList: true, characterData: true, subtree: true}); }"
    )
    copy.click()
    p.wait_for_function("() => window.__labels.includes('Copied')", timeout=LOADED_MACHINE_MS)
    # The label changes once the clipboard holds the text (writeText resolved, or the fallback).
    copied = p.evaluate("navigator.clipboard.readText()")
    assert copied == f'<script src="{server.url}/widget.js" data-shop="{shop_id}" async></script>'

    # The orders page goes live; a customer pays in the demo checkout; the order appears.
    p.click("nav.tabs >> text=Orders")
    expect(p.locator("#live-state")).to_have_text("Live")
    p.click("#enable-alerts")
    # Record notifications instead of showing them (headless Chromium has nowhere to show them).
    p.evaluate(
        "() => { window.__notified = []; window.Notification = class {"
        " constructor(title) { window.__notified.push(title); } static permission = 'granted'; }; }"
    )
    order_id, thread_token = make_payable_order(db, shop_id)
    with httpx.Client(base_url=server.url, timeout=10) as customer:
        pay_in_demo_checkout(customer, shop_id, order_id, thread_token)
    row = p.locator(f"tr[data-order-id='{order_id}']")
    expect(row).to_contain_text("paid")
    expect(row).to_contain_text("2 × Espresso")
    # The shop's first order: its short number leads the row and the notification.
    expect(row.locator("td.order-no a")).to_have_text("#1")
    assert p.evaluate("window.__notified") == ["New order #1"]

    # Mark it ready from the live table.
    row.locator("button[data-status=ready]").click()
    expect(row.locator(".badge.status")).to_have_text("ready")
    expect(row.locator("button[data-status=completed]")).to_be_visible()
    assert not problems, problems
