"""The dashboard a shop owner uses: create a shop, upload a menu with a preview, sold-out
toggles, share panel, settings."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.catalog.service import load_menu
from server.db import Database
from server.models import Shop
from server.settings import Settings
from tests.owners.helpers import make_shop, owner_id_of, session_csrf, signup

MENU = b"id,name,category,price,options\nlatte,Latte,Coffee,4.50,Size: Small | Large +1.00\nscone,Scone,Bakery,3.00,\n"
MENU_V2 = b"id,name,category,price\nlatte,Latte,Coffee,4.75\nbrownie,Brownie,Bakery,3.25\n"
BAD_MENU = b"name,price\nLatte,abc\n,3.00\nTea,-1\n"


@pytest.fixture
def owner(client: TestClient) -> TestClient:
    signup(client, "ana@example.com")
    return client


def _create_shop(c: TestClient, name: str = "Ana's Cafe") -> str:
    r = c.post(
        "/dashboard/shops",
        data={"name": name, "currency": "usd", "csrf_token": session_csrf(c)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    m = re.match(r"/dashboard/shops/(shp_\w+)/catalog", r.headers["location"])
    assert m
    return m.group(1)


def _preview(
    c: TestClient, shop_id: str, data: bytes, name: str = "menu.csv"
) -> tuple[int, str, str]:
    r = c.post(
        f"/dashboard/shops/{shop_id}/catalog/preview",
        data={"csrf_token": session_csrf(c)},
        files={"file": (name, data, "text/csv")},
    )
    m = re.search(r'name="upload_id" value="([^"]+)"', r.text)
    return r.status_code, r.text, m.group(1) if m else ""


def _confirm(c: TestClient, shop_id: str, upload_id: str) -> int:
    r = c.post(
        f"/dashboard/shops/{shop_id}/catalog/confirm",
        data={"csrf_token": session_csrf(c), "upload_id": upload_id},
        follow_redirects=False,
    )
    return r.status_code


def test_new_shop_appears_in_the_list(owner: TestClient) -> None:
    shop_id = _create_shop(owner)
    page = owner.get("/dashboard")
    assert "Ana&#39;s Cafe" in page.text and f"/dashboard/shops/{shop_id}" in page.text


def test_new_shop_needs_a_name_and_a_currency(owner: TestClient) -> None:
    r = owner.post(
        "/dashboard/shops",
        data={"name": "", "currency": "dollars", "csrf_token": session_csrf(owner)},
    )
    assert r.status_code == 422
    assert "A shop needs a name." in r.text and "is not an ISO 4217 currency code" in r.text


def test_new_shop_needs_a_real_currency(owner: TestClient, db: Database) -> None:
    r = owner.post(
        "/dashboard/shops",
        data={"name": "Cafe", "currency": "usb", "csrf_token": session_csrf(owner)},
    )
    assert r.status_code == 422
    assert "Currency &#39;usb&#39; is not an ISO 4217 currency code" in r.text
    with db.read() as s:
        assert s.exec(select(Shop)).all() == []


def test_upload_preview_then_confirm(owner: TestClient, db: Database) -> None:
    shop_id = _create_shop(owner)
    status, page, upload_id = _preview(owner, shop_id, MENU)
    assert status == 200 and upload_id
    assert "Latte" in page and "Scone" in page and "Publish this menu" in page
    # Nothing is live until the owner confirms.
    assert owner.get(f"/api/menu/{shop_id}").status_code in (404, 200)
    with db.read() as s:
        assert s.get(Shop, shop_id).live_catalog_version is None  # type: ignore[union-attr]
    assert _confirm(owner, shop_id, upload_id) == 303
    menu = owner.get(f"/api/menu/{shop_id}").json()
    names = [p["name"] for cat in menu["categories"] for p in cat["products"]]
    assert names == ["Latte", "Scone"]
    table = owner.get(f"/dashboard/shops/{shop_id}/catalog").text
    assert "Menu version 1 is live" not in table and "Latte" in table and "$4.50" in table
    # An upload is published once.
    assert _confirm(owner, shop_id, upload_id) == 404

    # The second upload's preview says what changes.
    status, page, upload_id = _preview(owner, shop_id, MENU_V2)
    assert status == 200
    assert (
        "Brownie" in page
        and "$4.50 → $4.75" in page
        and re.search(r"<h3>Removed</h3>.*Scone", page, re.S)
    )
    assert _confirm(owner, shop_id, upload_id) == 303
    with db.read() as s:
        assert s.get(Shop, shop_id).live_catalog_version == 2  # type: ignore[union-attr]


def test_a_bad_file_shows_line_numbered_errors_and_changes_nothing(
    owner: TestClient, db: Database
) -> None:
    shop_id = _create_shop(owner)
    status, _, upload_id = _preview(owner, shop_id, MENU)
    _confirm(owner, shop_id, upload_id)
    status, page, upload_id = _preview(owner, shop_id, BAD_MENU)
    assert status == 422 and not upload_id
    assert "cannot go live" in page and "Publish" not in page
    rows = re.findall(r'<tr><td class="num">(\d+)</td>', page)
    assert {"2", "3", "4"} <= set(rows)
    with db.read() as s:
        assert s.get(Shop, shop_id).live_catalog_version == 1  # type: ignore[union-attr]


def test_sold_out_toggle_reaches_the_menu_and_the_assistant(
    owner: TestClient, db: Database
) -> None:
    shop_id = _create_shop(owner)
    _, _, upload_id = _preview(owner, shop_id, MENU)
    _confirm(owner, shop_id, upload_id)
    etag = owner.get(f"/api/menu/{shop_id}").headers["etag"]
    r = owner.post(
        f"/dashboard/shops/{shop_id}/products/latte/availability",
        data={"csrf_token": session_csrf(owner), "available": "0"},
        headers={"Accept": "application/json"},
    )
    assert r.json() == {"product_id": "latte", "available": False}
    menu = owner.get(f"/api/menu/{shop_id}")
    assert menu.headers["etag"] != etag
    latte = next(
        p for cat in menu.json()["categories"] for p in cat["products"] if p["id"] == "latte"
    )
    assert latte["available"] is False
    with db.read() as s:
        assistant_menu = load_menu(s, shop_id)
        assert assistant_menu is not None
        assert not next(p for p in assistant_menu.products if p.id == "latte").available
    reply = owner.post(f"/api/chat/{shop_id}", json={"message": "I'd like a latte please"})
    assert "sold out" in reply.text.lower()
    page = owner.get(f"/dashboard/shops/{shop_id}/catalog").text
    assert "Mark available" in page and 'class="sold-out"' in page
    # The plain form (no JS) flips it back and returns to the table.
    r = owner.post(
        f"/dashboard/shops/{shop_id}/products/latte/availability",
        data={"csrf_token": session_csrf(owner), "available": "1"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert (
        owner.post(
            f"/dashboard/shops/{shop_id}/products/nope/availability",
            data={"csrf_token": session_csrf(owner), "available": "1"},
        ).status_code
        == 404
    )


def test_upload_api_accepts_the_dashboard_session(owner: TestClient, db: Database) -> None:
    shop_id = _create_shop(owner)
    files = {"file": ("menu.csv", MENU, "text/csv")}
    assert (
        owner.post("/api/catalog/upload", data={"shop_id": shop_id}, files=files).status_code == 403
    )  # no CSRF
    r = owner.post(
        "/api/catalog/upload",
        data={"shop_id": shop_id},
        files=files,
        headers={"X-CSRF-Token": session_csrf(owner)},
    )
    assert r.status_code == 201 and r.json()["version"] == 1


def test_share_panel_and_table_card(owner: TestClient) -> None:
    shop_id = _create_shop(owner, "Corner Cafe")
    page = owner.get(f"/dashboard/shops/{shop_id}").text
    assert "http://testserver/s/corner-cafe" in page
    assert (
        f"&lt;script src=&#34;http://testserver/widget.js&#34; data-shop=&#34;{shop_id}&#34; async&gt;&lt;/script&gt;"
        in page
    )
    assert "script-src http://testserver" in page and "frame-src http://testserver" in page
    assert f"/api/shops/{shop_id}/qr.svg" in page and f"/api/shops/{shop_id}/qr.png" in page
    card = owner.get(f"/dashboard/shops/{shop_id}/card")
    assert card.status_code == 200 and "Corner Cafe" in card.text and "qr.svg" in card.text
    assert "frame-ancestors 'none'" in card.headers["content-security-policy"]
    assert owner.get(f"/api/shops/{shop_id}/qr.svg").headers["content-type"].startswith("image/svg")


def test_settings_are_saved(owner: TestClient, db: Database) -> None:
    shop_id = _create_shop(owner)
    form = {
        "csrf_token": session_csrf(owner), "name": "Ana's Cafe", "currency": "eur", "greeting": "Hi!",
        "theme_color": "#112233", "fulfillment_modes": ["pickup", "table"], "require_name": "on",
        "paused": "on", "hours_mon": "08:00-12:00, 13:00-17:00", "hours_sun": "closed", "hours_tz": "Europe/Paris",
        "allowed_origins": "https://www.example.com\nhttps://shop.example.com:8443/",
        "notify_webhook_url": "https://hooks.example.com/orders", "notify_webhook_secret": "",
        "stripe_account_id": "acct_1A2b3C4d5E6f", "payments_mode": "demo",
    }  # fmt: skip
    r = owner.post(f"/dashboard/shops/{shop_id}/settings", data=form, follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        shop = s.get(Shop, shop_id)
        assert shop is not None
        assert (shop.currency, shop.greeting, shop.theme_color, shop.paused, shop.require_name) == (
            "eur",
            "Hi!",
            "#112233",
            True,
            True,
        )
        assert shop.fulfillment_modes == ["pickup", "table"]
        assert (
            shop.opening_hours["mon"] == [["08:00", "12:00"], ["13:00", "17:00"]]
            and shop.opening_hours["sun"] == []
        )
        assert shop.opening_hours["tz"] == "Europe/Paris"
        assert shop.allowed_origins == ["https://www.example.com", "https://shop.example.com:8443"]
        assert shop.notify_webhook_secret.startswith("whsec_")  # made for the owner
        assert (shop.stripe_account_id, shop.payments_mode) == ("acct_1A2b3C4d5E6f", "demo")
    page = owner.get(f"/dashboard/shops/{shop_id}/settings?saved=1").text
    assert "Saved." in page and "08:00-12:00, 13:00-17:00" in page and "ordering paused" in page


def test_opening_hours_that_open_and_close_at_once_are_explained_and_not_saved(
    owner: TestClient, db: Database
) -> None:
    shop_id = _create_shop(owner)
    form = {
        "csrf_token": session_csrf(owner), "name": "Ana's Cafe", "fulfillment_modes": "pickup",
        "hours_mon": "08:00-08:00", "hours_tue": "08:00-17:00", "hours_tz": "Europe/Paris",
    }  # fmt: skip
    r = owner.post(f"/dashboard/shops/{shop_id}/settings", data=form)
    assert r.status_code == 422
    assert (
        "Monday: &#39;08:00-08:00&#39; opens and closes at the same time; "
        "use 00:00-24:00 for all day." in r.text
    )
    assert 'value="08:00-08:00"' in r.text  # what was typed stays in the form to fix
    with db.read() as s:
        assert s.get(Shop, shop_id).opening_hours == {}  # type: ignore[union-attr]


def test_bad_settings_are_explained_and_not_saved(owner: TestClient, db: Database) -> None:
    shop_id = _create_shop(owner)
    form = {
        "csrf_token": session_csrf(owner),
        "name": "Cafe",
        "theme_color": "red",
        "fulfillment_modes": [],
        "allowed_origins": "javascript:alert(1)",
        "hours_mon": "9-5",
    }
    r = owner.post(f"/dashboard/shops/{shop_id}/settings", data=form)
    assert r.status_code == 422
    for sentence in (
        "Use a colour like #2f6f4f.",
        "Choose at least one of pickup",
        "is not a website origin",
        "Monday: &#39;9&#39; is not a time from 00:00 to 24:00. Write hours like",
    ):
        assert sentence in r.text
    with db.read() as s:
        assert s.get(Shop, shop_id).name == "Ana's Cafe"  # type: ignore[union-attr]


def test_currency_is_fixed_once_a_menu_is_live(owner: TestClient, db: Database) -> None:
    shop_id = make_shop(db, owner_id_of(db, "ana@example.com"))
    _, _, upload_id = _preview(owner, shop_id, MENU)
    _confirm(owner, shop_id, upload_id)
    form = {
        "csrf_token": session_csrf(owner),
        "name": "Cafe",
        "currency": "jpy",
        "fulfillment_modes": "pickup",
    }
    assert (
        owner.post(
            f"/dashboard/shops/{shop_id}/settings", data=form, follow_redirects=False
        ).status_code
        == 303
    )
    with db.read() as s:
        assert s.get(Shop, shop_id).currency == "usd"  # type: ignore[union-attr]


def test_dashboard_script_and_style_are_served(app: Starlette) -> None:
    c = TestClient(app)
    js = c.get("/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert c.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_production_refuses_a_notification_webhook_into_the_local_network(
    settings: Settings, db: Database
) -> None:
    """The server POSTs to that URL; anyone can sign up, so it must not reach our network."""
    from server.app import create_app

    app = create_app(
        settings.with_(
            app_env="production", payments="demo", allow_demo_payments_in_production=True
        ),
        db=db,
    )
    c = TestClient(app)
    signup(c, "ana@example.com")
    shop_id = _create_shop(c)
    form = {
        "csrf_token": session_csrf(c), "name": "Ana's Cafe", "fulfillment_modes": ["pickup"],
        "notify_webhook_url": "http://169.254.169.254/latest/meta-data/", "notify_webhook_secret": "",
    }  # fmt: skip
    r = c.post(f"/dashboard/shops/{shop_id}/settings", data=form, follow_redirects=False)
    assert r.status_code == 422 and "local and private ones are refused" in r.text
    with db.read() as s:
        shop = s.get(Shop, shop_id)
        assert shop is not None and not shop.notify_webhook_url
