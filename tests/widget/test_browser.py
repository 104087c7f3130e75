"""The widget in Chromium, embedded in a hostile page on another origin under a strict CSP.

These tests feed the chat app scripted event streams (``ScriptedChat``), so rendering, states
and the payment popup are checked on exact input; ``test_flow.py`` drives the real endpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from server.cli import start_example_site
from server.shops.hours import DAYS
from tests.conftest import free_port
from tests.widget.conftest import MakeShop, Site, shot

if TYPE_CHECKING:
    from playwright.sync_api import FrameLocator, Locator, Page

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=\"window.__xss='{0}'\">"


def launcher(page: Page) -> Locator:
    return page.locator("shop-assist-widget button")


def chat(page: Page) -> FrameLocator:
    return page.frame_locator("shop-assist-widget iframe")


def open_chat(page: Page, site: Site) -> FrameLocator:
    page.goto(site.page_url)
    launcher(page).click()
    frame = chat(page)
    frame.locator(".sa-log .sa-bot").first.wait_for()
    return frame


def say(frame: FrameLocator, text: str) -> None:
    frame.locator(".sa-form input").fill(text)
    frame.locator(".sa-form input").press("Enter")


def reply(*text: str, cart: dict | None = None) -> list:
    events: list = [("thread", {"thread_id": "thr_1", "thread_token": "tok_1", "role": "waiter"})]
    events += [("delta", {"text": t}) for t in text]
    if cart:
        events.append(("cart", {"cart": cart}))
    return [*events, ("done", {"message_id": 1})]


def no_xss(page: Page) -> None:
    for frame in page.frames:
        assert frame.evaluate("window.__xss") is None, frame.url


def test_bubble_renders_and_opens_on_a_hostile_page_under_a_strict_csp(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    page.goto(site.page_url)
    button = launcher(page)
    button.wait_for()
    box = button.bounding_box()
    assert box and (box["width"], box["height"]) == (60, 60)  # the hostile sheet did not reach it
    assert box["x"] + 60 + 20 == 1280 and box["y"] + 60 + 20 == 800
    assert button.get_attribute("aria-expanded") == "false"
    assert button.get_attribute("aria-label") == "Open chat"
    look = button.evaluate(
        "b => { const s = getComputedStyle(b); return [s.backgroundColor, s.zIndex, s.position] }"
    )
    assert look == ["rgb(47, 111, 79)", "5000", "fixed"]
    shot(page, "bubble")

    button.click()
    assert button.get_attribute("aria-expanded") == "true"
    assert button.get_attribute("aria-label") == "Close chat"
    frame = chat(page)
    frame.locator("h1").wait_for()
    assert frame.locator("h1").inner_text() == "Corner Café"
    assert frame.locator(".sa-bot").first.inner_text() == "Welcome! Coffee or tea?"
    panel = page.locator("shop-assist-widget .p").bounding_box()
    assert panel and panel["width"] == 380 and panel["height"] > 400
    shot(page, "open-chat")

    button.click()
    assert page.locator("shop-assist-widget .p").is_hidden()
    csp_errors = [e for e in page.errors if "Content Security Policy" in e]  # type: ignore[attr-defined]
    assert csp_errors == []


def test_replies_stream_with_markdown_and_untrusted_text_stays_inert(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    evil = HOSTILE.format("name")
    site.chat.replies.append(
        reply(
            "Here you go:\n- **Latte** with *oat*\n- ",
            "Croissant\n<script>window.__xss='reply'</script> ",
            HOSTILE.format("reply") + " [menu](https://example.com/menu) ",
            "[click](javascript:window.__xss='link') ![pic](https://evil.example/p.png)",
            cart={
                "lines": [
                    {
                        "line_id": "l1",
                        "product_id": "x",
                        "name": evil,
                        "quantity": 2,
                        "options": [{"group": "Size", "choice": "<b>Large</b>", "price_delta": 50}],
                        "note": None,
                        "unit_price": 500,
                        "line_total": 1000,
                    },
                ],
                "subtotal": 1000,
                "currency": "usd",
            },
        )
    )
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    frame = open_chat(page, site)
    say(frame, HOSTILE.format("message") + " <script>window.__xss='message'</script>")
    frame.locator(".sa-cart").wait_for()

    bot = frame.locator(".sa-bot").nth(1)
    assert bot.locator("li").all_inner_texts() == ["Latte with oat", "Croissant"]
    assert bot.locator("strong").inner_text() == "Latte"
    assert bot.locator("em").inner_text() == "oat"
    assert "<script>window.__xss='reply'</script>" in bot.inner_text()
    assert "[click](javascript:window.__xss='link')" not in bot.inner_text()
    links = bot.locator("a")
    assert links.count() == 1
    assert links.get_attribute("href") == "https://example.com/menu"
    assert links.get_attribute("rel") == "noopener noreferrer"
    assert "pic" in bot.inner_text()  # an image is reduced to its alt text
    me = frame.locator(".sa-me")
    assert me.inner_text().startswith("<img src=x onerror=")
    assert frame.locator("main img, main script, main b").count() == 0
    summary = frame.locator(".sa-cart summary").inner_text()
    assert summary == "Your cart · 2 items · $10.00"
    frame.locator(".sa-cart summary").click()
    assert evil in frame.locator(".sa-cart li").inner_text()
    assert "<b>Large</b>" in frame.locator(".sa-cart small").inner_text()
    assert not [u for u in requests if "evil.example" in u or u.endswith("/x")]
    no_xss(page)
    assert site.chat.requests[0]["message"].startswith("<img src=x")


def test_cart_summary_counts_one_item_in_the_singular(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    line = {
        "line_id": "l1",
        "product_id": "tea",
        "name": "Tea",
        "quantity": 1,
        "options": [],
        "note": None,
        "unit_price": 300,
        "line_total": 300,
    }
    site.chat.replies.append(
        reply("One tea.", cart={"lines": [line], "subtotal": 300, "currency": "usd"})
    )
    frame = open_chat(page, site)
    say(frame, "a tea")
    summary = frame.locator(".sa-cart summary")
    summary.wait_for()
    assert summary.inner_text() == "Your cart · 1 item · $3.00"


def test_everything_works_by_keyboard(page: Page, make_site: Callable[..., Site]) -> None:
    site = make_site(scripted=True)
    site.chat.replies.append(reply("Sure, one tea."))
    page.goto(site.page_url)
    launcher(page).wait_for()
    page.keyboard.press("Tab")  # the page's own link
    page.keyboard.press("Tab")  # the launcher
    focused = page.evaluate("document.activeElement.shadowRoot?.activeElement?.className")
    assert focused == "b"
    page.keyboard.press("Enter")
    frame = chat(page)
    frame.locator(".sa-form input").wait_for()
    page.wait_for_function(
        "() => document.querySelector('shop-assist-widget').shadowRoot.activeElement?.tagName"
        " === 'IFRAME'"
    )
    frame.locator(".sa-form input:focus").wait_for()  # focus moved into the panel
    page.keyboard.type("A tea please")
    page.keyboard.press("Enter")
    frame.locator(".sa-log[aria-busy=false] .sa-bot", has_text="Sure, one tea.").wait_for()
    assert frame.locator(".sa-log").get_attribute("role") == "log"
    page.keyboard.press("Escape")
    page.locator("shop-assist-widget .p").wait_for(state="hidden")
    focused = page.evaluate("document.activeElement.shadowRoot?.activeElement?.className")
    assert focused == "b"  # focus is back on the launcher
    assert launcher(page).get_attribute("aria-expanded") == "false"


def test_phone_gets_a_full_screen_chat_without_autofocus(
    browser: object, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    try:
        page.goto(site.page_url)
        launcher(page).tap()
        frame = chat(page)
        frame.locator(".sa-x").wait_for()
        panel = page.locator("shop-assist-widget .p").bounding_box()
        assert panel and (panel["x"], panel["y"], panel["width"]) == (0, 0, 390)
        assert panel["height"] == 844
        assert launcher(page).is_hidden()  # the chat's own close button takes over
        field = frame.locator(".sa-form input")
        assert field.evaluate("e => getComputedStyle(e).fontSize") == "16px"
        assert field.evaluate("e => document.activeElement === e") is False
        shot(page, "phone-open")
        frame.locator(".sa-x").tap()
        launcher(page).wait_for()
    finally:
        context.close()


def test_a_blocked_popup_offers_a_continue_to_payment_link(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    order = {
        "order_id": "ord_1",
        "shop_id": site.shop.id,
        "status": "awaiting_payment",
        "currency": "usd",
        "subtotal": 1450,
        "tax": 0,
        "tip": 0,
        "total": 1450,
        "items": [
            {
                "line_id": "l1",
                "product_id": "latte",
                "name": "Latte",
                "quantity": 2,
                "options": [{"group": "Size", "choice": "Large", "price_delta": 50}],
                "note": None,
                "unit_price": 550,
                "line_total": 1100,
            },
            {
                "line_id": "l2",
                "product_id": "croissant",
                "name": HOSTILE.format("order"),
                "quantity": 1,
                "options": [],
                "note": None,
                "unit_price": 350,
                "line_total": 350,
            },
        ],
    }
    site.chat.replies.append([("order", {"order": order}), *reply("Your order is ready to pay.")])
    page.context.add_init_script("window.open = () => null")  # what a popup blocker does
    frame = open_chat(page, site)
    say(frame, "checkout")
    card = frame.locator(".sa-order")
    card.wait_for()
    assert card.locator(".sa-lines li").nth(0).inner_text().split("\n") == [
        "2 × Latte",
        "$11.00",
        "Large",
    ]
    assert card.locator(".sa-sum").inner_text().split("\n") == [
        "Subtotal",
        "$14.50",
        "Total",
        "$14.50",
    ]
    assert card.locator(".sa-lines li").nth(1).inner_text().startswith("1 × <img src=x onerror=")
    assert card.locator("img").count() == 0
    card.locator(".sa-go").click()
    link = card.locator("a.sa-link")
    link.wait_for()
    assert link.inner_text() == "Continue to payment"
    assert link.get_attribute("href") == f"{site.server.url}/fake-pay/ord_1"
    with page.context.expect_page() as tab:
        link.click()
    assert tab.value.title() == "Fake checkout"
    no_xss(page)


def test_rate_limit_and_server_error_each_show_one_line_with_retry(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    site.chat.retry_after = 1
    site.chat.replies += [429, 500, reply("Back again.")]
    frame = open_chat(page, site)
    page.context.set_offline(True)
    say(frame, "hello")
    bar = frame.locator(".sa-bar")
    bar.locator("span", has_text="You are offline.").wait_for()
    page.context.set_offline(False)
    bar.locator("button").click()
    bar.locator("span", has_text="Too many").wait_for()
    assert bar.locator("span").inner_text() == "Too many messages. Try again in 1 s."
    bar.locator("button:not([disabled])").click()  # enabled once the wait is over
    bar.locator("span", has_text="Something went wrong.").wait_for()
    bar.locator("button").click()
    frame.locator(".sa-bot", has_text="Back again.").wait_for()
    assert bar.is_hidden()
    assert frame.locator(".sa-me").count() == 1  # a retry does not repeat the message
    assert [r["message"] for r in site.chat.requests] == ["hello"] * 3


def test_the_widget_speaks_the_language_it_is_given(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(
        scripted=True, attrs='data-lang="es" data-position="left" data-color="#aa3300"'
    )
    page.goto(site.page_url)
    button = launcher(page)
    assert button.get_attribute("aria-label") == "Abrir chat"
    box = button.bounding_box()
    assert box and box["x"] == 20
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(170, 51, 0)"
    button.click()
    field = chat(page).locator(".sa-form input")
    field.wait_for()
    assert field.get_attribute("placeholder") == "Escribe un mensaje"
    assert chat(page).locator("html").get_attribute("lang") == "es"


def test_a_reply_finished_while_closed_shows_an_unread_badge(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    site.chat.gate = threading.Event()
    site.chat.replies.append(reply("Your latte is in the cart."))
    frame = open_chat(page, site)
    say(frame, "a latte")
    frame.locator(".sa-bot", has_text="Your latte").wait_for()
    launcher(page).click()  # closed before the reply is done
    site.chat.gate.set()
    badge = page.locator("shop-assist-widget .n")
    badge.wait_for()
    assert badge.inner_text() == "1"
    assert launcher(page).get_attribute("aria-label") == "Open chat (1 unread)"
    launcher(page).click()
    assert badge.is_hidden()


def test_an_interrupted_reply_resumes_from_the_events_endpoint(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    cut = reply("The first half, ")[:-1]  # the connection drops before "done"
    site.chat.replies.append(cut)
    site.chat.replay = [("delta", {"text": "and the second half."}), ("done", {"message_id": 1})]
    frame = open_chat(page, site)
    say(frame, "tell me")
    frame.locator(".sa-log[aria-busy=false]").wait_for()
    assert frame.locator(".sa-bot").nth(1).inner_text() == "The first half, and the second half."
    assert site.chat.replays == [{"after": "2", "token": "tok_1", "thread_id": "thr_1"}]
    assert frame.locator(".sa-bar").is_hidden()


def test_data_open_and_a_queued_open_call_open_the_chat_on_load(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True, attrs='data-open="true"')
    page.goto(site.page_url)
    chat(page).locator(".sa-form input").wait_for()
    assert launcher(page).get_attribute("aria-expanded") == "true"
    page.evaluate("ShopAssist.close()")
    assert launcher(page).get_attribute("aria-expanded") == "false"
    page.evaluate("ShopAssist.push(['open'])")
    assert launcher(page).get_attribute("aria-expanded") == "true"


def test_the_example_site_embeds_the_widget_under_its_csp(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    port = free_port()
    example = start_example_site("127.0.0.1", port, site.server.url, site.shop.id)
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        launcher(page).wait_for()
        page.locator("#order-now").click()  # the page's own button, through ShopAssist.push
        chat(page).locator(".sa-form input").wait_for()
        assert launcher(page).get_attribute("aria-expanded") == "true"
        assert [e for e in page.errors if "Content Security Policy" in e] == []  # type: ignore[attr-defined]
    finally:
        example.shutdown()
        example.server_close()


def test_a_reload_during_a_reply_restores_the_thread_and_resumes_the_reply(
    page: Page, make_site: Callable[..., Site]
) -> None:
    site = make_site(scripted=True)
    site.chat.gate = threading.Event()  # this reply never finishes on its first connection
    site.chat.replies.append(reply("Let me ", "check"))
    try:
        frame = open_chat(page, site)
        say(frame, "is there oat milk?")
        frame.locator(".sa-bot", has_text="Let me check").wait_for()
        site.chat.thread = {
            "thread_id": "thr_1",
            "role": "waiter",
            "messages": [{"role": "user", "content": "is there oat milk?"}],
            "cart": {"lines": [], "subtotal": 0, "currency": "usd"},
            "order": None,
        }
        site.chat.replay = [
            ("delta", {"text": "Let me check:"}),
            ("delta", {"text": " yes, we have oat milk."}),
            ("done", {"message_id": 2}),
        ]
        page.reload()
        launcher(page).click()
        frame = chat(page)
        frame.locator(".sa-log[aria-busy=false] .sa-bot", has_text="oat milk").wait_for()
        texts = frame.locator(".sa-msg").all_inner_texts()
        assert texts == [
            "Welcome! Coffee or tea?",
            "is there oat milk?",
            "Let me check: yes, we have oat milk.",
        ]
        # The whole turn is replayed (after its "thread" event): nothing of it was on screen.
        assert site.chat.replays == [{"after": "1", "token": "tok_1", "thread_id": "thr_1"}]
    finally:
        site.chat.gate.set()


@pytest.mark.parametrize(
    ("currency", "lang", "subtotal", "shown"),
    [
        ("jpy", "en", 1200, "¥1,200"),  # no minor unit
        ("usd", "en", 1200, "$12.00"),
        ("eur", "de", 123456, "1.234,56 €"),
        ("eur", "fr", 450, "4,50 €"),
    ],
)
def test_money_is_shown_in_the_shops_currency(
    page: Page,
    make_site: Callable[..., Site],
    make_shop: MakeShop,
    currency: str,
    lang: str,
    subtotal: int,
    shown: str,
) -> None:
    site = make_site(
        scripted=True, attrs=f'data-lang="{lang}"', for_shop=make_shop(currency=currency)
    )
    line = {
        "line_id": "l1",
        "product_id": "x",
        "name": "Cake",
        "quantity": 1,
        "options": [],
        "note": None,
        "unit_price": subtotal,
        "line_total": subtotal,
    }
    cart = {"lines": [line], "subtotal": subtotal, "currency": currency}
    site.chat.replies.append(reply("Ok.", cart=cart))
    frame = open_chat(page, site)
    say(frame, "cake")
    summary = frame.locator(".sa-cart summary").inner_text()
    assert summary.replace("\u00a0", " ").replace("\u202f", " ").endswith(" · " + shown)


CART = {
    "lines": [{"line_id": "l1", "product_id": "tea", "name": "Tea", "quantity": 1, "options": [],
               "note": None, "unit_price": 250, "line_total": 250}],
    "subtotal": 250,
    "currency": "usd",
}  # fmt: skip


def test_a_paused_shop_shows_a_banner_and_still_answers_questions(
    page: Page, make_site: Callable[..., Site], make_shop: MakeShop
) -> None:
    site = make_site(scripted=True, for_shop=make_shop(paused=True))
    site.chat.replies.append(reply("Yes, the scones are vegan.", cart=CART))
    frame = open_chat(page, site)
    banner = frame.get_by_role("status").filter(has_text="not taking orders right now")
    assert banner.inner_text() == "This shop is not taking orders right now."
    assert banner.is_visible() and banner.evaluate("e => e.closest('header') === null")
    say(frame, "are the scones vegan?")  # questions still go through
    frame.locator(".sa-log[aria-busy=false] .sa-bot", has_text="scones are vegan").wait_for()
    assert [r["message"] for r in site.chat.requests] == ["are the scones vegan?"]
    # The server takes no order now, so the cart offers no Checkout.
    frame.locator(".sa-cart summary").wait_for()
    assert frame.locator(".sa-cart .sa-go").count() == 0
    shot(page, "paused-shop")


def test_a_closed_shop_says_when_it_opens_in_the_customers_language(
    page: Page, make_site: Callable[..., Site], make_shop: MakeShop
) -> None:
    day = (datetime.now(UTC).weekday() + 3) % 7  # opens only in three days, whenever this runs
    hours: dict[str, object] = {d: [] for d in DAYS}
    hours[DAYS[day]] = [["07:00", "12:00"]]
    hours["tz"] = "UTC"
    site = make_site(scripted=True, attrs='data-lang="de"', for_shop=make_shop(opening_hours=hours))
    frame = open_chat(page, site)
    weekday = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
    status = frame.get_by_role("status").filter(has_text="geschlossen")
    assert status.inner_text() == f"Jetzt geschlossen — öffnet {weekday[day]} um 07:00"
    assert frame.locator(".sa-form input").is_enabled()


def test_an_open_shop_shows_no_banner(page: Page, make_site: Callable[..., Site]) -> None:
    site = make_site(scripted=True)
    site.chat.replies.append(reply("Sure.", cart=CART))
    frame = open_chat(page, site)
    say(frame, "a tea")
    frame.locator(".sa-cart .sa-go").wait_for()  # Checkout offered
    assert frame.locator(".sa-shut").count() == 0
