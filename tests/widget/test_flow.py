"""The whole customer journey in Chromium against the real server: the offline assistant takes
the order, the Cashier prices it, the demo checkout is paid in a popup, the widget confirms.

Once through the widget embedded on another origin (desktop), once on the hosted page that the
QR code opens (phone); plus reloads that must restore the conversation and the true status.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from server.app import create_app
from server.catalog.service import import_catalog
from server.db import Database
from server.models import Order, Shop
from server.settings import Settings
from server.shops.service import create_shop
from tests.conftest import LiveServer, free_port
from tests.widget.conftest import shot
from tests.widget.fakes import host_site

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FrameLocator, Page

pytestmark = pytest.mark.browser

COFFEE_CSV = Path(__file__).resolve().parents[2] / "examples" / "coffee.csv"
ORDER = "two large oat lattes and a croissant"


@dataclass
class Live:
    server: LiveServer
    host: LiveServer
    shop: Shop


def start_live(
    settings: Settings, db: Database, live_server: Callable[..., LiveServer], **overrides: Any
) -> Live:
    """The real app (offline assistant, demo payments) on a port known in advance, so the
    links it builds from PUBLIC_BASE_URL point at itself; the coffee menu; a host page."""
    port = free_port()
    app = create_app(settings.with_(public_base_url=f"http://127.0.0.1:{port}", **overrides), db=db)
    with db.write() as session:
        shop = create_shop(session, name="Corner Café", currency="usd", greeting="Hi! Coffee?")
        import_catalog(session, shop, COFFEE_CSV.read_bytes(), COFFEE_CSV.name)
        session.expunge(shop)
    server = live_server(app, port)
    host = live_server(host_site(server.url, shop.id))
    return Live(server=server, host=host, shop=shop)


@pytest.fixture
def live(settings: Settings, db: Database, live_server: Callable[..., LiveServer]) -> Live:
    return start_live(settings, db, live_server)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    yield context.new_page()
    context.close()


def open_widget(page: Page, live: Live) -> FrameLocator:
    page.goto(live.host.url + "/")
    page.locator("shop-assist-widget button").click()
    frame = page.frame_locator("shop-assist-widget iframe")
    frame.locator(".sa-form input").wait_for()
    return frame


def say(root: Any, text: str) -> None:
    field = root.locator(".sa-form input")
    field.fill(text)
    field.press("Enter")
    root.locator(".sa-log[aria-busy=false]").wait_for()


def order_two_items(root: Any) -> None:
    say(root, ORDER)
    summary = root.locator(".sa-cart summary")
    summary.wait_for()
    assert re.fullmatch(r"Your cart · 3 items · \$\d+\.\d\d", summary.inner_text())


def checkout(root: Any) -> Any:
    root.locator(".sa-cart .sa-go").click()
    card = root.locator(".sa-order")
    card.wait_for()
    names = card.locator(".sa-lines li > span:first-child").all_inner_texts()
    assert names == ["2 × Latte", "1 × Butter Croissant"]
    assert card.locator(".sa-lines small").first.inner_text() == "Large, Oat"
    return card


def pay_in_popup(page: Page, card: Any) -> int:
    """Pay in the demo popup; the order card confirms with the shop's short order number."""
    with page.context.expect_page() as popup_info:
        card.locator(".sa-go").click()
    popup = popup_info.value
    popup.wait_for_url(re.compile(r"/pay/demo/"))
    with popup.expect_event("close"):
        popup.get_by_role("button", name=re.compile("Pay")).first.click()
    status = card.locator(".sa-status.sa-ok")
    status.wait_for()
    match = re.fullmatch(r"✓ Paid\. Order number (\d+)", status.inner_text())
    assert match, status.inner_text()
    return int(match.group(1))


def test_order_and_pay_from_the_widget_on_another_origin(
    page: Page, live: Live, db: Database
) -> None:
    frame = open_widget(page, live)
    order_two_items(frame)
    shot(page, "cart")
    card = checkout(frame)
    assert pay_in_popup(page, card) == 1  # the shop's first order, not its long id
    # The loader told the host page through ShopAssist.on('order_paid', ...), with the id.
    page.wait_for_function("/^ord_[0-9a-z]+$/.test(document.body.dataset.paid || '')")
    with db.read() as s:
        paid = s.get(Order, page.evaluate("document.body.dataset.paid"))
        assert paid is not None and (paid.shop_id, paid.number) == (live.shop.id, 1)
    assert page.evaluate("document.body.dataset.paidNumber") == "1"
    frame.locator(".sa-bot", has_text=re.compile(r"^✓ Paid\. Order number 1$")).wait_for()
    shot(page, "confirmation")
    frame.locator(".sa-again").click()  # a new conversation in the same open panel
    frame.locator(".sa-form input:focus").wait_for()
    assert frame.locator(".sa-msg").all_inner_texts() == ["Hi! Coffee?"]
    assert page.errors == []  # type: ignore[attr-defined]


def test_hosted_page_on_a_phone_orders_and_pays(phone: Page, live: Live) -> None:
    phone_errors: list[str] = []
    phone.on("console", lambda m: phone_errors.append(m.text) if m.type == "error" else None)
    phone.on("pageerror", lambda e: phone_errors.append(str(e)))
    phone.goto(f"{live.server.url}/s/{live.shop.slug}")
    root = phone.main_frame
    assert root.locator(".sa-bot").first.inner_text() == "Hi! Coffee?"
    order_two_items(root)
    card = checkout(root)
    pay_in_popup(phone, card)
    assert [e for e in phone_errors if "Content Security Policy" in e or "Error" in e] == []
    box = phone.locator(".sa-form").bounding_box()
    assert box and box["y"] + box["height"] <= 844  # the input stays on screen
    shot(phone, "hosted-phone-confirmation")


def test_reload_restores_the_conversation_and_the_cart(page: Page, live: Live) -> None:
    frame = open_widget(page, live)
    order_two_items(frame)
    before = frame.locator(".sa-msg").all_inner_texts()
    page.reload()
    frame = open_widget(page, live)
    frame.locator(".sa-me").wait_for()
    assert frame.locator(".sa-msg").all_inner_texts() == before
    assert frame.locator(".sa-cart summary").inner_text().startswith("Your cart · 3 items")


def test_reload_mid_payment_still_ends_in_the_true_status(page: Page, live: Live) -> None:
    frame = open_widget(page, live)
    order_two_items(frame)
    card = checkout(frame)
    with page.context.expect_page() as popup_info:
        card.locator(".sa-go").click()
    popup = popup_info.value
    popup.wait_for_url(re.compile(r"/pay/demo/"))
    page.reload()  # the chat that opened the popup is gone
    frame = open_widget(page, live)
    popup.get_by_role("button", name=re.compile("Pay")).first.click()
    # The return page cannot reach the old chat; the order stream tells the new one.
    frame.locator(".sa-order .sa-status.sa-ok").wait_for()
    assert frame.locator(".sa-order .sa-status").inner_text() == "✓ Paid. Order number 1"


HOSTILE_CSV = b"""id,name,category,price,options
cake,"<img src=x onerror=window.__xss=1> Cake <script>window.__xss=2</script>",Bakery,3.00,
tart,"[Tart](javascript:window.__xss=3) ![p](https://evil.example/p.png)",Bakery,4.00,"Size: <b>Big</b> | Small"
"""


def test_hostile_catalog_and_message_text_render_inert(
    page: Page, live: Live, db: Database
) -> None:
    with db.write() as session:
        shop = session.get(Shop, live.shop.id)
        assert shop is not None
        import_catalog(session, shop, HOSTILE_CSV, "hostile.csv")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    frame = open_widget(page, live)
    say(frame, "<img src=x onerror=\"window.__xss='message'\"> what do you have?")
    say(frame, "one cake and one tart")
    say(frame, "[pay here](javascript:window.__xss=4) <script>window.__xss=5</script>")
    log = frame.locator(".sa-log")
    assert "<script>window.__xss=2</script>" in log.inner_text()  # the model's reply, as text
    frame.locator(".sa-cart summary").click()
    cart = frame.locator(".sa-cart").inner_text()
    assert "× <img src=x onerror=window.__xss=1> Cake <script>" in cart  # the product name
    assert "<b>Big</b>" in cart  # an option
    assert frame.locator("main img, main script, main b").count() == 0
    hrefs = frame.locator("main a").evaluate_all("links => links.map(a => a.href)")
    assert all(h.startswith("https://") for h in hrefs), hrefs
    for f in page.frames:
        assert f.evaluate("window.__xss") is None
    assert not [u for u in requests if "evil.example" in u or u.endswith("/x")]


def test_a_cancelled_payment_leaves_the_order_payable(page: Page, live: Live) -> None:
    frame = open_widget(page, live)
    order_two_items(frame)
    card = checkout(frame)
    with page.context.expect_page() as popup_info:
        card.locator(".sa-go").click()
    popup = popup_info.value
    popup.wait_for_url(re.compile(r"/pay/demo/"))
    with popup.expect_event("close"):
        popup.get_by_role("button", name="Cancel").click()
    card.locator(".sa-go:not([disabled])").wait_for()  # Pay again, nothing claims it was paid
    assert card.locator(".sa-status").inner_text() == ""
    # ...and paying on the second try still works.
    pay_in_popup(page, card)


def test_the_servers_rate_limit_is_shown_with_its_wait(
    page: Page, settings: Settings, db: Database, live_server: Callable[..., LiveServer]
) -> None:
    live = start_live(settings, db, live_server, ip_rate_per_minute=1)
    frame = open_widget(page, live)
    say(frame, "a latte please")
    frame.locator(".sa-form input").fill("and a croissant")
    frame.locator(".sa-form input").press("Enter")
    bar = frame.locator(".sa-bar")
    bar.wait_for()
    assert re.fullmatch(
        r"Too many messages\. Try again in \d+ s\.", bar.locator("span").inner_text()
    )
    assert bar.locator("button").is_disabled()  # until the wait is over
