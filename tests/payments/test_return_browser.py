"""The return page in a real browser: it tells its opener (exact origin) and closes; without an
opener it is the confirmation itself, and a pending payment updates when it lands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from server.app import create_app
from server.db import Database
from server.settings import Settings
from tests import services
from tests.conftest import LiveServer, free_port
from tests.fakes.fake_stripe import make_event, signed_event
from tests.payments.conftest import WHSEC
from tests.payments.factory import TOTAL, make_order, make_shop, order_token

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = services.chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def server(settings: Settings, db: Database, live_server: Any) -> LiveServer:
    port = free_port()
    app = create_app(
        settings.with_(public_base_url=f"http://127.0.0.1:{port}", stripe_webhook_secret=WHSEC),
        db=db,
    )
    return live_server(app, port)  # type: ignore[no-any-return]


def paid_return_url(server: LiveServer, db: Database) -> str:
    """Checkout in demo mode and pay it; the URL the demo checkout redirects to."""
    shop = make_shop(db)
    order, token = make_order(db, shop)
    body = httpx.post(
        f"{server.url}/api/order/{shop.id}", json={"order_id": order.id, "thread_token": token}
    ).json()
    paid = httpx.post(
        f"{server.url}/pay/demo/{order.id}", data={"token": body["order_token"], "action": "pay"}
    )
    assert paid.status_code == 303
    return server.url + paid.headers["location"]


def test_return_page_tells_the_opener_and_closes(
    page: Page, server: LiveServer, db: Database
) -> None:
    url = paid_return_url(server, db)
    page.goto(f"{server.url}/healthz")  # any page of our origin stands in for the chat iframe
    page.evaluate(
        "window.__messages = []; window.addEventListener('message', e => window.__messages.push({data: e.data, origin: e.origin}))"
    )
    with page.expect_popup() as popup_info:
        page.evaluate("url => { window.open(url, 'checkout') }", url)
    popup = popup_info.value
    popup.wait_for_event("close", timeout=10_000)
    page.wait_for_function("window.__messages.length > 0", timeout=10_000)
    [message] = page.evaluate("window.__messages")
    assert message["origin"] == server.url
    assert message["data"]["type"] == "shop-assist:order_paid"
    assert message["data"]["status"] == "paid"


def test_return_page_without_opener_is_the_confirmation(
    page: Page, server: LiveServer, db: Database
) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(paid_return_url(server, db))
    assert page.locator("#result").get_attribute("data-kind") == "order_paid"
    assert "Your order is paid" in page.locator("h1").inner_text()
    assert page.locator("#order-number").inner_text() == "1"
    assert not page.is_closed()
    # No CSP violation: the page's only script carries the response's nonce.
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == []


def test_pending_return_page_updates_when_the_payment_lands(
    page: Page, server: LiveServer, db: Database
) -> None:
    shop = make_shop(db)
    order, _ = make_order(db, shop, checkout_session_id="cs_test_pending", payment_mode="stripe")
    page.goto(
        f"{server.url}/checkout/return?order_id={order.id}&token={order_token(order.id)}&session_id=cs_test_pending"
    )
    assert page.locator("#result").get_attribute("data-kind") == "order_pending"
    session = {
        "id": "cs_test_pending",
        "payment_status": "paid",
        "amount_total": TOTAL,
        "currency": "usd",
        "metadata": {"order_id": order.id},
    }
    body, headers = signed_event(make_event("checkout.session.completed", session), WHSEC)
    assert (
        httpx.post(f"{server.url}/api/stripe/webhook", content=body, headers=headers).status_code
        == 200
    )
    page.wait_for_selector("#result[data-kind=order_paid]", timeout=15_000)
    assert page.locator("#order-number").inner_text() == "1"  # the shop's first order
